"""Time models, splits, metrics and the predict-time verb (small synthetic tables; mirror where noted)."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest

from chronos_core.errors import ChronosError
from chronos_core.predict import metrics, physics, splits
from chronos_core.predict.columns import PRED_COLUMNS
from chronos_core.predict.gbm_baseline import ChronosXGBBaseline
from chronos_core.predict.hardware_aware import HardwareAwareTimeModel
from chronos_core.predict.predict_time_cli import add_parsers, predict_rows

GPUS = {
    "A100-PCIe-80GB": (108, 1410, 80, 1935, 19.5, 78.0, 432),
    "A40": (84, 1740, 48, 696, 37.4, 37.4, 336),
    "T4": (40, 1590, 16, 320, 8.1, 65.0, 320),
    "V100-SXM2-16GB": (80, 1530, 16, 900, 15.7, 31.4, 640),
    "L40S": (142, 2520, 48, 864, 91.6, 91.6, 568),
    "P100-PCIe-16GB": (56, 1329, 16, 732, 9.5, 19.0, 0),
}


def synthetic_table(seed: int = 0, lrs: int = 2) -> pd.DataFrame:
    """Rows that follow a roofline law plus a fixed overhead, with learning-rate repeats and noise."""
    rng = np.random.default_rng(seed)
    rows = []
    models = {
        "netA": ("CNN", 2e8, 20),
        "netB": ("MLP", 6e8, 8),
        "netC": ("CNN", 1e9, 40),
        "netD": ("MLP", 2e9, 12),
    }
    for gpu, (sm, clock, mem, bw, fp32, fp16, tc) in GPUS.items():
        for model, (family, flops, depth) in models.items():
            for batch in (16, 64, 256):
                for amp in (False, True):
                    for lr in range(lrs):
                        row = dict(
                            family=family,
                            model=model,
                            dataset="CIFAR10",
                            dataset_size=50000,
                            input_shape="(3, 32, 32)",
                            batch_size=batch,
                            precision=16 if amp else 32,
                            amp=amp,
                            optimizer="SGD",
                            learning_rate=10.0 ** -(lr + 2),
                            param_count=flops / 100,
                            flops_train_per_sample=3 * flops,
                            flops_train_per_batch=3 * flops * batch,
                            param_bytes=4 * flops / 100,
                            total_state_bytes=8 * flops / 100,
                            optimizer_state_bytes=4 * flops / 100,
                            act_bytes_per_sample=flops / 200,
                            depth=depth,
                            gpu_name=gpu,
                            device=gpu,
                            gpu_sm_count=sm,
                            gpu_boost_clock_mhz=clock,
                            gpu_memory_gb=mem,
                            gpu_mem_bandwidth_gbs=bw,
                            gpu_fp32_tflops=fp32,
                            gpu_fp16_tflops=fp16,
                            gpu_tensor_cores=tc,
                        )
                        rows.append(row)
    table = pd.DataFrame(rows)
    phys = physics.physics_frame(table)
    overhead = 0.05 * phys["n_layers"]
    compute = overhead + phys["t_flop_ms"] / 0.4 + phys["t_mem_ms"]
    table["compute_ms"] = compute * np.exp(rng.normal(0, 0.03, len(table)))
    table["loader_wait_ms"] = 0.02 * table["batch_size"] * np.exp(rng.normal(0, 0.1, len(table)))
    table["batch_time_ms"] = table["compute_ms"] + table["loader_wait_ms"]
    return table


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return synthetic_table()


@pytest.fixture(scope="module")
def fitted(table: pd.DataFrame) -> HardwareAwareTimeModel:
    return HardwareAwareTimeModel(n_estimators=60, calibration_folds=3, n_jobs=1).fit(table)


# ------------------------------------------------------------------------------------------- splits


def test_repeats_share_a_group_and_never_straddle_folds(table):
    groups = splits.config_groups(table)
    assert len(np.unique(groups)) == len(table) // 2  # two learning rates per config
    for fold in splits.unseen_config(table, n_folds=3):
        train_groups = set(splits.config_groups(table, with_device=False)[fold.train_idx])
        test_groups = set(splits.config_groups(table, with_device=False)[fold.test_idx])
        assert not train_groups & test_groups
    fold = next(splits.random_split(table, test_frac=0.25))
    assert not set(groups[fold.train_idx]) & set(groups[fold.test_idx])


def test_leave_one_out_splits_hold_out_whole_gpus_and_models(table):
    folds = list(splits.leave_one_gpu_out(table))
    assert [f.name for f in folds] == sorted(GPUS)
    for f in folds:
        assert set(table.device.iloc[f.test_idx]) == {f.name}
        assert f.name not in set(table.device.iloc[f.train_idx])
    both = list(splits.unseen_gpu_and_model(table))
    assert len(both) == len(GPUS) * 4
    f = both[0]
    gpu, model = f.name.split(" x ")
    train = table.iloc[f.train_idx]
    assert gpu not in set(train.device) and model not in set(train.model)
    with pytest.raises(ChronosError, match="Unknown split"):
        splits.get_split("nope")


# ------------------------------------------------------------------------------------------- metrics


def test_regression_metrics_values():
    m = metrics.regression_metrics([100, 200], [110, 180], lo=[90, 190], hi=[120, 210])
    assert m["mae"] == pytest.approx(15.0)
    assert m["mape"] == pytest.approx(10.0)
    assert m["coverage"] == pytest.approx(1.0)
    m = metrics.regression_metrics([100, 200, np.nan], [100, 300, 5], lo=[101, 0, 0], hi=[200, 400, 9])
    assert m["n"] == 2 and m["coverage"] == pytest.approx(0.5)
    assert m["median_ape"] == pytest.approx(25.0)


# ------------------------------------------------------------------------------------------- physics


def test_physics_uses_tensor_peak_for_amp_and_tf32_for_ampere_convs(table):
    phys = physics.physics_frame(table)
    a100 = table.device == "A100-PCIe-80GB"
    amp_peak = phys.loc[a100 & table.amp, "peak_tflops"].iloc[0]
    assert amp_peak == pytest.approx(312.0)
    cnn_fp32 = phys.loc[a100 & ~table.amp & (table.family == "CNN"), "peak_tflops"].iloc[0]
    mlp_fp32 = phys.loc[a100 & ~table.amp & (table.family == "MLP"), "peak_tflops"].iloc[0]
    assert cnn_fp32 == pytest.approx(156.0) and mlp_fp32 == pytest.approx(19.5)
    p100 = table.device == "P100-PCIe-16GB"
    assert phys.loc[p100 & ~table.amp & (table.family == "CNN"), "peak_tflops"].iloc[0] == pytest.approx(9.53)


def test_unknown_gpu_is_built_from_its_columns():
    row = {
        "device": "Mystery-9000",
        "gpu_fp32_tflops": 50.0,
        "gpu_fp16_tflops": 50.0,
        "gpu_tensor_cores": 400,
        "gpu_boost_clock_mhz": 2000,
        "gpu_mem_bandwidth_gbs": 1000.0,
        "gpu_sm_count": 100,
    }
    spec = physics.resolve_spec(row)
    assert spec.name == "Mystery-9000"
    assert spec.peak_fp16_tensor_tflops == pytest.approx(400 * 2000e6 * 256 / 1e12)
    assert physics.resolve_spec({"gpu_name": "Tesla T4"}).name == "T4"


def test_l2_cache_comes_from_catalog_then_column_then_generation():
    assert physics.estimate_l2_mb(8.9, 568) == 72.0 and physics.estimate_l2_mb(6.1, 0) == 4.0
    guess = physics.estimate_l2_mb
    assert guess(np.nan, 0) < guess(np.nan, 320, 1700) < guess(np.nan, 320, 2500)  # Ada-class clock
    row = {"device": "Mystery-9000", "gpu_fp32_tflops": 50.0, "gpu_mem_bandwidth_gbs": 1000.0}
    assert physics.resolve_spec({**row, "gpu_l2_cache_mb": 64}).l2_cache_mb == 64
    assert physics.resolve_spec({**row, "gpu_compute_capability": "9.0"}).l2_cache_mb == 50.0
    frame = physics.physics_frame(pd.DataFrame([{**row, "gpu_name": "L40S", "device": "L40S"}, row]))
    # L40S from the catalog; the mystery GPU has no tensor cores and no compute capability
    assert frame["log_l2_mb"].tolist() == pytest.approx([np.log(96.0), np.log(3.0)])


def test_l2_features_scale_with_the_working_set(table):
    frame = physics.physics_frame(table)
    assert set(physics.L2_FEATURES) <= set(frame) and set(physics.L2_FEATURES) <= set(
        physics.PHYSICS_FEATURES
    )
    assert frame[list(physics.L2_FEATURES)].notna().all().all()
    one = table[(table.device == "T4") & (table.model == "netA") & ~table.amp].drop_duplicates("batch_size")
    ws = frame.loc[one.index, "log_act_ws_over_l2"].to_numpy()
    assert np.diff(ws) == pytest.approx(
        np.log(np.diff(one.batch_size.to_numpy()) + one.batch_size.to_numpy()[:-1])
        - np.log(one.batch_size.to_numpy()[:-1])
    )
    t4, l40s = (
        frame.loc[table.device == "T4", "log_params_over_l2"],
        frame.loc[table.device == "L40S", "log_params_over_l2"],
    )
    assert t4.iloc[0] - l40s.iloc[0] == pytest.approx(np.log(96 / 4))


def test_cpu_rows_have_no_l2_terms():
    row = {
        "device": "cpu",
        "batch_size": 8,
        "flops_train_per_batch": 1e9,
        "param_count": 1e6,
        "act_bytes_per_sample": 1e5,
    }
    frame = physics.physics_frame(pd.DataFrame([row]))
    assert frame[list(physics.L2_FEATURES)].isna().all().all()


# ------------------------------------------------------------------------------------------- models


def test_hardware_aware_transfers_to_an_unseen_gpu(table):
    fold = next(f for f in splits.leave_one_gpu_out(table) if f.name == "A40")
    model = HardwareAwareTimeModel(n_estimators=80, calibration_folds=0, n_jobs=1).fit(
        table.iloc[fold.train_idx]
    )
    test = table.iloc[fold.test_idx]
    pred = model.predict(test)
    assert list(pred.columns) == list(PRED_COLUMNS)
    err = metrics.regression_metrics(test.compute_ms, pred.pred_compute_ms)
    assert err["mape"] < 25.0  # the synthetic law is physics plus overhead: it must transfer


def test_hardware_aware_refuses_unknown_features(table):
    with pytest.raises(ChronosError, match="Unknown feature.*no_such_feature"):
        HardwareAwareTimeModel(
            n_estimators=5, calibration_folds=0, features=("log_batch", "no_such_feature")
        ).fit(table)


def test_nested_feature_selection_chooses_without_the_test_gpu(table):
    from chronos_core.predict.evaluate import nested_feature_selection

    small = table[table.device.isin(["A40", "T4", "V100-SXM2-16GB", "L40S"])]
    candidates = {
        "roofline": {"features": physics.ROOFLINE_FEATURES},
        "batch_only": {"features": ("log_batch",)},
    }
    out = nested_feature_selection(small, candidates, n_estimators=30)
    assert sorted(out.device) == ["A40", "L40S", "T4", "V100-SXM2-16GB"]
    assert set(out.chosen) == {"roofline"}  # batch size alone cannot tell GPUs apart
    for row in out.itertuples():
        assert row.chosen_mape == getattr(row, f"outer_{row.chosen}")
        assert row.inner_roofline < row.inner_batch_only
    with pytest.raises(ChronosError, match="needs >= 3 GPUs"):
        nested_feature_selection(table[table.device.isin(["A40", "T4"])], candidates, n_estimators=5)
    with pytest.raises(ChronosError, match="Unknown target 'loader'"):
        nested_feature_selection(small, candidates, target="loader")
    batch = nested_feature_selection(small, {"default": {}}, target="batch_time_ms", n_estimators=30)
    assert (batch.chosen == "default").all() and (batch.chosen_mape < 25).all()


def test_hardware_aware_intervals_and_sum(fitted, table):
    pred = fitted.predict(table)
    assert np.allclose(pred.pred_batch_time_ms, pred.pred_compute_ms + pred.pred_loader_ms)
    assert (pred.pred_batch_time_ms_lo < pred.pred_batch_time_ms).all()
    assert (pred.pred_batch_time_ms_hi > pred.pred_batch_time_ms).all()
    lo, hi = fitted.log_residual_q_
    assert lo < 0 < hi
    assert set(fitted.regime_q_) == {"seen", "unseen_gpu", "unseen_model", "unseen_gpu_model"}
    assert all(q[0] < 0 < q[1] for q in fitted.regime_q_.values())
    with pytest.raises(ChronosError, match="not fitted"):
        HardwareAwareTimeModel().predict(table)


def test_gbm_baseline_ignores_leaky_columns(table):
    base = ChronosXGBBaseline(n_estimators=30, n_jobs=1).fit(table)
    leaky = table.assign(avg_batch_time_ms=table.batch_time_ms, examples_per_sec=1.0)
    base2 = ChronosXGBBaseline(n_estimators=30, n_jobs=1).fit(leaky)
    assert np.allclose(base.predict(table).pred_compute_ms, base2.predict(leaky).pred_compute_ms)
    assert base.predict(table).pred_batch_time_ms_lo.isna().all()


def test_layerwise_sums_per_layer_predictions():
    from chronos_core.predict.layerwise import LayerwiseTimeModel

    rng = np.random.default_rng(0)
    rows = []
    for kind in ("conv2d", "linear", "attention"):  # forests for conv/linear, an MLP for attention
        for _ in range(40):
            flops = 10 ** rng.uniform(4, 9)
            rows.append(
                dict(
                    layer_type=kind,
                    flops_fwd=flops,
                    param_count=flops / 50,
                    output_elems=flops / 100,
                    batch_size=int(2 ** rng.integers(0, 7)),
                    train_ms=3 * flops / 1e7 + 0.01,
                )
            )
    model = LayerwiseTimeModel(n_estimators=20).fit(pd.DataFrame(rows))
    inv = pd.DataFrame(
        {
            "layer_type": ["conv", "linear", "activation"],
            "flops_fwd": [1e8, 1e6, 1e5],
            "params": [1e6, 2e4, 0],
            "output_elems": [1e6, 1e4, 1e4],
            "batch_size": [8, 8, 8],
        }
    )
    per_layer = model.predict_layers(inv)
    assert per_layer[2] == 0.0 and per_layer[0] > per_layer[1] > 0
    assert set(model.regressors_) == {"conv2d", "linear", "attention"}
    attn = inv.assign(layer_type="attention")
    assert (model.predict_layers(attn) > 0).all()
    pred = model.predict(
        pd.DataFrame(
            [
                {"model": "SimpleCNN", "dataset": "CIFAR10", "batch_size": 4},
                {"model": "no-such-model", "dataset": "CIFAR10", "batch_size": 4},
            ]
        )
    )
    assert pred.pred_compute_ms.iloc[0] > 0 and np.isnan(pred.pred_compute_ms.iloc[1])


# ------------------------------------------------------------------------------------------- CLI


def test_predict_rows_keeps_rows_and_reports_errors(fitted, table):
    rows = table.drop(columns=["compute_ms", "loader_wait_ms", "batch_time_ms"]).head(3).copy()
    rows["device"] = rows["gpu_name"] = "Mystery-9000"  # not in the catalog: specs come from its columns
    rows.loc[rows.index[1], "flops_train_per_batch"] = np.nan
    rows.loc[rows.index[1], ["flops_train_per_sample"]] = np.nan
    rows.loc[rows.index[2], "gpu_mem_bandwidth_gbs"] = np.nan
    out = predict_rows(rows, fitted)
    assert len(out) == 3 and list(out.columns[: rows.shape[1]]) == list(rows.columns)
    assert out.error.iloc[0] == "" and out.pred_batch_time_ms.iloc[0] > 0
    assert "FLOPs" in out.error.iloc[1] and np.isnan(out.pred_batch_time_ms.iloc[1])
    assert "spec columns" in out.error.iloc[2]


def test_predict_time_verb_writes_output(tmp_path, monkeypatch, fitted, table):
    import chronos_core.predict.time_models as tm

    monkeypatch.setattr(tm, "default_model", lambda *a, **k: fitted)
    src = tmp_path / "in.csv"
    table.drop(columns=["compute_ms", "loader_wait_ms", "batch_time_ms"]).head(5).to_csv(src, index=False)
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict-time", "--input", str(src), "--output", str(tmp_path / "out.csv")])
    assert args.func(args) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert len(out) == 5 and set(PRED_COLUMNS) <= set(out.columns)
    missing = parser.parse_args(["predict-time", "--input", str(tmp_path / "nope.csv"), "--output", "x.csv"])
    with pytest.raises(ChronosError, match="does not exist"):
        missing.func(missing)


def test_chronos_schema_rows_are_accepted(mirror, fitted):
    from chronos_core.data import registry

    raw = registry.read("chronos-time-cnn").head(4)
    raw = raw.drop(
        columns=[
            c
            for c in (
                "avg_batch_time_ms",
                "compute_ms",
                "avg_loader_ms",
                "loader_ms",
                "loader_wait_ms",
                "p90_batch_time_ms",
                "examples_per_sec",
                "loader_ratio",
            )
            if c in raw
        ]
    )
    out = predict_rows(raw, fitted)
    assert len(out) == 4 and (out.error == "").all()
    assert (out.pred_compute_ms > 0).all()


def test_a100_unseen_split_holds_out_their_five_configs(mirror):
    from chronos_core.data import registry
    from chronos_core.data.adapters import adapt_a100_agg

    agg = adapt_a100_agg(registry.read("a100-runs-agg"))
    fold = next(splits.a100_unseen_split(agg))
    assert len(fold.test_idx) == 5 and len(fold.train_idx) == len(agg) - 5


def test_default_model_is_cached_on_disk_and_in_memory(tmp_path, monkeypatch, table):
    import chronos_core.predict.time_models as tm

    monkeypatch.setenv("CHRONOS_MODEL_CACHE", str(tmp_path))
    monkeypatch.setattr(tm, "_LOADED", {})
    small = lambda **kw: HardwareAwareTimeModel(n_estimators=20, calibration_folds=0)  # noqa: E731
    monkeypatch.setitem(tm.TIME_MODELS, "hardware_aware", small)
    first = tm.default_model(table)
    assert len(list(tmp_path.glob("hardware_aware-*.pkl"))) == 1
    assert tm.default_model(table) is first
    tm._LOADED.clear()
    again = tm.default_model(table)  # from disk
    assert again is not first
    assert np.allclose(again.predict(table).pred_compute_ms, first.predict(table).pred_compute_ms)
    one = tm.predict_time(table.drop(columns=["compute_ms"]).iloc[0].to_dict(), again)
    assert len(one) == 1 and one.pred_compute_ms.iloc[0] > 0


def test_transfer_oracle_is_exact_on_consistent_tables_and_not_on_noisy_ones():
    from chronos_core.predict.evaluate import transfer_oracle

    rows = []
    for model, base in (("a", 10.0), ("b", 30.0)):
        for batch in (16, 32, 64):
            for device, speed in (("G1", 1.0), ("G2", 2.0), ("G3", 4.0)):
                rows.append({"model": model, "batch_size": batch, "device": device,
                             "compute_ms": base * batch / 16 / speed})  # fmt: skip
    clean = pd.DataFrame(rows)
    out = transfer_oracle(clean)
    assert set(out["device"]) == {"G1", "G2", "G3"}
    assert np.allclose(out["oracle_global_scale_mape"], 0, atol=1e-9)
    noisy = clean.copy()
    noisy.loc[noisy.device == "G3", "compute_ms"] *= np.where(
        noisy[noisy.device == "G3"].model == "a", 1.0, 2.0
    )
    out = transfer_oracle(noisy).set_index("device")
    assert out.loc["G3", "oracle_global_scale_mape"] > 10
    assert out.loc["G3", "oracle_per_model_scale_mape"] == pytest.approx(0, abs=1e-9)


def test_own_rows_resolve_to_the_device_they_were_measured_on(tmp_path):
    import json

    from chronos_core.predict.time_models import own_time_tables

    folder = tmp_path / "cpu-some-other-host"
    folder.mkdir()
    row = {
        "status": "ok",
        "device": "cpu-some-other-host",
        "model": "m",
        "batch_size": 8,
        "compute_ms": 5.0,
        "flops_train_per_batch": 1e9,
        "param_count": 1e6,
        "gpu_fp32_tflops": 0.1,
        "gpu_tensor_cores": 0,
    }
    pd.DataFrame([row]).to_csv(folder / "models.csv", index=False)
    spec = {
        "name": "cpu-some-other-host",
        "kind": "cpu",
        "peak_fp32_tflops": 0.1,
        "memory_bandwidth_gbs": None,
    }
    (folder / "models.json").write_text(json.dumps({"device_spec": spec}))
    own = own_time_tables(tmp_path)
    assert own.source.tolist() == ["own:cpu-some-other-host"]
    assert physics.physics_frame(own)["is_cpu"].tolist() == [1.0]


def test_loader_wait_follows_the_measured_host_or_else_the_provider(table):
    hosts = table.assign(
        host_provider=np.where(table.device.isin(["T4", "P100-PCIe-16GB", "V100-SXM2-16GB"]), "GCP", "RunPod")
    )
    runpod = hosts.host_provider == "RunPod"
    hosts.loc[runpod, "loader_wait_ms"] *= 20  # the slow-loading hosts
    hosts["batch_time_ms"] = hosts.compute_ms + hosts.loader_wait_ms
    model = HardwareAwareTimeModel(n_estimators=60, calibration_folds=0).fit(hosts[hosts.device != "A40"])
    a40 = hosts[hosts.device == "A40"]
    measured = a40.loader_wait_ms.to_numpy()
    as_runpod = model.predict(a40).pred_loader_ms.to_numpy()  # unseen GPU: the provider decides
    as_gcp = model.predict(a40.assign(host_provider="GCP")).pred_loader_ms.to_numpy()
    assert np.median(as_runpod / measured) == pytest.approx(1.0, rel=0.35)
    assert np.median(as_runpod / as_gcp) > 5
    t4 = hosts[hosts.device == "T4"]  # a measured host: its own loader model, with or without the provider
    seen = model.predict(t4).pred_loader_ms.to_numpy()
    assert np.allclose(seen, model.predict(t4.assign(host_provider=None)).pred_loader_ms.to_numpy())
    assert np.median(seen / t4.loader_wait_ms.to_numpy()) == pytest.approx(1.0, rel=0.35)
    assert np.median(model.predict(t4.assign(host_provider="RunPod")).pred_loader_ms.to_numpy() / seen) > 5


def test_repeat_floors_are_exact_on_a_small_table():
    from chronos_core.predict.evaluate import repeat_noise_floor

    rows = [{"model": "m", "batch_size": 8, "device": "G", "learning_rate": lr, "compute_ms": ms}
            for lr, ms in ((0.1, 1.0), (0.01, 1.0), (0.001, 4.0))]  # fmt: skip
    floor = repeat_noise_floor(pd.DataFrame(rows)).iloc[0]
    # other repeats' means: 2.5, 2.5, 1.0 -> APE 150, 150, 75; best single value 1.0 -> APE 0, 0, 75
    assert floor["mape"] == pytest.approx(125.0) and floor["best_constant_mape"] == pytest.approx(25.0)


def test_intervals_follow_what_the_model_has_seen(fitted, table):
    row = table.iloc[[0]]
    cases = {
        "seen": row,
        "unseen_gpu": row.assign(device="RTX4090", gpu_name="RTX4090"),
        "unseen_model": row.assign(model="brand-new-net"),
        "unseen_gpu_model": row.assign(device="RTX4090", gpu_name="RTX4090", model="brand-new-net"),
    }
    for regime, case in cases.items():
        assert fitted.regimes(case).tolist() == [regime]
        pred = fitted.predict(case).iloc[0]
        lo, hi = fitted.regime_q_[regime]
        assert pred.pred_batch_time_ms_lo == pytest.approx(pred.pred_batch_time_ms * np.exp(lo))
        assert pred.pred_batch_time_ms_hi == pytest.approx(pred.pred_batch_time_ms * np.exp(hi))
    assert fitted.regimes(row.assign(model="RESNET-50")).tolist() == ["unseen_model"]
    width = {r: q[1] - q[0] for r, q in fitted.regime_q_.items()}
    assert width["seen"] < width["unseen_gpu_model"]  # new configs of known GPUs and models are easiest
