"""The canonical tables every source is adapted to before any model sees it.

Time rows: one training configuration on one device with its computational features, the
device's specs and (when measured) per-iteration targets in ms. Convergence rows: one training
run's configuration, init-time probes and epochs to convergence. Units are in the names.
"""

from __future__ import annotations

import pandas as pd

CONFIG_COLUMNS = [
    "source",
    "family",
    "model",
    "dataset",
    "dataset_size",
    "input_shape",
    "seq_len",
    "num_classes",
    "batch_size",
    "precision",
    "amp",
    "optimizer",
    "learning_rate",
]
FEATURE_COLUMNS = [
    "param_count",
    "flops_fwd_per_sample",
    "flops_train_per_sample",
    "flops_train_per_batch",
    "param_bytes",
    "optimizer_state_bytes",
    "master_param_bytes",
    "total_state_bytes",
    "act_bytes_per_sample",
    "arithmetic_intensity_train",
]
DEVICE_COLUMNS = [
    "gpu_name",
    "device",
    "gpu_sm_count",
    "gpu_boost_clock_mhz",
    "gpu_memory_gb",
    "gpu_mem_bandwidth_gbs",
    "gpu_fp32_tflops",
    "gpu_fp16_tflops",
    "gpu_tensor_cores",
    "gpu_price_per_hr",
]
TIME_TARGETS = ["batch_time_ms", "compute_ms", "loader_wait_ms"]
TIME_COLUMNS = CONFIG_COLUMNS + FEATURE_COLUMNS + DEVICE_COLUMNS + TIME_TARGETS

CONVERGENCE_PROBES = ["gradient_norm_log10", "ntk_trace_proxy_log10", "initial_loss_log10"]
CONVERGENCE_TARGETS = ["T_conv"]
CONVERGENCE_COLUMNS = [
    "source",
    "family",
    "model",
    "dataset",
    "dataset_size",
    "num_classes",
    "precision",
    "optimizer",
    "learning_rate",
    "batch_size",
    "param_count",
    *CONVERGENCE_PROBES,
    "patience",
    "min_delta",
    "max_epochs",
    "seed",
    "val_loss_prefix",
    *CONVERGENCE_TARGETS,
]

# Columns derived from measured targets: a model that reads them as features sees the answer.
LEAKY_COLUMNS = frozenset(
    {
        "loader_ratio",
        "p90_batch_time_ms",
        "examples_per_sec",
        "avg_batch_time_ms",
        "avg_compute_ms",
        "avg_loader_ms",
        "T_80close",
        "T_90close",
        "images_per_sec",
        "thr_mean",
        "thr_std",
    }
)
TARGET_COLUMNS = frozenset(
    TIME_TARGETS
    + CONVERGENCE_TARGETS
    + ["epoch_time_s", "batch_time_ms_std", "compute_ms_std", "loader_wait_ms_std"]
)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """Columns of a canonical table that a model may read: everything but targets and leaks."""
    return [c for c in frame.columns if c not in TARGET_COLUMNS and c not in LEAKY_COLUMNS]


def conform(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Canonical columns first (missing ones as NA), then any source-specific extras; leaks dropped."""
    out = frame.drop(columns=[c for c in frame.columns if c in LEAKY_COLUMNS])
    for col in columns:
        if col not in out.columns:
            out[col] = pd.NA
    extras = [c for c in out.columns if c not in columns]
    return out[columns + extras].reset_index(drop=True)
