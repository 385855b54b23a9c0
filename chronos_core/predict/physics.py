"""Physics of one training iteration on one device: roofline times and the features that transfer.

For every row of a canonical time table: the device's peaks (catalog spec when the GPU name is
known, else built from the row's `gpu_*` columns), the peak of the precision in use (FP16 tensor
peak for AMP where there are tensor cores; TF32 for convolutions in FP32 on Ampere and later,
which is PyTorch's cuDNN default), FLOPs / peak, bytes / bandwidth, a kernel-count proxy for the
per-iteration fixed overheads, and unit-free features (arithmetic intensity over the ridge point,
work per layer per SM, architecture generation) that a learner can carry from one GPU to another.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pandas as pd

from chronos_core.catalog.devices import Devices, DeviceSpec

# Device fields per row; missing numbers are NaN.
SPEC_FIELDS = (
    "peak_fp32_tflops",
    "peak_amp_tflops",
    "peak_tf32_tflops",
    "peak_bf16_tflops",
    "memory_bandwidth_gbs",
    "sm_count",
    "compute_capability",
    "has_tensor_cores",
    "is_cpu",
    "l2_cache_mb",
)
FAMILIES = ("CNN", "MLP", "Transformer", "RNN")
# The roofline feature set (what the model read before the L2 terms; kept for the nested comparison).
ROOFLINE_FEATURES = (
    "log_t_flop_ms",
    "log_t_mem_ms",
    "log_t_roof_ms",
    "log_ai_over_ridge",
    "log_batch",
    "amp",
    "log_n_layers",
    "log_work_per_layer_sm",
    "log_params",
    "optimizer_state_ratio",
    # conv_frac is used for the FP32/TF32 peak but is not a learned feature: the public tables carry no
    # per-layer FLOPs, so it reads 1 for all their CNNs and would tell the learner which source a row
    # came from instead of anything about the model (it sent our VGG16 rows 12% below the CHRONOS ones)
    "compute_capability",
    "has_tensor_cores",
    "log_peak_tflops",
    "log_bandwidth_gbs",
    "is_cpu",
    *(f"family_{f}" for f in FAMILIES),
)
# The on-chip L2 cache decides how much of a step's traffic reaches DRAM: Ada and Blackwell carry
# 72-96 MB where Volta-Ampere GA10x carry 4-6 MB, and the roofline's DRAM time alone misses that.
L2_FEATURES = ("log_l2_mb", "log_act_ws_over_l2", "log_params_over_l2")
# Features the learned parts of the hardware-aware model read (all defined for any GPU with specs).
# The L2 terms were chosen by nested leave-one-GPU-out (`evaluate.nested_feature_selection`).
PHYSICS_FEATURES = (*ROOFLINE_FEATURES, *L2_FEATURES)
# L2 cache (MB) by compute capability when neither the catalog nor a `gpu_l2_cache_mb` column gives
# it: typical parts of each generation (Pascal GP10x, Volta, Turing, GA100, GA10x, Ada, Hopper,
# Blackwell datacenter and GeForce).
_L2_MB_BY_CC = {6: 4.0, 7.0: 6.0, 7.5: 5.5, 8.0: 40.0, 8.6: 6.0, 8.9: 72.0, 9: 50.0, 10: 126.0, 12: 96.0}
# ... and when the compute capability is unknown too: no tensor cores (pre-Volta), tensor cores
# (Volta to GA10x), or tensor cores boosting at >= 2.2 GHz, which only Ada and Blackwell do (24-96 MB).
_L2_MB_NO_TENSOR, _L2_MB_TENSOR, _L2_MB_FAST_TENSOR = 3.0, 6.0, 48.0
_ADA_CLOCK_MHZ = 2200.0
# Tensor FLOPs per tensor core per clock (dense, FP16 in / FP32 accumulate) when a GPU is unknown
# to the catalog: the GA10x/Ada value; Volta/Turing have 128, GA100 512, Hopper 1024.
_TENSOR_FLOPS_PER_CORE_CLOCK = 256.0


def _num(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def estimate_l2_mb(compute_capability: float, tensor_cores: float, clock_mhz: float = math.nan) -> float:
    """A rough L2 size (MB) for a GPU the catalog does not know, from its generation."""
    if compute_capability > 0:
        key = round(compute_capability, 1)
        if key in _L2_MB_BY_CC:
            return _L2_MB_BY_CC[key]
        return _L2_MB_BY_CC.get(int(compute_capability), _L2_MB_TENSOR)
    if not tensor_cores > 0:
        return _L2_MB_NO_TENSOR
    return _L2_MB_FAST_TENSOR if clock_mhz >= _ADA_CLOCK_MHZ else _L2_MB_TENSOR


@functools.lru_cache(maxsize=4096)
def _catalog_spec(name: str) -> DeviceSpec | None:
    canonical = Devices.resolve(name)
    return Devices.get(canonical) if canonical else None


def spec_from_columns(row: dict[str, Any]) -> DeviceSpec:
    """A DeviceSpec from canonical `gpu_*` columns for a GPU the catalog does not know.

    Optional extra columns `gpu_fp16_tensor_tflops`, `gpu_tf32_tensor_tflops`,
    `gpu_compute_capability` and `gpu_l2_cache_mb` are used when present; otherwise an FP16 tensor
    peak is estimated as tensor cores x boost clock x 256 FLOPs (GA10x/Ada rate), TF32 as half of
    it, and the L2 size from the generation (`estimate_l2_mb`).
    """
    name = str(row.get("device") or row.get("gpu_name") or "unknown-gpu")
    fp32 = _num(row.get("gpu_fp32_tflops"))
    fp16 = _num(row.get("gpu_fp16_tflops"))
    tc = _num(row.get("gpu_tensor_cores"))
    clock = _num(row.get("gpu_boost_clock_mhz"))
    tensor16 = _num(row.get("gpu_fp16_tensor_tflops"))
    if not tensor16 > 0:
        tensor16 = tc * clock * 1e6 * _TENSOR_FLOPS_PER_CORE_CLOCK / 1e12 if tc > 0 and clock > 0 else 0.0
    tf32 = _num(row.get("gpu_tf32_tensor_tflops"))
    if not tf32 > 0:
        tf32 = tensor16 / 2.0
    cc = row.get("gpu_compute_capability")
    l2 = _num(row.get("gpu_l2_cache_mb"))
    if not l2 > 0:
        l2 = estimate_l2_mb(_num(cc), tc, clock)
    return DeviceSpec(
        name=name,
        compute_capability="" if cc is None or (isinstance(cc, float) and math.isnan(cc)) else str(cc),
        sm_count=int(_num(row.get("gpu_sm_count"))) if _num(row.get("gpu_sm_count")) > 0 else 0,
        tensor_cores=int(tc) if tc > 0 else 0,
        boost_clock_mhz=clock,
        peak_fp32_tflops=fp32,
        peak_fp16_tflops=fp16 if fp16 > 0 else math.nan,
        peak_fp16_tensor_tflops=tensor16,
        peak_bf16_tensor_tflops=tensor16,
        peak_tf32_tensor_tflops=tf32,
        memory_gb=_num(row.get("gpu_memory_gb")),
        memory_bandwidth_gbs=_num(row.get("gpu_mem_bandwidth_gbs")),
        l2_cache_mb=l2,
        source="row gpu_* columns",
    )


def resolve_spec(row: dict[str, Any]) -> DeviceSpec:
    """The catalog spec for the row's `device` / `gpu_name` when known, else one from its columns."""
    for key in ("device", "gpu_name"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            spec = _catalog_spec(value.strip())
            if spec is not None:
                return spec
    return spec_from_columns(row)


def _spec_values(spec: DeviceSpec) -> dict[str, float]:
    is_cpu = spec.kind == "cpu"
    fp32 = spec.peak_fp32_tflops
    tensor = spec.peak_fp16_tensor_tflops if spec.peak_fp16_tensor_tflops > 0 else math.nan
    try:
        amp = spec.peak_tflops(16)
        bf16 = spec.peak_tflops("bf16")
        tf32 = spec.peak_tflops("tf32")
    except Exception:  # noqa: BLE001 - a spec with no usable peaks
        amp = bf16 = tf32 = fp32
    cc = _num(spec.compute_capability)
    l2 = spec.l2_cache_mb
    if not l2 > 0:
        l2 = estimate_l2_mb(cc, float(spec.tensor_cores), spec.boost_clock_mhz)
    return {
        "peak_fp32_tflops": fp32,
        "peak_amp_tflops": amp,
        "peak_tf32_tflops": tf32 if cc >= 8.0 or (math.isnan(cc) and tensor > 0) else fp32,
        "peak_bf16_tflops": bf16,
        "memory_bandwidth_gbs": spec.memory_bandwidth_gbs if spec.memory_bandwidth_gbs > 0 else math.nan,
        "sm_count": float(spec.sm_count) if spec.sm_count > 0 else float(max(spec.physical_cores, 1)),
        "compute_capability": cc,
        "has_tensor_cores": float(spec.tensor_cores > 0 or tensor > 0),
        "is_cpu": float(is_cpu),
        "l2_cache_mb": math.nan if is_cpu else l2,
    }


_DEVICE_KEY_COLUMNS = (
    "device",
    "gpu_name",
    "gpu_sm_count",
    "gpu_boost_clock_mhz",
    "gpu_memory_gb",
    "gpu_mem_bandwidth_gbs",
    "gpu_fp32_tflops",
    "gpu_fp16_tflops",
    "gpu_tensor_cores",
    "gpu_fp16_tensor_tflops",
    "gpu_tf32_tensor_tflops",
    "gpu_compute_capability",
    "gpu_l2_cache_mb",
)


def _device_arrays(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-row device values (SPEC_FIELDS) as arrays, resolved once per distinct device description."""
    cols = [c for c in _DEVICE_KEY_COLUMNS if c in table.columns]
    n = len(table)
    if not cols or n == 0:
        return {f: np.full(n, np.nan) for f in SPEC_FIELDS}
    if n == 1:
        codes, records = np.zeros(1, dtype=int), [table.iloc[0][cols].to_dict()]
    else:
        from chronos_core.predict.splits import row_codes

        codes = row_codes(table, cols)
        first = pd.Series(np.arange(n)).groupby(codes).first().to_numpy()
        records = [table.iloc[int(i)][cols].to_dict() for i in first]
    values = np.array([[_spec_values(resolve_spec(r))[f] for f in SPEC_FIELDS] for r in records], dtype=float)
    return {f: values[codes, j] for j, f in enumerate(SPEC_FIELDS)}


def device_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Per-row device values (SPEC_FIELDS), resolved once per distinct device description."""
    return pd.DataFrame(_device_arrays(table), index=table.index, columns=list(SPEC_FIELDS))


def _col(table: pd.DataFrame, name: str) -> np.ndarray:
    """A column as a float array (NaN where missing or not a number; all NaN when absent)."""
    if name not in table.columns:
        return np.full(len(table), np.nan)
    col = table[name]
    if isinstance(col.dtype, np.dtype) and col.dtype.kind in "fiub":  # plain numpy: no NA handling needed
        return col.to_numpy(dtype=float)
    try:
        return col.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        return pd.to_numeric(col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def _flag(table: pd.DataFrame, name: str) -> np.ndarray:
    if name not in table.columns:
        return np.zeros(len(table))
    col = table[name]
    if col.dtype == object or str(col.dtype).startswith(("str", "string")):
        text = np.char.lower(np.char.strip(col.to_numpy(dtype=object).astype(str)))
        return np.isin(text, ["true", "1", "yes", "1.0"]).astype(float)
    return (np.nan_to_num(_col(table, name), nan=0.0) != 0).astype(float)


def _family(table: pd.DataFrame) -> np.ndarray:
    if "family" not in table.columns:
        return np.full(len(table), "", dtype=object)
    return table["family"].to_numpy(dtype=object).astype(str)


def _fill(values: np.ndarray, default: np.ndarray | float) -> np.ndarray:
    return np.where(np.isnan(values), default, values)


_COUNTED_TYPES = ("conv", "linear", "attention", "norm", "embedding", "rnn", "pool", "activation")


def layer_count(table: pd.DataFrame) -> np.ndarray:
    """Kernel-count proxy: layers that launch kernels per step (from table columns).

    CNN rows: convs (`depth`) + norms (`bn_layers`) + activations (`act_layers`) when given.
    Blocks of MLP and Transformer models launch about 10 and 14 kernels-worth of modules each.
    Per-type `count_<type>_layers` columns (chronos_core.features) replace this estimate, and an
    `n_layers` column, when present, wins.
    """
    depth = _col(table, "depth")
    family = _family(table)
    bn = _fill(_col(table, "bn_layers"), 0.0)
    act = _fill(_col(table, "act_layers"), 0.0)
    cnn = _fill(depth, 8.0) + bn + np.where(act > 0, act, _fill(depth, 8.0))
    blocks = {"MLP": 10.0, "Transformer": 14.0, "RNN": 4.0}
    per_block = np.array([blocks.get(f, 3.0) for f in family], dtype=float)
    out = np.where(family == "CNN", cnn, _fill(depth, 6.0) * per_block)
    counts = [f"count_{k}_layers" for k in _COUNTED_TYPES if f"count_{k}_layers" in table.columns]
    if counts:  # per-type counts from chronos_core.features (our own tables)
        total = np.sum([_fill(_col(table, c), 0.0) for c in counts], axis=0)
        out = np.where(total > 0, total, out)
    if "n_layers" in table.columns:
        given = _col(table, "n_layers")
        out = np.where(given > 0, given, out)
    return np.maximum(out, 1.0)


def flops_per_batch(table: pd.DataFrame) -> np.ndarray:
    """Training FLOPs per batch from whichever FLOPs column the row has (fwd x 3 as last resort)."""
    batch = _col(table, "batch_size")
    out = _col(table, "flops_train_per_batch")
    out = _fill(out, _col(table, "flops_train_per_sample") * batch)
    return _fill(out, 3.0 * _col(table, "flops_fwd_per_sample") * batch)


def physics_arrays(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Roofline times (ms) and the transferable features of every row, as arrays (fast path)."""
    spec = _device_arrays(table)
    batch = _col(table, "batch_size")
    amp = _flag(table, "amp")
    precision = _col(table, "precision")
    amp = np.where(amp > 0, 1.0, np.where(precision == 16, 1.0, 0.0))
    family = _family(table)
    is_cnn = (family == "CNN").astype(float)
    conv_share = _col(table, "flops_fwd_conv_per_sample") / _col(table, "flops_fwd_per_sample")
    conv_frac = _fill(_fill(_col(table, "conv_frac"), conv_share), is_cnn)
    flops = flops_per_batch(table)
    bw = spec["memory_bandwidth_gbs"]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Peak of the precision in use; FP32 convs run as TF32 on Ampere+ (PyTorch's cuDNN default).
        fp32_time_per_flop = conv_frac / spec["peak_tf32_tflops"] + (1 - conv_frac) / spec["peak_fp32_tflops"]
        peak = np.where(amp > 0, spec["peak_amp_tflops"], 1.0 / fp32_time_per_flop)
        t_flop = flops / (peak * 1e9)
        param_bytes = _fill(_col(table, "param_bytes"), 4.0 * _col(table, "param_count"))
        state = _fill(_col(table, "total_state_bytes"), 3.0 * param_bytes)
        act = _fill(_col(table, "act_bytes_per_sample"), 0.0)
        bytes_moved = 3.0 * act * batch + 2.0 * state
        t_mem = bytes_moved / (bw * 1e6)
        t_roof = np.fmax(t_flop, t_mem)
        ridge = peak * 1e12 / (bw * 1e9)
        n_layers = layer_count(table)
        sms = np.where(spec["sm_count"] > 0, spec["sm_count"], 1.0)
        opt_ratio = _fill(_col(table, "optimizer_state_bytes") / param_bytes, 1.0)
        l2_bytes = spec["l2_cache_mb"] * 1e6
        out = {
            "t_flop_ms": t_flop,
            "t_mem_ms": t_mem,
            "t_roof_ms": t_roof,
            "peak_tflops": peak,
            "bytes_per_batch": bytes_moved,
            "flops_per_batch": flops,
            "n_layers": n_layers,
            "log_t_flop_ms": np.log(t_flop),
            "log_t_mem_ms": np.log(t_mem),
            "log_t_roof_ms": np.log(t_roof),
            "log_ai_over_ridge": np.log(flops / bytes_moved) - np.log(ridge),
            "log_batch": np.log2(batch),
            "amp": amp,
            "log_n_layers": np.log(n_layers),
            "log_work_per_layer_sm": np.log10(flops / n_layers / sms),
            "log_params": np.log10(_col(table, "param_count")),
            "optimizer_state_ratio": opt_ratio,
            "conv_frac": conv_frac,
            "compute_capability": spec["compute_capability"],
            "has_tensor_cores": spec["has_tensor_cores"],
            "log_peak_tflops": np.log(peak),
            "log_bandwidth_gbs": np.log(bw),
            "is_cpu": spec["is_cpu"],
            "log_l2_mb": np.log(spec["l2_cache_mb"]),
            "log_act_ws_over_l2": np.log(act * batch / l2_bytes),
            "log_params_over_l2": np.log(param_bytes / l2_bytes),
            **{f"family_{f}": (family == f).astype(float) for f in FAMILIES},
        }
    return {k: np.where(np.isfinite(v), v, np.nan).astype(float) for k, v in out.items()}


def physics_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Roofline times (ms) and the transferable features of every row (index kept)."""
    return pd.DataFrame(physics_arrays(table), index=table.index)


# Every column `physics_arrays` reads (a caller may drop the rest before building a frame).
INPUT_COLUMNS = frozenset(
    {
        *_DEVICE_KEY_COLUMNS,
        "batch_size",
        "amp",
        "precision",
        "family",
        "conv_frac",
        "flops_fwd_conv_per_sample",
        "flops_fwd_per_sample",
        "flops_train_per_sample",
        "flops_train_per_batch",
        "param_bytes",
        "param_count",
        "total_state_bytes",
        "optimizer_state_bytes",
        "act_bytes_per_sample",
        "depth",
        "bn_layers",
        "act_layers",
        "n_layers",
        *(f"count_{k}_layers" for k in _COUNTED_TYPES),
    }
)
