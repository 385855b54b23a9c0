"""PreNeT-style layer-wise model: one regressor per layer type, summed over a model's layer inventory.

Trained on layer microbenchmark tables (`meta_datasets/<device>/layers.csv`: one row per random
layer configuration with its FLOPs, parameters, element counts and training-step time `train_ms`).
As in PreNeT, convolutions and linear layers get a random forest, the other types an MLP; all on
log features, log target. A model's iteration time is the sum of its layers' predicted times
(layers of types never benchmarked, such as pooling and activations, count as zero, as in PreNeT).
It predicts the device the layers were measured on; GPU spec columns enter as features when the
table holds several devices.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from chronos_core.errors import ChronosError

# Inventory layer_type -> microbenchmark layer_type.
INVENTORY_TO_BENCH = {
    "conv": "conv2d",
    "linear": "linear",
    "attention": "attention",
    "norm": "layernorm",
    "embedding": "embedding",
    "rnn": "lstm",
}
FOREST_TYPES = ("conv2d", "linear")
LAYER_FEATURES = ("log_flops_fwd", "log_params", "log_output_elems", "log_batch", "log_peak_fp32")


def layer_design(frame: pd.DataFrame) -> pd.DataFrame:
    """Log features shared by benchmark rows and inventory rows."""

    def col(name: str, default: float = np.nan) -> pd.Series:
        if name in frame:
            return pd.to_numeric(frame[name], errors="coerce").astype(float)
        return pd.Series(default, index=frame.index)

    params = col("param_count").fillna(col("params"))
    return pd.DataFrame(
        {
            "log_flops_fwd": np.log10(col("flops_fwd").fillna(0) + 1),
            "log_params": np.log10(params.fillna(0) + 1),
            "log_output_elems": np.log10(col("output_elems").fillna(0) + 1),
            "log_batch": np.log2(col("batch_size").fillna(1)),
            "log_peak_fp32": np.log10(col("peak_fp32_tflops").fillna(1.0)),
        },
        index=frame.index,
    )


def layer_tables(devices: list[str] | None = None, root: Path | None = None) -> pd.DataFrame:
    """Layer microbenchmark rows from `meta_datasets/<device>/layers.csv` (all devices when None)."""
    from chronos_core.data.registry import REPO_ROOT

    base = root or REPO_ROOT / "meta_datasets"
    paths = sorted(base.glob("*/layers.csv"))
    if devices is not None:
        paths = [p for p in paths if p.parent.name in devices]
    if not paths:
        raise ChronosError(f"No layer table under {base} for devices {devices}")
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


@functools.lru_cache(maxsize=128)
def model_inventory(model: str, dataset: str, batch_size: int, kwargs_json: str = "{}") -> pd.DataFrame:
    """Layer inventory of a catalog model at one batch size (meta device; cached).

    `kwargs_json`: the builder options as JSON (e.g. '{"depth": 4}'), as in `model_kwargs` columns.
    """
    import torch

    from chronos_core.catalog.models import Models
    from chronos_core.features import layer_inventory

    spec = Models.get(model)
    kwargs = json.loads(kwargs_json) if kwargs_json else {}
    with torch.device("meta"):
        module = spec.build(dataset, **kwargs)
        example = spec.example_input(dataset, batch_size=batch_size, device="meta", **kwargs)
    inv = layer_inventory(module, example)
    inv = inv[inv["leaf"]].copy()
    inv["batch_size"] = batch_size
    return inv


class LayerwiseTimeModel:
    """Per-layer-type regressors (RF for conv/linear, MLP otherwise) summed over the inventory."""

    def __init__(self, n_estimators: int = 200, random_state: int = 0, target: str = "train_ms"):
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.target = target

    def fit(self, layers: pd.DataFrame) -> LayerwiseTimeModel:
        """Fit on a layer microbenchmark table (columns layer_type, flops_fwd, param_count, ..., train_ms).

        Given a model-level time table instead (no `layer_type` column), the layer tables measured on
        the same devices (`meta_datasets/<device>/layers.csv`) are used: the model never sees the
        model-level rows, so any split of them is a fair test.
        """
        if "layer_type" not in layers and "device" in layers:
            layers = layer_tables(sorted(layers["device"].astype(str).unique()))
        for c in ("layer_type", self.target):
            if c not in layers:
                raise ChronosError(
                    f"Layer table needs column {c!r}; it has {', '.join(map(str, layers.columns[:15]))}"
                )
        if "status" in layers:
            layers = layers[layers["status"].astype(str) == "ok"]
        self.regressors_: dict = {}
        for kind, part in layers.groupby("layer_type"):
            y = pd.to_numeric(part[self.target], errors="coerce").to_numpy(dtype=float)
            ok = np.isfinite(y) & (y > 0)
            if ok.sum() < 5:
                continue
            X = layer_design(part).to_numpy()[ok]
            if kind in FOREST_TYPES:
                reg = RandomForestRegressor(
                    n_estimators=self.n_estimators,
                    min_samples_leaf=2,
                    random_state=self.random_state,
                    n_jobs=1,
                )
            else:
                reg = make_pipeline(
                    StandardScaler(),
                    MLPRegressor(
                        hidden_layer_sizes=(64, 64),
                        max_iter=2000,
                        random_state=self.random_state,
                        early_stopping=False,
                    ),
                )
            self.regressors_[str(kind)] = reg.fit(X, np.log(y[ok]))
        if not self.regressors_:
            raise ChronosError("No layer type has >= 5 usable rows")
        return self

    def predict_layers(self, inventory: pd.DataFrame) -> np.ndarray:
        """Predicted time (ms) of each inventory row (0 for types without a regressor)."""
        out = np.zeros(len(inventory))
        bench = inventory["layer_type"].map(INVENTORY_TO_BENCH)
        X = layer_design(inventory).to_numpy()
        for kind, reg in self.regressors_.items():
            mask = (bench == kind).to_numpy()
            if mask.any():
                out[mask] = np.exp(reg.predict(X[mask]))
        return out

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Compute time per iteration of each row's catalog model (`model`, `dataset`, `batch_size`)."""
        if not hasattr(self, "regressors_"):
            raise ChronosError("LayerwiseTimeModel is not fitted; call fit(layers) first")
        compute = np.full(len(table), np.nan)
        for i, (_, row) in enumerate(table.iterrows()):
            try:
                kwargs = row.get("model_kwargs")
                kwargs = kwargs if isinstance(kwargs, str) and kwargs.strip().startswith("{") else "{}"
                inv = model_inventory(str(row["model"]), str(row["dataset"]), int(row["batch_size"]), kwargs)
            except (ChronosError, KeyError, ValueError, TypeError):
                continue
            inv = inv.assign(peak_fp32_tflops=row.get("gpu_fp32_tflops", np.nan))
            compute[i] = float(self.predict_layers(inv).sum())
        nan = np.full(len(table), np.nan)
        return pd.DataFrame(
            {
                "pred_batch_time_ms": compute,
                "pred_compute_ms": compute,
                "pred_loader_ms": nan,
                "pred_batch_time_ms_lo": nan,
                "pred_batch_time_ms_hi": nan,
            },
            index=table.index,
        )


def layer_holdout_metrics(
    layers: pd.DataFrame, test_frac: float = 0.2, seed: int = 0, **params
) -> pd.DataFrame:
    """Per layer type: errors of the per-type regressors on a random held-out fraction of configurations."""
    from chronos_core.predict.metrics import regression_metrics

    if "status" in layers:
        layers = layers[layers["status"].astype(str) == "ok"]
    layers = layers.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    test = rng.random(len(layers)) < test_frac
    model = LayerwiseTimeModel(**params).fit(layers[~test])
    rows = []
    for kind, part in layers[test].groupby("layer_type"):
        reg = model.regressors_.get(str(kind))
        if reg is None:
            continue
        pred = np.exp(reg.predict(layer_design(part).to_numpy()))
        rows.append({"layer_type": kind, **regression_metrics(part[model.target], pred)})
    return pd.DataFrame(rows)
