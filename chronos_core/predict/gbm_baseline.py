"""CHRONOS-style baseline: XGBoost on config + analytic features + GPU spec columns, raw-ms targets.

As the CHRONOS epoch-time predictor does: one gradient-boosted regressor over the table's numeric
columns (configuration, FLOPs/bytes features, TechPowerUp-style GPU specs) and one-hot categories.
Leaky columns (anything derived from the measured time) are never read. Compute time and loader
wait are fitted separately and summed; no intervals (their model gives none).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xgboost as xgb

from chronos_core.data.schema import (
    DEVICE_COLUMNS,
    FEATURE_COLUMNS,
    LEAKY_COLUMNS,
    TARGET_COLUMNS,
)
from chronos_core.errors import ChronosError

NUMERIC = [
    "batch_size",
    "precision",
    "amp",
    "dataset_size",
    "num_classes",
    "seq_len",
    "depth",
    *FEATURE_COLUMNS,
    *[c for c in DEVICE_COLUMNS if c.startswith("gpu_") and c not in ("gpu_name", "gpu_price_per_hr")],
]
CATEGORICAL = ["family", "dataset", "optimizer"]


def _design(table: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    cols = {}
    for c in NUMERIC:
        if c in LEAKY_COLUMNS or c in TARGET_COLUMNS:
            continue
        series = table[c] if c in table else pd.Series(np.nan, index=table.index)
        cols[c] = pd.to_numeric(series.astype("object").replace({True: 1, False: 0}), errors="coerce")
    for c, values in categories.items():
        series = table[c].astype(str) if c in table else pd.Series("", index=table.index)
        for v in values:
            cols[f"{c}={v}"] = (series == v).astype(float)
    return pd.DataFrame(cols, index=table.index).astype(float)


class ChronosXGBBaseline:
    """XGBoost per target (compute_ms, loader_wait_ms) on raw columns, CHRONOS style."""

    def __init__(
        self, n_estimators: int = 400, max_depth: int = 6, learning_rate: float = 0.05, random_state: int = 0,
        n_jobs: int = 1,
    ):  # fmt: skip
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, table: pd.DataFrame) -> ChronosXGBBaseline:
        """Fit one regressor per measured target."""
        self.categories_ = {
            c: sorted(table[c].dropna().astype(str).unique()) for c in CATEGORICAL if c in table
        }
        X = _design(table, self.categories_)
        self.models_: dict[str, xgb.XGBRegressor] = {}
        for target in ("compute_ms", "loader_wait_ms"):
            if target not in table:
                continue
            y = pd.to_numeric(table[target], errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(y)
            if ok.sum() < 5:
                continue
            model = xgb.XGBRegressor(
                n_estimators=self.n_estimators,
                max_depth=self.max_depth,
                learning_rate=self.learning_rate,
                subsample=0.8,
                colsample_bytree=0.8,
                random_state=self.random_state,
                n_jobs=self.n_jobs,
                tree_method="hist",
            )
            self.models_[target] = model.fit(X[ok], y[ok])
        if "compute_ms" not in self.models_:
            raise ChronosError("ChronosXGBBaseline.fit needs >= 5 rows with compute_ms")
        return self

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Predicted compute, loader and batch time (ms); interval columns are NaN."""
        if not hasattr(self, "models_"):
            raise ChronosError("ChronosXGBBaseline is not fitted; call fit(table) first")
        X = _design(table, self.categories_)
        compute = np.maximum(self.models_["compute_ms"].predict(X), 1e-3)
        loader = (
            np.maximum(self.models_["loader_wait_ms"].predict(X), 0.0)
            if "loader_wait_ms" in self.models_
            else np.zeros(len(table))
        )
        nan = np.full(len(table), np.nan)
        return pd.DataFrame(
            {
                "pred_batch_time_ms": compute + loader,
                "pred_compute_ms": compute,
                "pred_loader_ms": loader,
                "pred_batch_time_ms_lo": nan,
                "pred_batch_time_ms_hi": nan,
            },
            index=table.index,
        )
