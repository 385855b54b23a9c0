"""Kernel tables, the per-kernel model, its calibration and its evaluation helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chronos_core.catalog.devices import Devices
from chronos_core.data import kernels as kdata
from chronos_core.data import registry
from chronos_core.predict import kernel_eval
from chronos_core.predict.kernels import (
    Correction,
    KernelModel,
    LocalResidual,
    calibration_groups,
    fit_correction,
    fit_floor_correction,
    kernel_body,
    kernel_features,
    measured_floor,
    ops_frame,
    peak_flops,
    row_errors,
    work,
)

PROFILER_COLS = ("Kernel Name", "Warps per SM", "Grid x", "Block x", "Kernels")


def _neusight_raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "OPName": ["bmm", "bmm", "linear", "addu", "ln"],
            "Latency": [0.04, 0.06, 1.0, 0.03, 0.05],
            "Device": ["Tesla T4"] * 5,
            "Kernel Name": ["k"] * 5,
            "Warps per SM": [1.0] * 5,
            "Grid x": [1] * 5,
            "Block x": [64] * 5,
            "Kernels": [";k"] * 5,
            "B": [8, 8, 1, 128, 64],
            "M": [64, 64, 512, np.nan, np.nan],
            "N": [64, 64, 512, np.nan, np.nan],
            "K": [64, 64, 512, np.nan, np.nan],
            "H": [np.nan, np.nan, np.nan, 1024, 768],
        }
    )


def test_adapter_drops_profiler_columns_and_averages_duplicates():
    out = kdata.adapt_neusight(_neusight_raw(), "train")
    assert tuple(out.columns) == kdata.KERNEL_COLUMNS
    assert not set(PROFILER_COLS) & set(out.columns)
    assert len(out) == 4  # the two identical bmm rows became one
    bmm = out[out["op"] == "bmm"].iloc[0]
    assert bmm["latency_ms"] == pytest.approx(0.05)
    assert set(out["device"]) == {"T4"} and set(out["dtype"]) == {"fp32"}
    assert dict(zip(out["op"], out["family"], strict=True)) == {
        "bmm": "gemm",
        "linear": "gemm",
        "addu": "elementwise",
        "ln": "ln",
    }


def test_xla_adapter_latency_and_dtypes():
    raw = pd.DataFrame(
        {
            "gpu": ["NVIDIA B200"] * 3,
            "b": [1, 2, 1],
            "m": [256, 256, 256],
            "n": [256, 256, 256],
            "k": [256, 256, 256],
            "dtype": ["bf16xbf16->bf16", "f32xf32->f32", "f8e4m3fnxf8e4m3fn->bf16"],
            "flops_per_s": [1e13, 1e13, 1e13],
        }
    )
    out = kdata.adapt_xla_gemm(raw)
    assert list(out["dtype"]) == ["bf16", "tf32"]  # fp8 is not a training precision here
    assert out["latency_ms"].iloc[0] == pytest.approx(2 * 256**3 / 1e13 * 1e3)
    assert list(out["op"]) == ["linear", "bmm"] and set(out["device"]) == {"B200-SXM"}


def test_registry_knows_the_kernel_tables(mirror):
    names = [n for n, s in registry.SOURCES.items() if s.kind == "kernels"]
    assert len(names) == 16 * 5 + 5
    assert registry.SOURCES["neusight-train-conv-nvidia-a100-80gb-pcie"].url.endswith(".csv")
    assert "6945927d9afcca2b9daf021f8395e53edc5b4eef" in registry.SOURCES["neusight-test-bmm"].url
    frame = kdata.adapt_neusight(registry.read("neusight-train-ln-tesla-t4"), "train")
    assert len(frame) > 1000 and (frame["latency_ms"] > 0).all()


def test_work_counts_flops_and_bytes():
    rows = pd.DataFrame(
        {
            "op": ["bmm", "linear", "add", "addu"],
            "family": ["gemm", "gemm", "elementwise", "elementwise"],
            "B": [4, 4, 10, 10],
            "M": [8, 8, np.nan, np.nan],
            "N": [16, 16, np.nan, np.nan],
            "K": [32, 32, np.nan, np.nan],
            "H": [np.nan, np.nan, 100, 100],
            "dtype": ["fp32", "fp32", "fp32", "bf16"],
        }
    )
    w = work(rows)
    assert w["flops"].iloc[0] == 2 * 4 * 8 * 16 * 32
    assert w["bytes"].iloc[0] == 4 * (4 * 8 * 32 + 4 * 32 * 16 + 4 * 8 * 16)
    assert w["bytes"].iloc[1] == 4 * (4 * 8 * 32 + 32 * 16 + 4 * 8 * 16)  # one shared weight
    assert w["bytes"].iloc[2] == 4 * 1000 * 3 and w["bytes"].iloc[3] == 2 * 1000 * 2


def _synthetic(device: str, slowdown: float = 1.0, n: int = 400, seed: int = 0) -> pd.DataFrame:
    """GEMMs and elementwise kernels whose time is a known function of the roofline."""
    rng = np.random.default_rng(seed)
    m, nn_, k = (2 ** rng.integers(4, 12, n) for _ in range(3))
    gemm = pd.DataFrame(
        {"op": "bmm", "family": "gemm", "B": 2 ** rng.integers(0, 4, n), "M": m, "N": nn_, "K": k}
    )
    elems = pd.DataFrame({"op": "addu", "family": "elementwise", "B": 2 ** rng.integers(0, 12, n), "H": 1024})
    rows = pd.concat([gemm, elems], ignore_index=True)
    rows["dtype"], rows["device"] = "fp32", device
    rows = kdata.conform_kernels(rows.assign(split="train", source="synthetic", device_name=device))
    feats = kernel_features(rows)
    eff = np.where(rows["family"] == "gemm", 0.7, 0.85) / (1 + 3e-3 / np.maximum(feats["t_roof_ms"], 1e-6))
    rows["latency_ms"] = (0.02 + feats["t_roof_ms"] / eff) * slowdown
    return rows


def test_kernel_model_learns_efficiency_and_calibration_fixes_a_slow_gpu():
    train = pd.concat(
        [_synthetic(d, seed=i) for i, d in enumerate(("T4", "V100-PCIe-32GB", "P100-PCIe-16GB"))]
    )
    model = KernelModel(n_estimators=60, max_depth=4).fit(train.reset_index(drop=True))
    test = _synthetic("A100-PCIe-40GB", seed=9)
    err = lambda pred: np.mean(np.abs(pred - test["latency_ms"]) / test["latency_ms"])  # noqa: E731
    assert err(model.predict(test)) < 0.25
    slow = _synthetic("A100-PCIe-40GB", slowdown=1.8, seed=9)
    before = np.mean(np.abs(model.predict(slow) - slow["latency_ms"]) / slow["latency_ms"])
    tuned = model.without_calibration().calibrate(kernel_eval.calibration_sample(slow))
    after = np.mean(np.abs(tuned.predict(slow) - slow["latency_ms"]) / slow["latency_ms"])
    assert after < before / 2
    assert not model.corrections_  # calibrating a copy leaves the original alone


def test_fit_correction_recovers_level_and_slope():
    x = np.linspace(0, 6, 60)
    corr = fit_correction(x, 0.3 + 0.1 * (x - 3), shrink=0.0)
    assert corr.a == pytest.approx(0.3, abs=1e-6) and corr.b == pytest.approx(0.1, abs=1e-6)
    assert fit_correction(x[:8], 0.3 + 0.1 * (x[:8] - 3)).b == 0.0  # a calibration's few kernels: level only
    assert fit_correction(np.array([]), np.array([])).a == 0.0


def test_floor_aware_calibration_recovers_scale_and_floor():
    """A device whose times are 0.7 x the model's kernel time + a 5 us floor: a handful of kernels
    recover both, and predict the rest far better than a level alone."""
    floor = np.full(40, 0.025)
    t_roof = np.geomspace(1e-4, 2.0, 40)
    t_model = 1.3 * (t_roof + floor)
    truth = 0.7 * kernel_body(t_model, t_roof, floor, "sub") + 0.005
    pick = np.linspace(0, 39, 8).round().astype(int)
    args = (t_model[pick], t_roof[pick], floor[pick], np.log(t_roof[pick] * 1e3))
    corr = fit_floor_correction(truth[pick], *args)
    assert corr.body == "sub"
    assert corr.scale == pytest.approx(0.7, rel=0.05) and corr.floor_ms == pytest.approx(0.005, rel=0.1)
    err = lambda pred: np.mean(np.abs(pred - truth) / truth)  # noqa: E731
    floor_aware = err(corr.apply(t_model, t_roof, floor, np.log(t_roof * 1e3)))
    level_only = err(t_model * np.exp(fit_correction(args[3], np.log(truth[pick] / t_model[pick])).a))
    assert floor_aware < 0.03 and floor_aware < level_only / 3
    large = t_roof > 0.5  # all calibration kernels large: the floor is not identifiable, a level only
    assert (
        fit_floor_correction(truth[large], t_model[large], t_roof[large], floor[large], t_roof[large]).body
        == ""
    )


def test_calibration_of_device_side_timings_drops_the_framework_floor():
    """Timings of the kernel alone (no ~20 us framework call, like XLA's): the model's floor term goes."""
    train = pd.concat([_synthetic(d, seed=i) for i, d in enumerate(("T4", "V100-PCIe-32GB"))])
    model = KernelModel(n_estimators=60, max_depth=4, families=("gemm", "elementwise")).fit(
        train.reset_index(drop=True)
    )
    device = _synthetic("A100-PCIe-40GB", seed=9)
    device["latency_ms"] = 0.7 * (device["latency_ms"] - 0.02) + 0.005  # the kernel alone, 5 us floor
    tuned = model.without_calibration().calibrate(kernel_eval.calibration_sample(device))
    corr = tuned.corrections_[("A100-PCIe-40GB", "gemm")]
    assert corr.body == "share" and 0 < corr.floor_ms < 0.02
    level = tuned.without_calibration()
    level.corrections_ = {key: Correction(c.a, c.b, c.center, c.n) for key, c in tuned.corrections_.items()}
    err = lambda m: np.mean(np.abs(m.predict(device) - device["latency_ms"]) / device["latency_ms"])  # noqa: E731
    assert err(tuned) < err(level)


def _gemm_model() -> KernelModel:
    train = pd.concat([_synthetic(d, seed=i) for i, d in enumerate(("T4", "V100-PCIe-32GB"))])
    return KernelModel(n_estimators=60, max_depth=4, families=("gemm", "elementwise")).fit(
        train.reset_index(drop=True)
    )


def test_calibration_keeps_ops_and_dtypes_apart():
    """bmm 1.5x slower and linear 0.8x faster than the model on one GPU, bf16 GEMMs 2x slower than
    fp32: a calibration gives each op and dtype its own correction instead of one blend."""
    model = _gemm_model()
    device = _synthetic("A100-PCIe-40GB", seed=9)
    gemm = device["family"] == "gemm"
    device.loc[gemm, "op"] = np.where(np.arange(gemm.sum()) % 2 == 0, "bmm", "linear")
    device.loc[device["op"] == "linear", "B"] = 1
    base = model.predict(device)
    device["latency_ms"] = base * np.where(device["op"] == "bmm", 1.5, np.where(gemm, 0.8, 1.0))
    bf16 = device[gemm].assign(dtype="bf16")
    bf16["latency_ms"] = 2.0 * model.predict(bf16)
    device = pd.concat([device, bf16], ignore_index=True)
    groups = set(calibration_groups(device))
    assert {"gemm/bmm/fp32", "gemm/linear/fp32", "gemm/bmm/bf16", "elementwise/fp32"} <= groups
    tuned = model.without_calibration().calibrate(kernel_eval.calibration_sample(device))
    for key in ("gemm/bmm/fp32", "gemm/linear/fp32", "gemm/fp32", "gemm/bf16", "gemm"):
        assert ("A100-PCIe-40GB", key) in tuned.corrections_
    ratio = tuned.predict(device) / device["latency_ms"]
    assert np.median(np.abs(np.log(ratio))) < 0.05  # each op and dtype at its own level
    pooled = model.without_calibration()
    pooled.corrections_ = {k: c for k, c in tuned.corrections_.items() if k[1] == "gemm"}
    gemm = device["family"] == "gemm"
    assert np.mean(np.abs(np.log(pooled.predict(device[gemm]) / device.loc[gemm, "latency_ms"]))) > 0.2


def test_local_residual_carries_a_shape_effect_to_nearby_shapes():
    local = LocalResidual(np.array([[0.0, 0.0], [10.0, 10.0]]), np.array([0.4, -0.2]), 1.0, 0.25)
    near, far = local.shift(np.array([[0.0, 0.0], [50.0, 50.0]]))
    assert near == pytest.approx(0.4 / 1.25, rel=1e-3) and far == 0.0
    assert local.shift(np.array([[10.0, 10.0]]))[0] == pytest.approx(-0.2 / 1.25, rel=1e-3)
    # a GPU whose GEMMs with a long K loop run 1.6x slower: the level alone cannot say which ones
    model = _gemm_model()
    device = _synthetic("A100-PCIe-40GB", seed=5, n=800)
    slow = (device["family"] == "gemm") & (device["K"] >= 512)
    device["latency_ms"] = model.predict(device) * np.where(slow, 1.6, 1.0)
    sample = kernel_eval.calibration_sample(device, per_family=24)
    tuned = model.without_calibration().calibrate(sample)
    assert ("A100-PCIe-40GB", "gemm/bmm/fp32") in tuned.local_
    rest = device.drop(sample.index)
    gemm = rest[rest["family"] == "gemm"]
    level_only = tuned.without_calibration()
    level_only.corrections_ = dict(tuned.corrections_)
    err = lambda m: np.mean(np.abs(m.predict(gemm) / gemm["latency_ms"] - 1))  # noqa: E731
    assert err(tuned) < 0.7 * err(level_only)


def test_floor_and_training_rows_and_calibration_sample():
    rows = _synthetic("T4")
    small = rows[(rows["family"] == "elementwise") & (rows["B"] * rows["H"] <= 65536)]
    assert measured_floor(rows) == pytest.approx(np.percentile(small["latency_ms"], 5))
    assert measured_floor(rows[rows["family"] == "gemm"], default=0.5) == 0.5
    long = rows.assign(latency_ms=np.where(rows["family"] == "gemm", 5.0, rows["latency_ms"]))
    kept = kernel_eval.training_rows(long)
    assert (kept["family"] == "elementwise").all()
    sample = kernel_eval.calibration_sample(rows, per_family=8)
    assert sample.index.is_unique and set(sample["family"]) == {"gemm", "elementwise"}
    gemm = sample[sample["family"] == "gemm"]["latency_ms"]
    pool = rows[rows["family"] == "gemm"]["latency_ms"]
    assert gemm.min() <= pool.quantile(0.05) and gemm.max() >= pool.quantile(0.95)  # spread over sizes
    smallest = rows.loc[rows["family"] == "elementwise", "latency_ms"].min()
    assert sample.loc[sample["family"] == "elementwise", "latency_ms"].min() == smallest  # the launch probe


def test_ops_frame_maps_neusight_rows_and_names_bad_ones():
    raw = pd.DataFrame(
        {
            "OPName": ["linear", "conv", "softmax", "matmul", "add", "bmm"],
            "Device": [
                "NVIDIA H100 80GB HBM3",
                "Tesla T4",
                "NVIDIA L4",
                "Tesla T4",
                "Quantum GPU",
                "Tesla T4",
            ],
            "B": [1, 2, 64, 1, 4, 2],
            "M": [128, np.nan, np.nan, 1, np.nan, 0],
            "N": [128, np.nan, np.nan, 1, np.nan, 8],
            "K": [128, np.nan, np.nan, 1, np.nan, 8],
            "H": [np.nan, np.nan, 512, np.nan, 10, np.nan],
            "Input_Channel": [np.nan, 16, np.nan, np.nan, np.nan, np.nan],
            "Output_Channel": [np.nan, 32, np.nan, np.nan, np.nan, np.nan],
            "Kernel_Szie": [np.nan, 3, np.nan, np.nan, np.nan, np.nan],
            "Input_Size": [np.nan, 28, np.nan, np.nan, np.nan, np.nan],
            "Stride": [np.nan, 1, np.nan, np.nan, np.nan, np.nan],
            "Padding": [np.nan, 1, np.nan, np.nan, np.nan, np.nan],
            "dtype": ["bf16", None, "fp32", "fp32", "fp32", "fp32"],
        }
    )
    rows = ops_frame(raw)
    assert list(rows["device"][:3]) == ["H100-SXM", "T4", "L4"]
    assert rows["dtype"].iloc[1] == "fp32"  # missing dtype: NeuSight's default (TF32 off)
    errors = row_errors(rows)
    assert errors[:3] == ["", "", ""]
    assert "matmul" in errors[3] and "Quantum GPU" in errors[4] and "M" in errors[5]


def test_calibration_budget_scores_the_kernels_not_measured():
    gpus = ("T4", "V100-PCIe-32GB", "P100-PCIe-16GB")
    table = pd.concat([_synthetic(d, seed=i, n=300) for i, d in enumerate(gpus)], ignore_index=True)
    slow = (table["device"] == "P100-PCIe-16GB") & (table["family"] == "gemm") & (table["K"] >= 256)
    table.loc[slow, "latency_ms"] *= 1.6  # a shape effect on one GPU: more kernels measured see it
    budget = kernel_eval.calibration_budget(table, budgets=(2, 32), seeds=(0,), n_estimators=30)
    assert set(budget.columns) == {"split", "group", "budget", "rows", "mape"}
    curve = budget.set_index(["group", "budget"])["mape"]
    assert curve[("gemm_bmm", 32)] < curve[("gemm_bmm", 2)]
    rows = budget.set_index(["group", "budget"])["rows"]
    assert rows[("gemm_bmm", 32)] < rows[("gemm_bmm", 2)] <= 3 * 300  # calibration kernels are not scored


def test_in_fit_scores_every_gpu_with_its_own_kernels_in_the_fit():
    gpus = ("T4", "V100-PCIe-32GB", "P100-PCIe-16GB")
    table = pd.concat([_synthetic(d, seed=i, n=200) for i, d in enumerate(gpus)], ignore_index=True)
    odd = (table["device"] == "T4") & (table["family"] == "gemm") & (table["K"] >= 256)
    table.loc[odd, "latency_ms"] *= 2.0  # a shape effect only the T4 shows: other GPUs cannot teach it
    held = kernel_eval.leave_one_gpu_out(table, n_estimators=40, calibrate=False)
    seen = kernel_eval.in_fit(table, n_estimators=40)
    assert len(seen) == len(table) and set(seen["gpu"]) == set(gpus)
    assert seen["pred_calibrated_ms"].notna().all() and seen["calibration_row"].any()
    ape = lambda f: np.abs(f["pred_ms"] / f["latency_ms"] - 1)  # noqa: E731
    t4 = lambda f: f[(f["gpu"] == "T4") & (f["family"] == "gemm")]  # noqa: E731
    assert ape(t4(seen)).mean() < ape(t4(held)).mean() / 2


def test_sustained_rates_read_what_a_gpu_reaches():
    device = _synthetic("T4", seed=3, n=400)
    rates = kernel_eval.sustained_rates(device, quantile=1.0)
    done = work(device)
    gemm = device["family"] == "gemm"
    short = gemm & (device["latency_ms"] <= kernel_eval.SUSTAINED_CAP_MS)  # throttled long GEMMs left out
    top = (done["flops"][short] / (device.loc[short, "latency_ms"] / 1e3)).max() / 1e12
    assert rates["peak_fp32_tflops"] == pytest.approx(top)
    assert 0 < rates["memory_bandwidth_gbs"] < 320  # a T4 never reaches its datasheet bandwidth here
    assert kernel_eval.sustained_rates(device[~gemm]).keys() == {"memory_bandwidth_gbs"}  # no GEMMs: none
    specs = kernel_eval.sustained_specs(device)
    assert specs["T4"].peak_fp32_tflops < 8.1 and specs["T4"].sm_count == 40  # the rest is the catalog's


def test_a_tensor_core_gemm_takes_the_efficiency_of_the_same_work_in_fp32():
    """A bf16 GEMM is priced as its fp32 twin with the above-floor time scaled by the rooflines' ratio:
    a large one reaches the same share of the bf16 peak as its twin of the fp32 peak, instead of the
    low efficiency of an fp32 kernel as short as its own bf16 roofline."""
    model = _gemm_model()
    shapes = pd.DataFrame({"op": "linear", "family": "gemm", "B": 1, "M": [256, 8192], "N": [256, 8192],
                           "K": [256, 8192], "device": "A100-SXM4-80GB"})  # fmt: skip
    fp32, bf16 = (kdata.conform_kernels(shapes.assign(dtype=d)) for d in ("fp32", "bf16"))
    floor = model.floor_of("A100-SXM4-80GB")
    t32, t16 = model.predict(fp32), model.predict(bf16)
    roof32, roof16 = (kernel_features(r)["t_roof_ms"].to_numpy() for r in (fp32, bf16))
    body32 = np.maximum(t32 - floor, roof32)
    assert t16 == pytest.approx(floor + body32 * roof16 / roof32, rel=1e-9)
    share32, share16 = roof32[1] / body32[1], roof16[1] / (t16[1] - floor)
    assert share16 == pytest.approx(share32) and share16 <= 1.0
    assert t16[1] < t32[1] / 8  # the 16x faster tensor peak shows on a large GEMM


def test_half_precision_matmuls_before_volta_get_the_fp32_peak():
    """PyTorch runs fp16 GEMMs and convolutions with FP32 math, so a P100 (2x FP16 vector rate, no
    tensor cores) gets no speed-up from AMP on them; a T4 gets its tensor peak, and a CPU its FP32 one."""
    p100, t4 = Devices.get("P100-PCIe-16GB"), Devices.get("T4")
    assert p100.peak_tflops(16) > 1.9 * p100.peak_fp32_tflops  # the datasheet's FP16 vector rate
    for family in ("gemm", "conv"):
        assert peak_flops(p100, "fp16", family) == pytest.approx(p100.peak_fp32_tflops * 1e12)
        assert peak_flops(t4, "fp16", family) == pytest.approx(t4.peak_tflops(16) * 1e12)
    model = _gemm_model()
    shapes = pd.DataFrame({"op": "linear", "family": "gemm", "B": 1, "M": [4096], "N": [4096], "K": [4096],
                           "device": "P100-PCIe-16GB"})  # fmt: skip
    fp32, fp16 = (kdata.conform_kernels(shapes.assign(dtype=d)) for d in ("fp32", "fp16"))
    assert model.predict(fp16)[0] == pytest.approx(model.predict(fp32)[0], rel=0.02)  # compute-bound


def test_in_session_tells_an_irregular_gpu_from_a_smooth_one_and_a_shared_miss_from_its_own():
    rng = np.random.default_rng(0)
    n = 400
    shape = pd.DataFrame({d: 2 ** rng.integers(4, 11, n) for d in ("B", "M", "N", "K")})
    roof = 2 * shape.prod(axis=1).to_numpy(float) / 1e10
    smooth = roof * (1 + 0.5 / np.log2(shape["K"].to_numpy()))  # a shape effect a regressor can learn
    shared = 0.3 * np.sin(np.log2(shape["M"].to_numpy()))  # a miss every GPU makes on the same shapes

    def gpu(name: str, latency: np.ndarray, miss: np.ndarray) -> pd.DataFrame:
        return shape.assign(gpu=name, split="test", family="gemm", op="bmm", H=np.nan, latency_ms=latency,
                            roofline_ms=roof, pred_ms=latency, pred_calibrated_ms=latency * np.exp(miss),
                            calibration_row=False)  # fmt: skip

    scored = pd.concat(
        [
            gpu("A", smooth, shared),
            gpu("B", smooth * np.exp(rng.normal(0, 0.3, n)), shared + rng.normal(0, 0.05, n)),
            gpu("C", smooth, rng.normal(0, 0.3, n)),
            gpu("A", smooth, shared).assign(split="train", latency_ms=1.0),  # other splits are not scored
        ],
        ignore_index=True,
    )
    scored.loc[:9, "calibration_row"] = True  # nor are the calibration kernels
    out = kernel_eval.in_session(scored).set_index("gpu")
    assert list(out.loc["A", ["group", "rows"]]) == ["gemm_bmm", n - 10]
    assert out.loc["A", "in_session_mape"] < 5 and out.loc["B", "in_session_mape"] > 15
    assert out.loc["A", "max_miss_corr"] > 0.9 and out.loc["C", "max_miss_corr"] < 0.2
    pooled = out.loc["all"]
    assert pooled["rows"] == 3 * n - 10
    expected = np.average(out.loc[["A", "B", "C"], "logo_calibrated_mape"], weights=[n - 10, n, n])
    assert pooled["logo_calibrated_mape"] == pytest.approx(expected)
