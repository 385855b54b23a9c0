"""Public per-kernel timings adapted to one canonical kernel schema.

Sources: NeuSight's kernel tables (five GPUs, fp32 with TF32 off, training and out-of-distribution
shapes) and XLA's B200 GEMM table (bf16, TF32, fp8), plus any device profile written by
`chronos calibrate` (read through `device_profiles`). Profiler columns (kernel name, grid/block,
warps) describe the kernel that ran and are never carried over: they are not known before running.

Traps handled here: a few (GPU, shape) rows are duplicated (averaged); every conv row is 3x3,
stride 1, padding 1 (kept as columns so a model can see it); elementwise, ln and softmax rows give
the tensor shape as B x H; ops ending in `u` (and gelu, relu, tanh) are unary.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from chronos_core.catalog.devices import Devices
from chronos_core.data import registry
from chronos_core.errors import ChronosError

KERNEL_COLUMNS = (
    "op",
    "family",
    "B",
    "M",
    "N",
    "K",
    "H",
    "in_channels",
    "out_channels",
    "kernel_size",
    "input_size",
    "stride",
    "padding",
    "dtype",
    "device",
    "device_name",
    "latency_ms",
    "source",
    "split",
)
GEMM_OPS = ("bmm", "linear")
BINARY_OPS = ("add", "div", "mul", "pow")
UNARY_OPS = ("addu", "divu", "mulu", "powu", "gelu", "relu", "tanh")
ELEMENTWISE_OPS = BINARY_OPS + UNARY_OPS
OPS = GEMM_OPS + ("conv",) + ELEMENTWISE_OPS + ("ln", "softmax")
DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8")
_SHAPE_COLS = KERNEL_COLUMNS[KERNEL_COLUMNS.index("B") : KERNEL_COLUMNS.index("padding") + 1]
_NEUSIGHT_CONV = {
    "Input_Channel": "in_channels",
    "Output_Channel": "out_channels",
    "Kernel_Szie": "kernel_size",
    "Input_Size": "input_size",
    "Stride": "stride",
    "Padding": "padding",
}
_XLA_DTYPES = {"bf16xbf16->bf16": "bf16", "f32xf32->f32": "tf32"}  # XLA runs f32 GEMMs on TF32 cores


def op_family(op: str) -> str:
    """gemm, conv, elementwise, ln or softmax for a NeuSight op name."""
    if op in GEMM_OPS:
        return "gemm"
    if op in ELEMENTWISE_OPS:
        return "elementwise"
    if op in ("conv", "ln", "softmax"):
        return op
    raise ChronosError(f"Unknown op {op!r}. Known: {', '.join(OPS)}")


def catalog_device(name: str) -> str:
    """The catalog name for a device spelling, or the spelling itself when the catalog lacks it."""
    found = Devices.resolve(str(name))
    return found if found is not None else str(name)


def conform_kernels(frame: pd.DataFrame) -> pd.DataFrame:
    """Order and type the canonical columns (missing ones become NaN)."""
    out = frame.reindex(columns=list(KERNEL_COLUMNS))
    for col in (*_SHAPE_COLS, "latency_ms"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out.reset_index(drop=True)


def adapt_neusight(raw: pd.DataFrame, split: str, source: str = "neusight") -> pd.DataFrame:
    """One NeuSight kernel table (any op) -> canonical rows, duplicates averaged."""
    frame = raw.rename(
        columns={"OPName": "op", "Latency": "latency_ms", "Device": "device_name", **_NEUSIGHT_CONV}
    )
    frame = frame[frame["op"].isin(OPS)].copy()
    frame["family"] = frame["op"].map(op_family)
    frame["device"] = frame["device_name"].map(catalog_device)
    frame["dtype"] = "fp32"
    frame["source"] = source
    frame["split"] = split
    frame = conform_kernels(frame)
    keys = [c for c in KERNEL_COLUMNS if c != "latency_ms"]
    return frame.groupby(keys, dropna=False, sort=False, as_index=False)["latency_ms"].mean()[
        list(KERNEL_COLUMNS)
    ]


def adapt_xla_gemm(raw: pd.DataFrame) -> pd.DataFrame:
    """XLA's GEMM throughput table -> canonical gemm rows (latency = 2bmnk / throughput)."""
    frame = raw[raw["dtype"].isin(_XLA_DTYPES)].copy()
    flops = 2.0 * frame["b"] * frame["m"] * frame["n"] * frame["k"]
    out = pd.DataFrame(
        {
            "op": np.where(frame["b"] > 1, "bmm", "linear"),
            "family": "gemm",
            "B": frame["b"],
            "M": frame["m"],
            "N": frame["n"],
            "K": frame["k"],
            "dtype": frame["dtype"].map(_XLA_DTYPES),
            "device_name": frame["gpu"],
            "device": frame["gpu"].map(catalog_device),
            "latency_ms": flops / frame["flops_per_s"] * 1e3,
            "source": "xla",
            "split": "xla",
        }
    )
    return conform_kernels(out)


@functools.lru_cache(maxsize=1)
def neusight_kernels() -> pd.DataFrame:
    """All NeuSight kernel rows: split 'train' (training shapes) and 'test' (out-of-distribution)."""
    parts = []
    for name, src in registry.SOURCES.items():
        if src.kind != "kernels" or not name.startswith("neusight-"):
            continue
        split = "test" if name.startswith("neusight-test-") else "train"
        parts.append(adapt_neusight(registry.read(name), split))
    return pd.concat(parts, ignore_index=True)


@functools.lru_cache(maxsize=1)
def xla_kernels() -> pd.DataFrame:
    """XLA's B200 GEMMs (bf16 and TF32) in the canonical schema."""
    return adapt_xla_gemm(registry.read("xla-gemm-b200"))


def kernel_table(include_xla: bool = True) -> pd.DataFrame:
    """Every public kernel row in the canonical schema (a copy: callers may modify it)."""
    parts = [neusight_kernels()] + ([xla_kernels()] if include_xla else [])
    return pd.concat(parts, ignore_index=True)
