"""Time models and their evaluation: one `fit(table)` / `predict(table)` interface on canonical rows.

    from chronos_core.predict import make_time_model
    model = make_time_model("hardware_aware").fit(table)   # or chronos_xgb, ann_logspace, layerwise
    model.predict(rows)  # pred_batch_time_ms, pred_compute_ms, pred_loader_ms, *_lo, *_hi (80%)

`predict_time(rows)` uses the default model fitted on all data the project has (cached).
Split protocols live in `splits`, metrics in `metrics`, the physics features in `physics`.
"""

from chronos_core.predict.time_models import (
    DEFAULT_MODEL,
    TIME_MODELS,
    TimeModel,
    cross_predict,
    default_model,
    make_time_model,
    predict_time,
    summarize,
    training_table,
)

__all__ = [
    "DEFAULT_MODEL",
    "TIME_MODELS",
    "TimeModel",
    "cross_predict",
    "default_model",
    "make_time_model",
    "predict_time",
    "summarize",
    "training_table",
]
