"""Raw measurements -> one row per configuration: means, spreads, steps per epoch, throughput.

Three kinds of input:

* the A100 project's runs.csv (one row per training run): `aggregate_a100_runs` reproduces its
  runs_agg.csv bit for bit (it used Python's `statistics.mean`/`stdev`; 0 for single runs);
* our sweep tables (one row per configuration, repeats summarized in place, raw repeat means kept
  as JSON): `load_measured`, `expand_repeats`, `add_features`;
* canonical time tables (CHRONOS and ours): `derive_throughput` adds steps_per_epoch, epoch time
  and samples per second.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from chronos_core.errors import ChronosError

REPO_ROOT = Path(__file__).resolve().parents[2]
META_DIR = REPO_ROOT / "meta_datasets"

A100_KEYS = ["depth", "base_filters", "batch_size", "params"]
A100_TRAIN_N = 50_000
# runs.csv has one run more than runs_agg.csv: a repeat of (3, 32, 320) logged at 2025-12-19T01:05:38,
# after the aggregate was written. Their runs_agg.csv is the aggregate of the runs up to this time.
A100_AGG_CUTOFF_UTC = "2025-12-19T00:48:06"


def _mean(values: Sequence[float]) -> float:
    return float(statistics.mean(values))


def _stdev(values: Sequence[float]) -> float:
    return float(statistics.stdev(values)) if len(values) > 1 else 0.0


def aggregate_a100_runs(
    runs: pd.DataFrame, train_n: int = A100_TRAIN_N, until_utc: str | None = None
) -> pd.DataFrame:
    """The A100 project's runs.csv -> its runs_agg.csv (sample std, 0 for one run; sorted by config).

    `until_utc` keeps only runs logged at or before that ISO time (their file predates the last run).
    """
    missing = [c for c in [*A100_KEYS, "avg_time_sec", "images_per_sec", "test_acc"] if c not in runs]
    if missing:
        raise ChronosError(f"Not an A100 runs table: missing {', '.join(missing)}")
    if until_utc is not None:
        runs = runs[runs["timestamp_utc"].astype(str) <= until_utc]
    rows = []
    for key, group in runs.groupby(A100_KEYS, sort=True):
        times = group["avg_time_sec"].tolist()
        thr = group["images_per_sec"].tolist()
        acc = group["test_acc"].tolist()
        rows.append(
            {
                **dict(zip(A100_KEYS, key, strict=True)),
                "n": len(group),
                "steps_per_epoch": math.ceil(train_n / key[2]),
                "avg_time_mean": _mean(times),
                "avg_time_std": _stdev(times),
                "thr_mean": _mean(thr),
                "thr_std": _stdev(thr),
                "acc_mean": _mean(acc),
                "acc_std": _stdev(acc),
            }
        )
    return pd.DataFrame(rows)


def aggregate_repeats(frame: pd.DataFrame, keys: list[str], targets: list[str]) -> pd.DataFrame:
    """Generic: one row per `keys`, with n and mean/std/cv of each target (sample std, 0 for one row)."""
    missing = [c for c in keys + targets if c not in frame]
    if missing:
        raise ChronosError(f"Cannot aggregate: missing column(s) {', '.join(missing)}")
    rows = []
    for key, group in frame.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = {**dict(zip(keys, key, strict=True)), "n": len(group)}
        for target in targets:
            values = group[target].dropna().astype(float).tolist()
            mean = _mean(values) if values else math.nan
            std = _stdev(values) if values else math.nan
            row[f"{target}_mean"] = mean
            row[f"{target}_std"] = std
            row[f"{target}_cv"] = std / mean if values and mean else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def derive_throughput(frame: pd.DataFrame, time_column: str = "batch_time_ms") -> pd.DataFrame:
    """Add steps_per_epoch (ceil(dataset_size / batch_size)), epoch_time_s and samples_per_sec."""
    missing = [c for c in ("dataset_size", "batch_size", time_column) if c not in frame]
    if missing:
        raise ChronosError(f"Cannot derive throughput: missing column(s) {', '.join(missing)}")
    out = frame.copy()
    steps = np.ceil(out["dataset_size"].astype(float) / out["batch_size"].astype(float))
    out["steps_per_epoch"] = (
        out["steps_per_epoch"].astype(float).fillna(steps) if "steps_per_epoch" in out else steps
    )
    t = out[time_column].astype(float)
    out["epoch_time_s"] = out["steps_per_epoch"].astype(float) * t / 1000.0
    out["samples_per_sec"] = out["batch_size"].astype(float) * 1000.0 / t
    return out


# ------------------------------------------------------------------------------------------ our tables


def measured_dirs() -> list[Path]:
    """Device folders under meta_datasets/ that hold measured tables."""
    if not META_DIR.is_dir():
        return []
    return sorted(p for p in META_DIR.iterdir() if p.is_dir() and any(p.glob("*.csv")))


def measured_folder(device: str = "cpu", must_exist: bool = True) -> str:
    """The meta_datasets/ folder to read for `device`: this machine's, or the committed one.

    This machine's folder (`device_slug(device)`) when it holds a models table or `must_exist` is
    False (a sweep is about to write there); else, reading committed results on another machine,
    the first folder that holds one (this machine's name when none does).
    """
    from chronos_core.profiling.environment import device_slug

    own = device_slug(device)
    if not must_exist or (META_DIR / own / "models.csv").is_file():
        return own
    found = [d.name for d in measured_dirs() if (d / "models.csv").is_file()]
    return found[0] if found else own


def load_measured(table: str = "models", device: str | None = None, ok_only: bool = True) -> pd.DataFrame:
    """Our measured table(s) (`models` or `layers`) for one device folder or all, last row per config."""
    from chronos_core.profiling.sweep import read_sweep

    dirs = [META_DIR / device] if device else measured_dirs()
    frames = []
    for folder in dirs:
        path = folder / f"{table}.csv"
        if path.is_file():
            frame = read_sweep(path, ok_only=ok_only)
            frame["device_folder"] = folder.name
            frames.append(frame)
    if not frames:
        where = str(META_DIR / device) if device else str(META_DIR)
        raise ChronosError(f"No measured {table}.csv under {where}; run `chronos sweep` first")
    return pd.concat(frames, ignore_index=True)


def expand_repeats(frame: pd.DataFrame, column: str = "compute_ms") -> pd.DataFrame:
    """One row per (configuration, repeat) from the `<column>_repeats_json` lists (raw repeat means)."""
    source = f"{column}_repeats_json"
    if source not in frame:
        raise ChronosError(f"No {source} column: not a measured sweep table")
    rows = []
    for _, rec in frame.iterrows():
        for i, value in enumerate(json.loads(rec[source])):
            rows.append({"config_id": rec["config_id"], "repeat": i, column: float(value)})
    return pd.DataFrame(rows)


def median_cv(frame: pd.DataFrame, column: str) -> float:
    """Median over configurations of the CV across repeats of `column`."""
    cv = frame[f"{column}_cv"].astype(float).dropna()
    return float(cv.median()) if len(cv) else math.nan


def _features_for(row: pd.Series) -> dict:
    from chronos_core.features import compute_features
    from chronos_core.profiling.timers import dataset_spec

    kwargs = (
        json.loads(row["model_kwargs"])
        if isinstance(row.get("model_kwargs"), str) and row["model_kwargs"]
        else {}
    )
    shape = None
    if isinstance(row.get("input_shape"), str) and row["input_shape"]:
        shape = tuple(int(d) for d in row["input_shape"].strip("()").split(",") if d.strip())
    spec = dataset_spec(row["dataset"], shape)
    label = "32" if not bool(row.get("amp")) else ("bf16" if row.get("amp_dtype") == "bfloat16" else "16")
    try:
        feats = compute_features(
            row["model"], spec, int(row["batch_size"]), label, row["optimizer"], **kwargs
        )
    except TypeError:  # compute_features without model overrides
        feats = compute_features(row["model"], spec, int(row["batch_size"]), label, row["optimizer"])
    values = feats.as_dict() if hasattr(feats, "as_dict") else dict(feats)
    return {k: v for k, v in values.items() if not isinstance(v, dict | list)}


def add_features(frame: pd.DataFrame, overwrite: bool = False) -> pd.DataFrame:
    """Fill computational features (FLOPs, bytes, intensity) for measured rows from their configuration.

    Features are analytic (meta-device tracing), so they can be added after the measurement.
    """
    out = frame.copy()
    todo = (
        out.index
        if overwrite or "flops_train_per_batch" not in out
        else out.index[out["flops_train_per_batch"].isna()]
    )
    cache: dict[tuple, dict] = {}
    for idx in todo:
        row = out.loc[idx]
        key = tuple(
            str(row.get(k))
            for k in (
                "model",
                "dataset",
                "input_shape",
                "batch_size",
                "amp",
                "amp_dtype",
                "optimizer",
                "model_kwargs",
            )
        )
        if key not in cache:
            cache[key] = _features_for(row)
        for name, value in cache[key].items():
            if name not in out:
                out[name] = np.nan if isinstance(value, int | float) else None
            out.loc[idx, name] = value
    return out
