"""How well the kernel model transfers: leave-one-GPU-out on NeuSight's tables, their
out-of-distribution shapes, calibration from a handful of the held-out GPU's kernels (and how the
error falls with their number), sustained rates in place of datasheet peaks, and tensor-core
precisions on XLA's B200 GEMMs (B200 never in the fit).

Training rows rule (fixed before any fold is scored, from the known trap): matmul-class kernels
longer than `SUSTAINED_CAP_MS` are dropped from training. In NeuSight's training split the P4,
T4 and P100 run long GEMMs back to back until their clocks throttle (a P4 GEMM reaches 0.3 of its
peak there and 0.76 in the test split), which would teach the model that long GEMMs are slow on
every GPU. Short kernels run at the sustained clock; trees extend their plateau to longer ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from chronos_core.catalog.devices import Devices, DeviceSpec
from chronos_core.predict.kernels import KernelModel, kernel_body, roofline_ms, work

SUSTAINED_CAP_MS = 1.0
CALIBRATION_PER_GROUP = 16  # kernels per op group and dtype a simulated calibration measures
CALIBRATION_BUDGETS = (4, 8, 16, 32, 64)  # the budgets `calibration_budget` compares
# of a GPU's achieved rates, what a published "sustained" figure reads (fixed before any scoring)
SUSTAINED_QUANTILE = 0.95
# `in_session`'s shape regressor, cross-validated within one GPU's measuring session
IN_SESSION_XGB = {"n_estimators": 300, "max_depth": 4, "learning_rate": 0.05}
# NeuSight's published per-op errors (published_errors/perop.csv, out-of-distribution columns).
NEUSIGHT_OOD = {"gemm_bmm": 13.8, "gemm_linear": 13.9, "elementwise": 19.3, "softmax": 13.9, "ln": 56.7}


def training_rows(table: pd.DataFrame, cap_ms: float = SUSTAINED_CAP_MS) -> pd.DataFrame:
    """The rows a kernel model is fitted on: all but long (throttled) matmul-class kernels."""
    long = table["family"].isin(["gemm", "conv"]) & (table["latency_ms"] > cap_ms)
    return table[~long]


def calibration_sample(
    rows: pd.DataFrame, per_family: int = CALIBRATION_PER_GROUP, seed: int = 0
) -> pd.DataFrame:
    """What `chronos calibrate` would measure, drawn from a GPU's own kernels of one measuring session:
    per op group (bmm and linear apart, other families whole) and dtype, `per_family` kernels spread
    evenly over the range of latencies (small to large), plus the smallest elementwise call (the
    launch floor). Training-split matmul-class calls over `SUSTAINED_CAP_MS` are not drawn."""
    is_train = rows["split"] == "train" if "split" in rows else pd.Series(False, index=rows.index)
    pool = pd.concat([training_rows(rows[is_train]), rows[~is_train]])
    rng = np.random.default_rng(seed)
    picked = []
    keys = [op_group(pool), pool["dtype"].fillna("fp32") if "dtype" in pool else "fp32"]
    for (group, _), part in pool.groupby(keys):
        order = part["latency_ms"].sort_values()
        ranks = np.linspace(0, len(order) - 1, min(per_family, len(order))).round().astype(int)
        jitter = rng.integers(-2, 3, size=len(ranks))
        picked.extend(order.index[np.clip(ranks + jitter, 0, len(order) - 1)])
        if group == "elementwise":
            picked.append(order.index[0])
    return pool.loc[pd.Index(picked).unique()]


def leave_one_gpu_out(
    table: pd.DataFrame, *, n_estimators: int = 300, calibrate: bool = True, progress: bool = False
) -> pd.DataFrame:
    """Predict every held-out GPU's kernels (train and test splits) from the other GPUs' training rows.

    Returns one row per scored kernel: gpu, split, family, op, latency_ms, pred_ms, roofline_ms and,
    with `calibrate`, pred_calibrated_ms: calibrated on `calibration_sample` of the same split (one
    measuring session: the training split's long GEMMs ran throttled, its test split did not), the
    calibration kernels themselves flagged `calibration_row` and not scored.
    """
    out = [_score(model, held, calibrate) for _gpu, model, held in _held_out(table, n_estimators, progress)]
    return pd.concat(out, ignore_index=True)


def in_fit(table: pd.DataFrame, *, n_estimators: int = 300) -> pd.DataFrame:
    """The ceiling of `leave_one_gpu_out`: one model fitted on every GPU's training rows, each GPU's rows
    scored (and calibrated) the same way. With its own training session in the fit, what a GPU's
    out-of-distribution shapes still miss is what its training session does not tell about them."""
    model = KernelModel(n_estimators=n_estimators).fit(training_rows(table[table["split"] == "train"]))
    out = [_score(model, held, True) for _, held in table.groupby("device", sort=True)]
    return pd.concat(out, ignore_index=True)


def in_session(scored: pd.DataFrame, *, folds: int = 5, seed: int = 0, min_shared: int = 30) -> pd.DataFrame:
    """How far a GPU's test-shape kernels can be predicted from the rest of their own measuring session.

    Per GPU and op group of scored test-split rows (`leave_one_gpu_out`'s output, calibration kernels
    left out): `in_session_mape`, a `folds`-fold cross-validation within that session of a shape
    regressor (gradient-boosted log latency over roofline from log shape dims and the roofline time),
    which sees most of the session's own kernels and so far more than any calibration would;
    `logo_calibrated_mape`, the held-out model's calibrated error on the same rows; and
    `max_miss_corr`, the largest correlation of this GPU's log misses with another GPU's on the
    shapes both measured (at least `min_shared`): low means the miss is the GPU's own, which other
    GPUs cannot teach. A row `all` per group pools the GPUs (row-weighted).
    """
    import xgboost as xgb
    from sklearn.model_selection import KFold

    frame = scored[scored["split"] == "test"].copy()
    if "calibration_row" in frame:
        frame = frame[~frame["calibration_row"].astype(bool)]
    frame["group"] = op_group(frame)
    frame["miss"] = np.log(frame["pred_calibrated_ms"] / frame["latency_ms"])
    rows = []
    for group, part in frame.groupby("group"):
        dims = ["B", "M", "N", "K"] if group.startswith("gemm") else ["B", "H"]
        # pairwise over the shapes both GPUs measured
        corr = part.pivot_table(index=dims, columns="gpu", values="miss").corr(min_periods=min_shared)
        for gpu, own in part.groupby("gpu"):
            x = np.column_stack([np.log2(own[dims].to_numpy(float)), np.log(own["roofline_ms"].to_numpy())])
            y = np.log(own["latency_ms"] / own["roofline_ms"]).to_numpy()
            fitted = np.full(len(y), np.nan)
            n_splits = min(folds, len(y))
            if n_splits >= 2:
                for tr, te in KFold(n_splits, shuffle=True, random_state=seed).split(x):
                    reg = xgb.XGBRegressor(**IN_SESSION_XGB, random_state=seed)
                    fitted[te] = reg.fit(x[tr], y[tr]).predict(x[te])
            lat = own["latency_ms"].to_numpy()
            session_ape = np.abs(own["roofline_ms"].to_numpy() * np.exp(fitted) / lat - 1)
            rows.append(
                {"group": group, "gpu": gpu, "rows": len(own),
                 "in_session_mape": float(np.mean(session_ape)) * 100,
                 "logo_calibrated_mape": float(np.mean(np.abs(own["pred_calibrated_ms"] / lat - 1)) * 100),
                 "max_miss_corr": float(corr[gpu].drop(gpu).max())}
            )  # fmt: skip
    out = pd.DataFrame(rows)
    mapes = ("in_session_mape", "logo_calibrated_mape")
    pooled = [
        {"group": group, "gpu": "all", "rows": int(part["rows"].sum()),
         **{c: float(np.average(part[c], weights=part["rows"])) for c in mapes}, "max_miss_corr": np.nan}
        for group, part in out.groupby("group")
    ]  # fmt: skip
    return pd.concat([out, pd.DataFrame(pooled)], ignore_index=True)


def _score(model: KernelModel, held: pd.DataFrame, calibrate: bool) -> pd.DataFrame:
    """One GPU's rows with pred_ms, roofline_ms and (`calibrate`) pred_calibrated_ms: calibrated per
    split on `calibration_sample` of that split, the calibration rows flagged and not scored."""
    scored = held[["device", "split", "family", "op", "B", "M", "N", "K", "H", "latency_ms"]].copy()
    scored["pred_ms"] = model.predict(held)
    scored["roofline_ms"] = roofline_ms(held)
    if calibrate:
        scored["pred_calibrated_ms"] = np.nan
        scored["calibration_row"] = False
        for _, session in held.groupby("split"):
            sample = calibration_sample(session)
            tuned = model.without_calibration().calibrate(sample)
            scored.loc[session.index, "pred_calibrated_ms"] = tuned.predict(session)
            scored.loc[sample.index, "calibration_row"] = True
    return scored.rename(columns={"device": "gpu"})


def _held_out(
    table: pd.DataFrame,
    n_estimators: int,
    progress: bool = False,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> Iterator[tuple[str, KernelModel, pd.DataFrame]]:
    """(GPU, a model fitted on the other GPUs' training rows, the GPU's rows) for every GPU; `specs`
    replaces the catalog's specs of the GPUs it names."""
    train = table[table["split"] == "train"]
    gpus = sorted(table["device"].unique())
    iterator = gpus
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(gpus, desc="leave-one-GPU-out")
    for gpu in iterator:
        model = KernelModel(n_estimators=n_estimators).fit(
            training_rows(train[train["device"] != gpu]), specs
        )
        yield gpu, model, table[table["device"] == gpu]


def calibration_budget(
    table: pd.DataFrame,
    budgets: Sequence[int] = CALIBRATION_BUDGETS,
    seeds: Sequence[int] = (0, 1, 2),
    n_estimators: int = 300,
    progress: bool = False,
) -> pd.DataFrame:
    """How the calibrated error falls with the number of the held-out GPU's kernels measured.

    Leave-one-GPU-out as in `leave_one_gpu_out`; per split (one measuring session each), budget and
    seed, `calibration_sample(per_family=budget)` calibrates the model and the session's other rows
    are scored. Returns split, group, budget, rows (scored per seed, summed over GPUs) and mape: the
    pooled MAPE over GPUs, averaged over seeds (which kernels of each latency rank are drawn)."""
    records = []
    for gpu, model, held in _held_out(table, n_estimators, progress):
        for split, session in held.groupby("split"):
            for budget in budgets:
                for seed in seeds:
                    sample = calibration_sample(session, per_family=budget, seed=seed)
                    rest = session.drop(sample.index)
                    pred = model.without_calibration().calibrate(sample).predict(rest)
                    truth = rest["latency_ms"].to_numpy()
                    frame = pd.DataFrame({"group": op_group(rest), "ape": np.abs(pred - truth) / truth * 100})
                    for group, part in frame.groupby("group"):
                        records.append(
                            {
                                "gpu": gpu,
                                "split": split,
                                "budget": budget,
                                "seed": seed,
                                "group": group,
                                "rows": len(part),
                                "ape_sum": float(part["ape"].sum()),
                            }
                        )
    frame = pd.DataFrame(records)
    pooled = frame.groupby(["split", "group", "budget", "seed"])[["rows", "ape_sum"]].sum()
    pooled["mape"] = pooled["ape_sum"] / pooled["rows"]
    out = pooled.groupby(["split", "group", "budget"]).agg(rows=("rows", "mean"), mape=("mape", "mean"))
    return out.reset_index().astype({"rows": int})


def sustained_rates(rows: pd.DataFrame, quantile: float = SUSTAINED_QUANTILE) -> dict[str, float]:
    """What a published benchmark of a GPU would list, from one session of its kernels: the fp32 GEMM
    FLOP/s and the elementwise bytes/s it reaches (the `quantile` of the achieved rates; long,
    throttled GEMMs left out as in training). Keys are DeviceSpec fields; a rate without 20 kernels
    behind it is left out."""
    rows = training_rows(rows)
    done = work(rows)
    seconds = rows["latency_ms"].to_numpy(float) / 1e3
    gemm = ((rows["family"] == "gemm") & (rows["dtype"].fillna("fp32") == "fp32")).to_numpy()
    vector = (rows["family"] == "elementwise").to_numpy()
    out = {}
    if gemm.sum() >= 20:
        out["peak_fp32_tflops"] = (
            float(np.quantile(done["flops"].to_numpy()[gemm] / seconds[gemm], quantile)) / 1e12
        )
    if vector.sum() >= 20:
        rate = done["bytes"].to_numpy()[vector] / seconds[vector]
        out["memory_bandwidth_gbs"] = float(np.quantile(rate, quantile)) / 1e9
    return out


def sustained_specs(table: pd.DataFrame) -> dict[str, DeviceSpec]:
    """Each GPU's catalog spec with its peak fp32 FLOP/s and bandwidth replaced by the sustained rates
    of its training-shape session (`sustained_rates`)."""
    train = table[table["split"] == "train"]
    return {
        gpu: replace(Devices.get(gpu), **sustained_rates(part))
        for gpu, part in train.groupby(train["device"].astype(str))
    }


def sustained_logo(
    table: pd.DataFrame,
    n_estimators: int = 300,
    progress: bool = False,
    specs: Mapping[str, DeviceSpec] | None = None,
) -> pd.DataFrame:
    """Leave-one-GPU-out with sustained rates in place of datasheet peaks, for the held-out GPU and the
    training GPUs alike (`sustained_specs`: each from its training-shape session), beside the same
    protocol on datasheet peaks; scored on the test shapes (another session, so the rates are not read
    off the rows scored; `specs`: those sustained specs, when the caller has them already). Returns
    per op group the rows and both MAPEs (pooled over GPUs)."""
    parts = []
    sustained = specs if specs is not None else sustained_specs(table)
    for column, chosen in (("datasheet", None), ("sustained", sustained)):
        for gpu, model, held in _held_out(table, n_estimators, progress, chosen):
            test = held[held["split"] == "test"]
            truth = test["latency_ms"].to_numpy()
            ape = np.abs(model.predict(test, chosen) - truth) / truth * 100
            parts.append(pd.DataFrame({"column": column, "gpu": gpu, "group": op_group(test), "ape": ape}))
    scored = pd.concat(parts, ignore_index=True)
    out = scored.pivot_table(index="group", columns="column", values="ape", aggfunc="mean")
    out.insert(0, "rows", scored[scored["column"] == "sustained"].groupby("group").size())
    return out[["rows", "datasheet", "sustained"]].reset_index().rename_axis(columns=None)


def op_group(frame: pd.DataFrame) -> pd.Series:
    """bmm and linear apart (NeuSight reports them apart), other families as they are."""
    return np.where(frame["family"] == "gemm", "gemm_" + frame["op"], frame["family"])


def summarize_ops(scored: pd.DataFrame) -> pd.DataFrame:
    """MAPE (%) per split and op group: roofline, datasheet-only model, calibrated model."""
    frame = scored.copy()
    frame["group"] = op_group(frame)
    if "calibration_row" in frame:
        frame = frame[~frame["calibration_row"].astype(bool)]
    cols = {"roofline": "roofline_ms", "chronos": "pred_ms", "chronos_calibrated": "pred_calibrated_ms"}
    rows = []
    for (split, group), part in frame.groupby(["split", "group"]):
        rec = {"split": split, "group": group, "n": len(part)}
        for name, col in cols.items():
            if col in part:
                rec[name] = float(np.mean(np.abs(part[col] - part["latency_ms"]) / part["latency_ms"]) * 100)
        rec["neusight_published_ood"] = NEUSIGHT_OOD.get(group, np.nan)
        rows.append(rec)
    return pd.DataFrame(rows)


def per_gpu(scored: pd.DataFrame, split: str = "test") -> pd.DataFrame:
    """MAPE (%) per held-out GPU and op group for one split."""
    frame = scored[scored["split"] == split].copy()
    frame["group"] = op_group(frame)
    if "calibration_row" in frame:
        frame = frame[~frame["calibration_row"].astype(bool)]
    err = lambda col: (frame[col] - frame["latency_ms"]).abs() / frame["latency_ms"] * 100  # noqa: E731
    frame["chronos"] = err("pred_ms")
    if "pred_calibrated_ms" in frame:
        frame["chronos_calibrated"] = err("pred_calibrated_ms")
    values = [c for c in ("chronos", "chronos_calibrated") if c in frame]
    return frame.pivot_table(index=["gpu"], columns="group", values=values, aggfunc="mean").round(1)


def precision_transfer(public: pd.DataFrame, xla: pd.DataFrame, n_estimators: int = 300) -> pd.DataFrame:
    """B200 bf16 and TF32 GEMMs predicted by a model fitted without the B200 (fp32 SIMT data only).

    Also calibrated on `calibration_sample` of the B200's kernels (per dtype and op), as `chronos
    calibrate` would measure them.
    """
    model = KernelModel(n_estimators=n_estimators, families=("gemm",)).fit(
        training_rows(public[(public["split"] == "train") & (public["family"] == "gemm")])
    )
    scored = xla[["device", "dtype", "B", "M", "N", "K", "latency_ms"]].copy()
    scored["pred_ms"] = model.predict(xla)
    scored["roofline_ms"] = roofline_ms(xla)
    # XLA times the kernel alone: the model's time less the framework call it carries (its launch floor)
    floor = np.array([model.floor_of(d) for d in xla["device"].astype(str)])
    scored["pred_kernel_only_ms"] = kernel_body(scored["pred_ms"], scored["roofline_ms"], floor, "sub")
    sample = calibration_sample(xla)  # per dtype and op: corrections are keyed by dtype
    scored["calibration_row"] = xla.index.isin(sample.index)
    calibrated = model.without_calibration().calibrate(sample).predict(xla)
    scored["pred_calibrated_ms"] = calibrated
    return scored


def summarize_precision(scored: pd.DataFrame) -> pd.DataFrame:
    """MAPE (%) per dtype on the B200: roofline, chronos, chronos less its launch floor (XLA times the
    kernel alone, without the framework call the training data carry), chronos calibrated (calibration
    rows excluded)."""
    rows = []
    for dtype, part in scored.groupby("dtype"):
        err = lambda col, p=part: float(np.mean(np.abs(p[col] - p["latency_ms"]) / p["latency_ms"]) * 100)  # noqa: E731
        rest = part[~part["calibration_row"]]
        rows.append(
            {
                "gpu": part["device"].iloc[0],
                "dtype": dtype,
                "n": len(part),
                "roofline": err("roofline_ms"),
                "chronos": err("pred_ms"),
                "chronos_kernel_only": err("pred_kernel_only_ms"),
                "chronos_calibrated": float(
                    np.mean(np.abs(rest["pred_calibrated_ms"] - rest["latency_ms"]) / rest["latency_ms"])
                    * 100
                ),
            }
        )
    return pd.DataFrame(rows)
