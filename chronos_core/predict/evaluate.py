"""Run time models over split protocols and keep the per-row predictions (resumable, one CSV per pair).

`run_generalization` writes `<out_dir>/preds_<split>_<model>.csv`; with `reuse=True` it reads the
existing files instead of fitting again, so notebooks rerun in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from chronos_core.errors import ChronosError
from chronos_core.predict.hardware_aware import (
    GPU_PROXY_LOADER_FEATURES,
    LOADER_FEATURES,
    HardwareAwareTimeModel,
)
from chronos_core.predict.metrics import ape
from chronos_core.predict.physics import PHYSICS_FEATURES, ROOFLINE_FEATURES
from chronos_core.predict.splits import get_split
from chronos_core.predict.time_models import cross_predict, make_time_model, summarize

log = logging.getLogger(__name__)

# Model name -> constructor kwargs used in the evaluation (smaller boosters keep 70+ folds affordable).
EVAL_MODELS: dict[str, dict] = {
    "hardware_aware": {"n_estimators": 200},
    "chronos_xgb": {"n_estimators": 300},
    "ann_logspace": {},
}


def run_generalization(
    table: pd.DataFrame,
    splits: Sequence[str],
    models: Sequence[str],
    out_dir: Path,
    reuse: bool = True,
    skip: Sequence[tuple[str, str]] = (),
) -> pd.DataFrame:
    """Per-row predictions of every (split, model) pair, concatenated; `skip` lists pairs not to run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = []
    for split in splits:
        for name in models:
            if (split, name) in skip:
                continue
            path = out_dir / f"preds_{split}_{name}.csv.gz"
            if path.exists() and reuse:
                frame = pd.read_csv(path)
            else:
                kwargs = EVAL_MODELS.get(name, {})
                log.info("running %s on %s", name, split)
                frame = cross_predict(
                    lambda name=name, kwargs=kwargs: make_time_model(name, **kwargs),
                    table,
                    get_split(split)(table),
                    split,
                )
                frame.insert(0, "time_model", name)
                frame.to_csv(path, index=False)
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def summary_tables(preds: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Metrics per (time model, split[, by]) and target, long format."""
    keys = ["time_model", "split"] + ([by] if by else [])
    parts = []
    for key, part in preds.groupby(["time_model", "split"]):
        table = summarize(part, by=by)
        table.insert(0, "split", key[1])
        table.insert(0, "time_model", key[0])
        parts.append(table)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return out.sort_values(["target", *keys]).reset_index(drop=True) if len(out) else out


def architecture_of(device: str) -> str:
    """Architecture generation of a catalog GPU ('' when unknown)."""
    from chronos_core.catalog.devices import Devices

    name = Devices.resolve(str(device))
    return Devices.get(name).architecture if name else ""


def gpu_target_table(preds: pd.DataFrame, target_mape: float = 10.0) -> pd.DataFrame:
    """Leave-one-GPU-out compute-time errors per (time model, GPU) with the target check.

    `represented`: another GPU of the same architecture generation is in training. The target
    (compute MAPE < `target_mape`) applies to those GPUs only.
    """
    part = preds[preds["split"] == "unseen_gpu"]
    table = summarize(part.assign(_k=part["time_model"] + "|" + part["device"]), by="_k")
    table = table[table["target"] == "compute_ms"].copy()
    table[["time_model", "device"]] = table.pop("_k").str.split("|", expand=True)
    devices = sorted(preds["device"].astype(str).unique())
    arch = {d: architecture_of(d) for d in devices}
    table["architecture"] = table["device"].map(arch)
    table["represented"] = table["device"].map(lambda d: any(arch[o] == arch[d] and o != d for o in devices))
    table["target_met"] = table["represented"] & (table["mape"] < target_mape)
    cols = [
        "time_model",
        "device",
        "architecture",
        "represented",
        "n",
        "mape",
        "median_ape",
        "p90_ape",
        "target_met",
    ]
    return table[cols].sort_values(["time_model", "device"]).reset_index(drop=True)


def worst_rows(preds: pd.DataFrame, split: str, time_model: str, n: int = 10) -> pd.DataFrame:
    """The test rows with the largest compute-time APE for one split and model."""
    part = preds[(preds["split"] == split) & (preds["time_model"] == time_model)].copy()
    part["compute_ape"] = 100 * (part["pred_compute_ms"] - part["compute_ms"]).abs() / part["compute_ms"]
    cols = [c for c in ("fold", "device", "model", "dataset", "batch_size", "amp", "optimizer") if c in part]
    cols += ["compute_ms", "pred_compute_ms", "compute_ape"]
    return part.nlargest(n, "compute_ape")[cols].reset_index(drop=True)


def _best_constant_ape(values: np.ndarray) -> np.ndarray:
    """APE (%) of the single value with the least mean APE over `values` (a 1/x-weighted median)."""
    order = np.argsort(values)
    cum = np.cumsum(1.0 / values[order])
    best = values[order][np.searchsorted(cum, cum[-1] / 2)]
    return 100 * np.abs(best - values) / values


def repeat_noise_floor(table: pd.DataFrame) -> pd.DataFrame:
    """Per device, two floors set by the repeats (same config, different learning rate) themselves.

    `mape`/`median_ape`: predicting each row's compute time by the mean of its other repeats.
    `best_constant_mape`: the least MAPE any model that gives one time per configuration can reach
    (the MAPE-optimal constant of each configuration's repeats, chosen knowing them: a hard floor).
    """
    from chronos_core.predict.splits import config_groups

    groups = config_groups(table)
    g = table.groupby(groups)["compute_ms"]
    n = g.transform("size")
    other_mean = (g.transform("sum") - table["compute_ms"]) / (n - 1)
    ape = 100 * (other_mean - table["compute_ms"]).abs() / table["compute_ms"]
    best = g.transform(lambda times: _best_constant_ape(times.to_numpy(dtype=float)))
    frame = pd.DataFrame({"device": table["device"], "ape": ape, "best": best})[n > 1]
    return (
        frame.groupby("device")
        .agg(mape=("ape", "mean"), median_ape=("ape", "median"), best_constant_mape=("best", "mean"))
        .reset_index()
    )


def transfer_oracle(table: pd.DataFrame) -> pd.DataFrame:
    """How well the best *other* GPU predicts each GPU when the scale is fitted on the GPU itself.

    For a held-out GPU g and each reference GPU r, predict log compute time on g as the time of the
    same configuration on r plus a constant fitted on g's own rows: one constant (global scale) or
    one per model (per-model scale). These constants use the test GPU's measurements, so this is an
    oracle no model without measurements on g can beat by much: a bound on what the table's
    cross-GPU relationships support. Returns one row per held-out GPU with its best reference.
    """
    from chronos_core.predict.splits import config_groups

    frame = pd.DataFrame({
        "cfg": config_groups(table, with_device=False), "device": table["device"].astype(str),
        "model": table["model"].astype(str), "ly": np.log(table["compute_ms"].astype(float)),
    })  # fmt: skip
    wide = frame.groupby(["cfg", "device"])["ly"].mean().unstack()
    model_of = frame.groupby("cfg")["model"].first()
    rows = []
    for gpu in wide.columns:
        best = None
        for ref in wide.columns.drop(gpu):
            diff = (wide[gpu] - wide[ref]).dropna()
            if diff.empty:
                continue
            global_ape = 100 * (np.exp(diff - diff.median()) - 1).abs().mean()
            per_model = diff.groupby(model_of[diff.index].to_numpy()).transform("median")
            model_ape = 100 * (np.exp(diff - per_model) - 1).abs().mean()
            if best is None or global_ape < best["oracle_global_scale_mape"]:
                best = {
                    "device": gpu,
                    "best_reference": ref,
                    "configs": len(diff),
                    "oracle_global_scale_mape": global_ape,
                    "oracle_per_model_scale_mape": model_ape,
                }
        if best is not None:
            rows.append(best)
    return pd.DataFrame(rows)


# Model settings the nested selections choose between. Compute time: the roofline feature set, then
# the L2 terms added. Batch time: the loader model reading GPU specs as a stand-in for the host, or
# the host's provider instead.
FEATURE_CANDIDATES: dict[str, dict[str, Any]] = {
    "roofline": {"features": ROOFLINE_FEATURES},
    "roofline+l2_size": {"features": (*ROOFLINE_FEATURES, "log_l2_mb")},
    "roofline+l2_size+act_ws": {"features": (*ROOFLINE_FEATURES, "log_l2_mb", "log_act_ws_over_l2")},
    "roofline+l2": {"features": PHYSICS_FEATURES},
}
LOADER_CANDIDATES: dict[str, dict[str, Any]] = {
    "loader_gpu_specs": {"loader_features": GPU_PROXY_LOADER_FEATURES, "seen_loader_features": None},
    "loader_host_provider": {"loader_features": LOADER_FEATURES, "seen_loader_features": None},
}
_PRED_OF = {"compute_ms": "pred_compute_ms", "batch_time_ms": "pred_batch_time_ms"}


def _heldout_mape(
    table: pd.DataFrame,
    train: np.ndarray,
    test: np.ndarray,
    settings: Mapping[str, Any],
    target: str,
    n_estimators: int,
) -> float:
    """MAPE of `target` on `test` rows of the hardware-aware model with `settings`, fitted on `train`."""
    model = HardwareAwareTimeModel(n_estimators=n_estimators, calibration_folds=0, **settings)
    pred = model.fit(table[train]).predict(table[test])[_PRED_OF[target]].to_numpy()
    return float(np.nanmean(ape(table[target].to_numpy(dtype=float)[test], pred)))


def nested_feature_selection(
    table: pd.DataFrame,
    candidates: Mapping[str, Mapping[str, Any]] | None = None,
    target: str = "compute_ms",
    n_estimators: int = 200,
) -> pd.DataFrame:
    """Leave-one-GPU-out where the model settings are chosen inside each fold, never on the test GPU.

    `candidates` maps a name to HardwareAwareTimeModel keyword arguments (default: the compute
    feature sets, FEATURE_CANDIDATES); `target` is compute_ms or batch_time_ms. For each held-out
    GPU, every candidate is scored by an inner leave-one-GPU-out over the remaining GPUs only; the
    winner is refitted on all of them and scored on the held-out GPU. The mean of `chosen_mape` is
    an unbiased estimate of the chosen model's unseen-GPU error; `outer_<name>` columns give every
    candidate's held-out error for reference (not used to choose).
    """
    if target not in _PRED_OF:
        raise ChronosError(f"Unknown target {target!r}. Known: {', '.join(_PRED_OF)}")
    candidates = dict(candidates or FEATURE_CANDIDATES)
    devices = table["device"].astype(str).to_numpy()
    gpus = sorted(set(devices))
    if len(gpus) < 3:
        raise ChronosError(f"nested_feature_selection needs >= 3 GPUs, got {len(gpus)}: {', '.join(gpus)}")
    rows = []
    for gpu in tqdm(gpus, desc="nested leave-one-GPU-out", leave=False):
        row: dict[str, object] = {"device": gpu}
        train = devices != gpu
        for name, settings in candidates.items():
            inner = [
                _heldout_mape(
                    table, train & (devices != other), devices == other, settings, target, n_estimators
                )
                for other in gpus
                if other != gpu
            ]
            row[f"inner_{name}"] = float(np.mean(inner))
            row[f"outer_{name}"] = _heldout_mape(table, train, devices == gpu, settings, target, n_estimators)
        chosen = min(candidates, key=lambda n: row[f"inner_{n}"])
        row["chosen"] = chosen
        row["chosen_mape"] = row[f"outer_{chosen}"]
        rows.append(row)
    return pd.DataFrame(rows)


def own_model_folds(table: pd.DataFrame, test_mask: pd.Series | list[bool]):
    """Leave-one-model-out over the rows in `test_mask` (our own measurements), training on every other row.

    Models are matched by catalog name, so a CHRONOS 'resnet50' row never trains a fold that tests
    our 'ResNet50'.
    """
    from chronos_core.catalog.models import canonical_model
    from chronos_core.predict.splits import Fold

    mask = np.asarray(test_mask, dtype=bool)
    names = table["model"].map(canonical_model).to_numpy()
    for name in sorted(set(names[mask])):
        test = mask & (names == name)
        yield Fold(np.flatnonzero(names != name), np.flatnonzero(test), name)


def run_own_unseen_model(
    public: pd.DataFrame, own: pd.DataFrame, models: Sequence[str], out_dir: Path, reuse: bool = True
) -> pd.DataFrame:
    """Our own rows scored leave-one-model-out, models trained on public rows plus the other own rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.concat([public, own], ignore_index=True)
    mask = pd.Series([False] * len(public) + [True] * len(own))
    frames = []
    for name in models:
        path = out_dir / f"preds_own_unseen_model_{name}.csv.gz"
        if path.exists() and reuse:
            frames.append(pd.read_csv(path))
            continue
        kwargs = EVAL_MODELS.get(name, {})
        frame = cross_predict(
            lambda name=name, kwargs=kwargs: make_time_model(name, **kwargs),
            table,
            own_model_folds(table, mask),
            "own_unseen_model",
        )
        frame.insert(0, "time_model", name)
        frame.to_csv(path, index=False)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def a100_protocols(
    a100: pd.DataFrame, models: Sequence[str], n_folds: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Our models on the A100 project's table: K-fold CV and their five unseen configs held out (s/epoch)."""
    from chronos_core.predict.metrics import regression_metrics
    from chronos_core.predict.splits import a100_unseen_split, unseen_config

    steps = a100["steps_per_epoch"].astype(float).to_numpy()
    measured = a100["batch_time_ms"].astype(float).to_numpy() * steps / 1000.0
    rows = []
    for name in models:
        kwargs = EVAL_MODELS.get(name, {})
        for protocol, folds in (
            (f"{n_folds}-fold CV", unseen_config(a100, n_folds=n_folds, seed=seed)),
            ("unseen 5, held out (no leak)", a100_unseen_split(a100)),
        ):
            preds = cross_predict(
                lambda name=name, kwargs=kwargs: make_time_model(name, **kwargs), a100, folds
            )
            row = preds["row"].to_numpy()
            m = regression_metrics(
                measured[row], preds["pred_batch_time_ms"].to_numpy() * steps[row] / 1000.0
            )
            rows.append(
                {
                    "time_model": name,
                    "protocol": protocol,
                    **{k: m[k] for k in ("n", "mae", "rmse", "r2", "mape")},
                }
            )
    return pd.DataFrame(rows)
