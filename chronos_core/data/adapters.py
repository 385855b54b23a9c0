"""Adapters: each public source's schema -> the canonical tables in `schema.py`.

Reconciles the CHRONOS tables' differences (MLP.csv's avg_loader_ms/avg_compute_ms, the
Transformer table's per-token FLOPs and amp_enabled), maps TechPowerUp spec columns to
`gpu_*` columns with units, and drops columns derived from the measured target.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from chronos_core.data import registry
from chronos_core.data.schema import CONVERGENCE_COLUMNS, TIME_COLUMNS, conform
from chronos_core.errors import ChronosError

# TechPowerUp-style spec columns (CHRONOS, PreNeT) -> canonical device columns.
_SPEC_RENAMES = {
    "SM": "gpu_sm_count",
    "Boost Clock (MHz)": "gpu_boost_clock_mhz",
    "Memory (GB)": "gpu_memory_gb",
    "GPU Memory Bandwidth (GB/s)": "gpu_mem_bandwidth_gbs",
    "TC": "gpu_tensor_cores",
    "$/hr": "gpu_price_per_hr",
    "Provisioning": "host_provider",  # the cloud the host ran in: loader wait is the host's
}
_SPEC_DROPS = [
    "Base Clock (MHz)",
    "Memory Clock (MHz)",
    "Memory Type",
    "Memory Bus (bit)",
    "Bus",
    "Cores",
    "TMUs",
    "ROPs",
    "RT",
    "PR",
    "TR",
    "FP64",
    "FP16",
    "FP32",
]
_FAMILY_BY_SOURCE = {
    "chronos-time-cnn": "CNN",
    "chronos-time-mlp": "MLP",
    "chronos-time-transformer": "Transformer",
}


def adapt_spec_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """TechPowerUp spec columns (GFLOPS, MHz, GB/s) -> gpu_* columns in TFLOPS/MHz/GB/s."""
    out = frame.rename(columns=_SPEC_RENAMES)
    if "FP32" in frame:
        out["gpu_fp32_tflops"] = frame["FP32"].astype(float) / 1000.0
    if "FP16" in frame:
        out["gpu_fp16_tflops"] = frame["FP16"].astype(float) / 1000.0
    return out.drop(columns=[c for c in _SPEC_DROPS if c in out.columns])


def _device_name(gpu_name: str) -> str:
    """Catalog name for a GPU string when the catalog knows it, else the string itself."""
    try:
        from chronos_core.catalog.devices import Devices
    except ImportError:  # catalog not built yet: keep raw names
        return gpu_name
    return Devices.resolve(gpu_name) or gpu_name


def adapt_chronos_time(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """A CHRONOS epoch-time table (CNN, MLP or Transformer) -> canonical time rows."""
    out = adapt_spec_columns(
        frame.rename(
            columns={
                "avg_loader_ms": "loader_wait_ms",
                "avg_compute_ms": "compute_ms",
                "amp_enabled": "amp",
                "act_bytes_per_seq_proxy": "act_bytes_per_sample",
                "act_bytes_per_sample_proxy": "act_bytes_per_sample",
                "flops_train_per_seq": "flops_train_per_sample",
            }
        )
    )
    if "flops_fwd_per_token" in out:
        out["flops_fwd_per_sample"] = out.pop("flops_fwd_per_token") * out["seq_len"]
        text = out["dataset"].isin(["SST2", "IMDB", "AG_NEWS"])  # ViT rows: seq_len counts patches
        out["input_shape"] = ("(" + out["seq_len"].astype(str) + ",)").where(text, pd.NA)
    out["batch_time_ms"] = frame["avg_batch_time_ms"]
    out["source"] = source
    out["family"] = _FAMILY_BY_SOURCE[source]
    out = out.drop(columns=[c for c in ("architecture", "effective_batch_size") if c in out])
    if "num_classes" not in out and "dataset" in out:
        out["num_classes"] = out["dataset"].map(_num_classes)
    out["device"] = out["gpu_name"].map(_device_name)
    out["precision"] = out["precision"].astype(int)
    out["amp"] = out["amp"].astype(bool)
    return conform(out, TIME_COLUMNS)


def _num_classes(dataset: str) -> float:
    from chronos_core.catalog.datasets import Datasets

    return Datasets.get(dataset).num_classes if dataset in Datasets else math.nan


A100_DATASET_SIZE = 50_000  # CIFAR-10 train set


def adapt_a100_agg(frame: pd.DataFrame, source: str = "a100-runs-agg") -> pd.DataFrame:
    """The A100 project's runs_agg.csv -> canonical time rows (Keras CNN, CIFAR-10, A100 80GB PCIe, fp32)."""
    out = pd.DataFrame(
        {
            "source": source,
            "family": "CNN",
            "model": "KerasCNN_d" + frame["depth"].astype(str) + "_f" + frame["base_filters"].astype(str),
            "dataset": "CIFAR10",
            "dataset_size": A100_DATASET_SIZE,
            "input_shape": "(3, 32, 32)",
            "num_classes": 10,
            "batch_size": frame["batch_size"],
            "precision": 32,
            "amp": False,
            "param_count": frame["params"],
            "gpu_name": "NVIDIA A100 80GB PCIe",
            "depth": frame["depth"],
            "base_filters": frame["base_filters"],
            "n_repeats": frame["n"],
            "steps_per_epoch": frame["steps_per_epoch"],
            "epoch_time_s": frame["avg_time_mean"],
            "epoch_time_s_std": frame["avg_time_std"],
            "test_acc": frame["acc_mean"],
            "test_acc_std": frame["acc_std"],
        }
    )
    out["batch_time_ms"] = 1000.0 * frame["avg_time_mean"] / frame["steps_per_epoch"]
    out["device"] = out["gpu_name"].map(_device_name)
    return conform(out, TIME_COLUMNS)


