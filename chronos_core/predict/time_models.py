"""One interface for every time model, cross-validated evaluation, and the cached default predictor.

    model = make_time_model("hardware_aware").fit(table)
    model.predict(table)  # pred_batch_time_ms, pred_compute_ms, pred_loader_ms, *_lo, *_hi

`cross_predict` runs a model over the folds of a split (`splits.py`) and returns one row per test
row with truth and prediction; `summarize` turns that into MAPE / median / p90 APE / coverage
tables. `default_model()` is the best model fitted on all data the project has, cached on disk
under ~/.cache/chronos/models, keyed by a hash of the training data and the code version.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from chronos_core.errors import ChronosError, unknown_choice
from chronos_core.pickle_cache import load_or_build
from chronos_core.predict.metrics import metrics_table
from chronos_core.predict.splits import Fold, table_hash

log = logging.getLogger(__name__)

CODE_VERSION = "time-v1"  # bump when a change to the model code must invalidate cached fits
DEFAULT_MODEL = "hardware_aware"
TARGETS = (
    ("compute_ms", "pred_compute_ms"),
    ("loader_wait_ms", "pred_loader_ms"),
    ("batch_time_ms", "pred_batch_time_ms"),
)


class TimeModel(Protocol):
    """What every time model offers (sklearn style)."""

    def fit(self, table: pd.DataFrame) -> TimeModel: ...

    def predict(self, table: pd.DataFrame) -> pd.DataFrame: ...


def _hardware_aware(**kw: Any) -> TimeModel:
    from chronos_core.predict.hardware_aware import HardwareAwareTimeModel

    return HardwareAwareTimeModel(**kw)


def _xgb(**kw: Any) -> TimeModel:
    from chronos_core.predict.gbm_baseline import ChronosXGBBaseline

    return ChronosXGBBaseline(**kw)


def _ann(**kw: Any) -> TimeModel:
    from chronos_core.predict.ann_logspace import LogSpaceANN

    return LogSpaceANN(**{"features": "chronos", "epochs": 60, "batch_size": 64, **kw})


def _layerwise(**kw: Any) -> TimeModel:
    from chronos_core.predict.layerwise import LayerwiseTimeModel

    return LayerwiseTimeModel(**kw)


TIME_MODELS: dict[str, Callable[..., TimeModel]] = {
    "hardware_aware": _hardware_aware,
    "chronos_xgb": _xgb,
    "ann_logspace": _ann,
    "layerwise": _layerwise,
}


def make_time_model(name: str, **params: Any) -> TimeModel:
    """A fresh, unfitted time model by name, hyperparameters as keyword arguments."""
    if name not in TIME_MODELS:
        raise unknown_choice("time model", name, TIME_MODELS)
    return TIME_MODELS[name](**params)


# ---------------------------------------------------------------------------------------------- evaluation


def cross_predict(
    factory: Callable[[], TimeModel], table: pd.DataFrame, folds: Iterable[Fold], split: str = ""
) -> pd.DataFrame:
    """Fit on each fold's train rows, predict its test rows; returns the test rows with predictions.

    Columns: split, fold, the identifying columns of the row, measured targets and pred_* columns.
    """
    keep = [
        c
        for c in (
            "source",
            "family",
            "model",
            "dataset",
            "batch_size",
            "precision",
            "amp",
            "optimizer",
            "device",
        )
        if c in table
    ]
    keep += [c for c, _ in TARGETS if c in table]
    out = []
    for fold in folds:
        if not len(fold.test_idx) or not len(fold.train_idx):
            continue
        model = factory().fit(table.iloc[fold.train_idx])
        test = table.iloc[fold.test_idx]
        pred = model.predict(test)
        part = test[keep].copy()
        part.insert(0, "row", fold.test_idx)
        part.insert(0, "fold", fold.name)
        part.insert(0, "split", split)
        out.append(pd.concat([part, pred], axis=1))
    if not out:
        raise ChronosError("No usable folds")
    return pd.concat(out, ignore_index=True)


def summarize(preds: pd.DataFrame, by: str | list[str] | None = None) -> pd.DataFrame:
    """Metrics per target (compute, loader, batch) overall or per group, long format."""
    rows = []
    for target, pred in TARGETS:
        if target not in preds or pred not in preds or preds[pred].isna().all():
            continue
        bounds = (
            ("pred_batch_time_ms_lo", "pred_batch_time_ms_hi") if target == "batch_time_ms" else (None, None)
        )
        table = metrics_table(preds, target, pred, by=by, lo=bounds[0], hi=bounds[1])
        table.insert(0, "target", target)
        rows.append(table)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


# ---------------------------------------------------------------------------------------------- data


def own_time_tables(root: Path | None = None) -> pd.DataFrame:
    """Our own model-level measurements (`meta_datasets/*/models.csv`), canonical columns, or empty.

    The device each table recorded in its sidecar (`models.json`, `device_spec`) is registered, so
    its rows resolve to the device they were measured on wherever they are read.
    """
    import json

    from chronos_core.catalog.devices import register_recorded_device
    from chronos_core.data.registry import REPO_ROOT

    base = root or REPO_ROOT / "meta_datasets"
    frames = []
    for path in sorted(base.glob("*/models.csv")):
        frame = pd.read_csv(path)
        if "compute_ms" not in frame:
            continue
        if "status" in frame:
            frame = frame[frame["status"].astype(str) == "ok"]
        sidecar = path.with_suffix(".json")
        if sidecar.exists():
            register_recorded_device(json.loads(sidecar.read_text(encoding="utf-8")).get("device_spec") or {})
        frame["source"] = f"own:{path.parent.name}"
        if "device" not in frame:
            frame["device"] = frame.get("gpu_name", path.parent.name)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def a100_time_rows() -> pd.DataFrame:
    """The A100 project's runs_agg.csv as canonical rows with computed features.

    Their Keras CNN is profiled through its torch twin (SimpleCNN, same parameter counts), Adam
    as in their script's default, fp32. They timed whole epochs with a tf.data pipeline that
    overlaps loading, so compute_ms is set to the measured batch time and loader_wait_ms to 0.
    """
    from chronos_core.data import registry
    from chronos_core.data.adapters import adapt_a100_agg
    from chronos_core.features import compute_features

    table = adapt_a100_agg(registry.read("a100-runs-agg"))
    rows = []
    for _, row in table.iterrows():
        feats = compute_features(
            "SimpleCNN",
            "CIFAR10",
            int(row["batch_size"]),
            "fp32",
            "Adam",
            depth=int(row["depth"]),
            base_filters=int(row["base_filters"]),
        )
        layers = sum(
            feats.get(f"count_{k}_layers", 0) for k in ("conv", "linear", "pool", "activation", "norm")
        )
        rows.append({**{k: v for k, v in feats.items() if k != "batch_size"}, "n_layers": layers})
    feats = pd.DataFrame(rows, index=table.index)
    for col in feats.columns:
        if col not in ("param_count",):
            table[col] = feats[col]
    table["optimizer"] = "Adam"
    table["conv_frac"] = feats["flops_fwd_conv_per_sample"] / feats["flops_fwd_per_sample"]
    table["compute_ms"] = table["batch_time_ms"]
    table["loader_wait_ms"] = 0.0
    return table


def training_table(include_own: bool = True, include_a100: bool = True) -> pd.DataFrame:
    """All time rows the project has with measured compute time: CHRONOS, the A100 project, our own."""
    from chronos_core.data.adapters import load_time_table

    frames = [load_time_table()]
    if include_a100:
        try:
            frames.append(a100_time_rows())
        except (ChronosError, OSError, KeyError, ValueError) as exc:
            log.warning("A100 rows left out: %s", exc)
    if include_own:
        own = own_time_tables()
        if len(own):
            frames.append(own)
    table = pd.concat(frames, ignore_index=True)
    return table[pd.to_numeric(table["compute_ms"], errors="coerce") > 0].reset_index(drop=True)


def zoo_names(models: pd.Series) -> pd.Series:
    """Model names as the zoo spells them (the CHRONOS tables write resnet50, vgg16, mixer, ...)."""
    from chronos_core.predict.step_eval import CHRONOS_MODELS

    return models.astype(str).map(lambda name: CHRONOS_MODELS.get(name, (name,))[0])


def flops_ceilings_of(table: pd.DataFrame) -> pd.Series:
    """The largest training FLOPs per sample `table` holds for each model, by zoo name."""
    flops = pd.to_numeric(table["flops_train_per_sample"], errors="coerce")
    return flops.groupby(zoo_names(table["model"])).max().dropna()


@functools.lru_cache(maxsize=1)
def flops_ceilings() -> dict[str, float]:
    """`flops_ceilings_of` the time tables: a step beyond its model's ceiling is one the whole-model
    regressor would extrapolate to (`step_eval.chronos_unseen_size`)."""
    return {str(k): float(v) for k, v in flops_ceilings_of(training_table()).items()}


# ---------------------------------------------------------------------------------------------- default model


def cache_dir() -> Path:
    """Where fitted default models live (CHRONOS_MODEL_CACHE or ~/.cache/chronos/models)."""
    return Path(os.environ.get("CHRONOS_MODEL_CACHE", Path.home() / ".cache" / "chronos" / "models"))


def _code_hash() -> str:
    here = Path(__file__).parent
    digest = hashlib.sha256(CODE_VERSION.encode())
    for name in ("hardware_aware.py", "physics.py"):
        digest.update((here / name).read_bytes())
    return digest.hexdigest()[:12]


_LOADED: dict[str, TimeModel] = {}


def default_model(
    table: pd.DataFrame | None = None, name: str = DEFAULT_MODEL, refit: bool = False
) -> TimeModel:
    """The named model fitted on `table` (default: `training_table()`), cached in memory and on disk."""
    table = training_table() if table is None else table
    key = f"{name}-{table_hash(table)}-{_code_hash()}"
    if not refit and key in _LOADED:
        return _LOADED[key]
    path = cache_dir() / f"{key}.pkl"
    if refit:
        path.unlink(missing_ok=True)
    model = load_or_build(path, lambda: make_time_model(name).fit(table))
    _LOADED[key] = model
    return model


def predict_time(rows: pd.DataFrame | dict, model: TimeModel | None = None) -> pd.DataFrame:
    """Prediction columns for canonical rows (a DataFrame or one dict) with the default model."""
    if isinstance(rows, dict):  # one configuration: keep only what the models read (fast path)
        from chronos_core.predict.physics import INPUT_COLUMNS

        extra = {"input_shape", "seq_len", "dataset_size", "model", "dataset", "host_provider"}
        wanted = INPUT_COLUMNS | extra
        rows = {k: [v] for k, v in rows.items() if k in wanted}
    frame = pd.DataFrame(rows) if isinstance(rows, dict) else rows
    model = model or default_model()
    return model.predict(frame)


def finite_or_nan(values: np.ndarray) -> np.ndarray:
    """Replace inf by NaN (helper for writing tables)."""
    return np.where(np.isfinite(values), values, np.nan)