def adapt_a100_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The A100 project's raw runs.csv with per-run steps_per_epoch and epoch 1 excluded (as they did)."""
    out = frame.copy()
    out["steps_per_epoch"] = np.ceil(A100_DATASET_SIZE / out["batch_size"]).astype(int)
    times = out["epoch_times_json"].map(json.loads)
    out["epoch_times_after_first_s"] = times.map(lambda t: t[1:] if len(t) > 1 else t)
    return out


def adapt_convergence(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """CHRONOS / CAPE convergence tables -> canonical convergence rows (leaky T_80/T_90close dropped)."""
    out = frame.rename(
        columns={"architecture": "family", "patience_P": "patience", "max_epochs_used": "max_epochs"}
    )
    out["source"] = source
    if "num_classes" not in out:
        out["num_classes"] = out["dataset"].map(_num_classes)
    redundant = ["param_count_log10", "learning_rate_log10", "batch_size_log10", "task"]
    out = out.drop(columns=[c for c in redundant if c in out])
    return conform(out, CONVERGENCE_COLUMNS)


def load_time_table(
    sources: tuple[str, ...] = ("chronos-time-cnn", "chronos-time-mlp", "chronos-time-transformer"),
) -> pd.DataFrame:
    """Canonical time rows from registered public sources (read offline from the mirror or cache)."""
    frames = []
    for name in sources:
        src = registry.get_source(name)
        if src.kind == "epoch_time":
            frames.append(adapt_chronos_time(registry.read(name), name))
        elif src.kind == "a100_agg":
            frames.append(adapt_a100_agg(registry.read(name), name))
        else:
            raise ChronosError(f"Source {name!r} is a {src.kind} table, not a time table")
    return pd.concat(frames, ignore_index=True)


def load_convergence_table(
    sources: tuple[str, ...] = ("chronos-conv-cnn", "chronos-conv-mlp", "chronos-conv-transformer"),
) -> pd.DataFrame:
    """Canonical convergence rows from registered public sources."""
    frames = []
    for name in sources:
        if registry.get_source(name).kind != "convergence":
            raise ChronosError(f"Source {name!r} is not a convergence table")
        frames.append(adapt_convergence(registry.read(name), name))
    return pd.concat(frames, ignore_index=True)
