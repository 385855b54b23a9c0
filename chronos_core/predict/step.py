"""One training (or inference) step = the sum of its operators' predicted times + what the host costs.

    step_ms = max(sum_i gpu_ms_i, n_kernels * dispatch_ms) + fixed_ms

Each op of the traced step (`features.opgraph.trace_step`) is mapped to the nearest canonical
kernel (gemm -> bmm/linear, conv -> conv, norms -> ln, softmax -> softmax, everything else -> an
elementwise pass over its bytes) and priced by the kernel model. Fused attention kernels (flash,
memory-efficient, cuDNN sdpa) have no counterpart in the kernel tables and get their own roofline
(`fused_attention`). Eager attention is its bmm, softmax and elementwise rows, priced as such.
A kernel measured alone pays the launch floor (a framework call); inside a step kernels are queued
back to back, so the floor is replaced by `gap_ms` on the GPU while the host's Python/dispatcher
cost per op (`dispatch_ms`) runs in parallel: a step of many small kernels is host-bound.
`fixed_ms` is the per-step cost outside the ops (zero_grad, loss scaling, syncs).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chronos_core.data.kernels import KERNEL_COLUMNS
from chronos_core.predict.kernels import KernelModel, device_spec, kernel_features, peak_flops

_OPGRAPH_DTYPE = {"fp32": "fp32", "tf32": "tf32", "fp16": "fp16", "bf16": "bf16"}
_ELEMENTWISE_H = 1024


@dataclass(frozen=True)
class HostOverhead:
    """What the host adds to a step (ms): per kernel on the GPU and CPU, and per step."""

    gap_ms: float = 0.002  # back-to-back kernels on the GPU
    dispatch_ms: float = 0.012  # PyTorch eager: Python + dispatcher + launch, per op, on the CPU
    fixed_ms: float = 0.3  # per step: optimizer bookkeeping, zero_grad, a sync
    name: str = "default"


DEFAULT_HOST = HostOverhead()


def host_step_ms(gpu_ms: np.ndarray | float, kernels: np.ndarray | float, host: HostOverhead) -> np.ndarray:
    """Step time (ms) from the GPU time of its kernels (floors excluded), their count and a host."""
    return np.maximum(gpu_ms + host.gap_ms * kernels, kernels * host.dispatch_ms) + host.fixed_ms


HOSTS_FILE = Path(__file__).resolve().parents[2] / "results" / "kernels" / "chronos_hosts.csv"


def host_for(provider: str | None = None, amp: bool = False) -> HostOverhead:
    """The median of the measured CHRONOS hosts (notebook 08) in a cloud ('RunPod', 'GCP'; all when
    None or unknown), for fp32 or AMP steps; the default host when none was measured."""
    if not HOSTS_FILE.is_file():
        return DEFAULT_HOST
    hosts = pd.read_csv(HOSTS_FILE)
    hosts = hosts[hosts["amp"].astype(str).str.lower() == str(bool(amp)).lower()]
    same = hosts[hosts["host_provider"].astype(str).str.lower() == str(provider).lower()]
    hosts = same if len(same) else hosts
    if hosts.empty:
        return DEFAULT_HOST
    return HostOverhead(
        float(hosts["gap_ms"].median()),
        float(hosts["dispatch_ms"].median()),
        float(hosts["fixed_ms"].median()),
        f"median of {len(hosts)} measured hosts",
    )


# Fused attention (flash / memory-efficient / cuDNN sdpa kernels, forward and backward).
# Their efficiency is the kernel model's GEMM efficiency at the same work times these fractions:
# FlashAttention-2 runs its forward at about 0.5-0.6 of an A100's bf16 peak at head dim 64 (150-175
# TFLOP/s; up to 0.73 at head dim 128) where cuBLAS GEMMs reach about 0.85, so about 0.65 of a GEMM;
# its backward (five GEMMs per block, dQ accumulated through atomics) about 0.4-0.45 of peak, 0.5 of
# a GEMM (Dao 2023, FlashAttention-2, figures 4-6). Fixed from those published rates, not fitted.
FUSED_ATTENTION_FRACTION = {"forward": 0.65, "backward": 0.5}
FLASH_BLOCK = 128  # query/key block of the fused kernels: causal masking skips whole blocks


def fused_attention(ops: pd.DataFrame, device: str) -> pd.DataFrame:
    """The work of each fused attention row (others NaN) and the GEMM that sets its efficiency.

    A fused kernel never writes the (B*H, Lq, Lk) score matrix: its bytes are what the trace counts,
    q, k, v, o and the logsumexp forward; dO, q, k, v, o, logsumexp read and dq, dk, dv written
    backward. FLOPs are the trace's (FlopCounterMode's 4*B*Lq*Lk*D forward, 2.5x backward) times
    the fraction of key blocks a causal kernel computes, (n + 1) / (2n) for n blocks of
    FLASH_BLOCK. No public table times these kernels, so the efficiency is borrowed: the kernel
    model's efficiency for a compute-bound GEMM of the same FLOPs (a square one, M = N = K, its
    bytes far below the score matrix's), times FUSED_ATTENTION_FRACTION of the phase. fp32 (and
    tf32-labelled) inputs run the memory-efficient kernel, whose fp32 products on Ampere and later
    are three TF32 products each (CUTLASS's OpMultiplyAddFastF32): a TF32 GEMM of three times the
    FLOPs there, an fp32 SIMT GEMM before.

    Columns: flops (causal-adjusted), bytes, stand_dtype and stand_flops (the square GEMM's dtype
    and FLOPs), fraction.
    """
    from chronos_core.catalog.devices import Devices

    att = (ops["family"] == "attention").to_numpy()
    out = pd.DataFrame(index=ops.index, columns=["flops", "bytes", "stand_flops", "fraction"], dtype=float)
    out["stand_dtype"] = None
    if not att.any():
        return out
    a = ops.loc[att]
    causal = a["aten"].astype(str).str.endswith("[causal]").to_numpy()
    blocks = np.ceil(np.maximum(a["N"].fillna(1).to_numpy(float), 1.0) / FLASH_BLOCK)
    flops = a["flops"].to_numpy(float) * np.where(causal, (blocks + 1) / (2 * blocks), 1.0)
    dtype = _dtype(a["dtype"]).to_numpy()
    wide = np.isin(dtype, ("fp32", "tf32"))
    fast_f32 = Devices.get(device).peak_tf32_tensor_tflops > 0
    out.loc[att, "flops"] = flops
    out.loc[att, "bytes"] = a["bytes"].to_numpy(float)
    out.loc[att, "stand_dtype"] = np.where(wide, "tf32" if fast_f32 else "fp32", dtype)
    out.loc[att, "stand_flops"] = flops * np.where(wide & fast_f32, 3.0, 1.0)
    phase = a["phase"].astype(str).to_numpy()
    out.loc[att, "fraction"] = np.where(
        phase == "backward", FUSED_ATTENTION_FRACTION["backward"], FUSED_ATTENTION_FRACTION["forward"]
    )
    return out


def _dtype(series: pd.Series) -> pd.Series:
    return series.map(_OPGRAPH_DTYPE).fillna("fp32")


def kernel_rows(ops: pd.DataFrame, device: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Canonical kernel rows standing for each op, and the factor that scales a kernel's time
    (above its launch floor) to the op's work: op FLOPs or bytes over the stand-in kernel's."""
    rows, scale, _ = _kernel_rows(ops, device)
    return rows, scale


def _kernel_rows(ops: pd.DataFrame, device: str) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """`kernel_rows` and the stand-in kernels' roofline features."""
    rows = pd.DataFrame({c: np.nan for c in KERNEL_COLUMNS}, index=ops.index)
    rows["device"] = device
    rows["dtype"] = _dtype(ops["dtype"]).to_numpy()
    fam = ops["family"].to_numpy()
    rows["family"] = "elementwise"
    rows["op"] = "addu"
    gemm = fam == "gemm"
    rows.loc[gemm, "family"] = "gemm"
    rows.loc[gemm, ["B", "M", "N", "K"]] = ops.loc[gemm, ["B", "M", "N", "K"]].fillna(1).to_numpy()
    rows.loc[gemm, "op"] = np.where(ops.loc[gemm, "B"].fillna(1) > 1, "bmm", "linear")
    # fused attention: a square GEMM of the same FLOPs sets its efficiency (`fused_attention`)
    attention = fam == "attention"
    fused = fused_attention(ops, device)
    if attention.any():
        side = np.maximum(np.round(np.cbrt(fused.loc[attention, "stand_flops"].to_numpy(float) / 2)), 1.0)
        rows.loc[attention, ["family", "op", "B"]] = ["gemm", "linear", 1]
        for col in ("M", "N", "K"):
            rows.loc[attention, col] = side
        rows.loc[attention, "dtype"] = fused.loc[attention, "stand_dtype"].to_numpy()
    conv = fam == "conv"
    rows.loc[conv, ["family", "op"]] = ["conv", "conv"]
    if conv.any():
        c = ops.loc[conv]
        groups = c["groups"].fillna(1).to_numpy(float)
        cin = np.maximum(c["in_channels"].to_numpy(float) / groups, 1)  # FLOPs-equivalent dense conv
        k, size = c["kernel_size"].to_numpy(float), c["input_size"].to_numpy(float)
        stride, pad = c["stride"].fillna(1).to_numpy(float), c["padding"].fillna(0).to_numpy(float)
        out = np.floor((size + 2 * pad - k) / stride) + 1
        per_sample = 2 * c["out_channels"].to_numpy(float) * out**2 * cin * k**2
        rows.loc[conv, "B"] = np.maximum(np.round(c["flops"].to_numpy(float) / np.maximum(per_sample, 1)), 1)
        rows.loc[conv, "in_channels"] = cin
        for col in ("out_channels", "kernel_size", "input_size", "stride", "padding"):
            rows.loc[conv, col] = c[col].to_numpy()
    vector = np.isin(fam, ("norm", "softmax"))
    rows.loc[vector, "family"] = np.where(fam[vector] == "norm", "ln", "softmax")
    rows.loc[vector, "op"] = rows.loc[vector, "family"]
    rows.loc[vector, "B"] = ops.loc[vector, "rows"].to_numpy()
    rows.loc[vector, "H"] = ops.loc[vector, "cols"].to_numpy()
    # everything else is a pass over memory: a stand-in elementwise kernel moving the op's bytes
    rest = ~(gemm | attention | conv | vector)
    elt = ops["dtype"].map({"fp16": 2, "bf16": 2}).fillna(4).to_numpy(float)
    elems = np.maximum(ops["elems"].fillna(1).to_numpy(float), 1.0)
    binary = ops["bytes"].to_numpy(float) >= 2.5 * elems * elt
    rows.loc[rest & binary, "op"] = "add"
    equiv = np.maximum(ops["bytes"].fillna(0).to_numpy(float) / (elt * np.where(binary, 3.0, 2.0)), 1.0)
    h = np.minimum(equiv, _ELEMENTWISE_H)
    rows.loc[rest, "H"] = h[rest]
    rows.loc[rest, "B"] = np.ceil(equiv / h)[rest]
    feats = kernel_features(rows.fillna({"stride": 1, "padding": 0}))
    by_flops = np.isin(fam, ("gemm", "conv"))
    work_op = np.where(by_flops, ops["flops"].to_numpy(float), ops["bytes"].to_numpy(float))
    work_op = np.where(attention, fused["stand_flops"].to_numpy(float), work_op)
    work_kernel = np.where(by_flops | attention, feats["flops"].to_numpy(), feats["bytes"].to_numpy())
    scale = np.where(work_kernel > 0, work_op / np.maximum(work_kernel, 1e-9), 1.0)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    scale = np.where(attention, scale / fused["fraction"].fillna(1.0).to_numpy(float), scale)
    return rows.fillna({"stride": 1, "padding": 0}), scale, feats


def predict_ops(
    ops: pd.DataFrame, device: str, model: KernelModel, host: HostOverhead = DEFAULT_HOST
) -> pd.DataFrame:
    """Each op's predicted GPU time inside a step (ms, all `count` calls) and its bound."""
    rows, scale, feats = _kernel_rows(ops, device)  # roofline times do not depend on the floor
    t_kernel = model.predict(rows)
    floor = model.floor_of(device)
    body = np.maximum(t_kernel - floor, 0.0) * scale
    compute_bound = feats["t_flop_ms"].to_numpy() >= feats["t_mem_ms"].to_numpy()
    attention = (ops["family"] == "attention").to_numpy()
    if attention.any():  # a fused kernel's own roofline: its FLOPs at the tensor peak, its bytes
        fused = fused_attention(ops.loc[attention], device)
        spec = device_spec(device)
        peak = np.array([peak_flops(spec, d, "gemm") for d in _dtype(ops.loc[attention, "dtype"])])
        t_flop = fused["flops"].to_numpy(float) / peak * 1e3
        t_mem = fused["bytes"].to_numpy(float) / (spec.memory_bandwidth_gbs * 1e9) * 1e3
        body[attention] = np.maximum(body[attention], t_mem)
        compute_bound[attention] = t_flop >= t_mem
    launches = ops["tensors"].fillna(1).to_numpy(float)
    launches = np.where(
        ops["family"].to_numpy() == "elementwise", np.ceil(launches / 32), 1.0
    )  # foreach chunks
    count = ops["count"].fillna(1).to_numpy(float)
    out = ops.copy()
    out["pred_ms"] = (body + host.gap_ms * launches) * count
    launch_bound = body < host.dispatch_ms
    out["bound"] = np.where(launch_bound, "launch", np.where(compute_bound, "compute", "memory"))
    return out


def predict_step(
    ops: pd.DataFrame, device: str, model: KernelModel, host: HostOverhead = DEFAULT_HOST
) -> dict[str, float]:
    """Forward, backward, optimizer and overhead ms of one step, and the step total."""
    return step_totals(predict_ops(ops, device, model, host), host, serial_host(device))


def serial_host(device: str) -> bool:
    """Whether the host's per-op work adds to the kernels' time instead of overlapping it: on a CPU
    eager PyTorch dispatches and runs each op on the same cores, one after the other."""
    return device_spec(device).kind == "cpu"


def _overhead(gpu_ms: Any, kernels: Any, host: HostOverhead, serial: bool) -> Any:
    if serial:
        return kernels * host.dispatch_ms + host.fixed_ms
    return np.maximum(kernels * host.dispatch_ms - gpu_ms, 0.0) + host.fixed_ms


def step_totals(
    priced: pd.DataFrame, host: HostOverhead = DEFAULT_HOST, serial: bool = False
) -> dict[str, float]:
    """A priced step's parts: device time per phase, and the host's share: where it is the longer
    (a GPU, running ahead of the host), or all of it (`serial`, a CPU)."""
    return totals_by_step(priced, np.zeros(len(priced), dtype=int), host, serial).iloc[0].to_dict()


_PHASES = ("forward", "backward", "optimizer")


def totals_by_step(
    priced: pd.DataFrame, steps: np.ndarray, host: HostOverhead = DEFAULT_HOST, serial: bool = False
) -> pd.DataFrame:
    """`step_totals` of every step at once: one row per value of `steps` (each op's step)."""
    per_phase = priced.groupby([steps, priced["phase"].to_numpy()])["pred_ms"].sum().unstack(fill_value=0.0)
    gpu_ms = priced.groupby(steps)["pred_ms"].sum()
    kernels = priced["count"].fillna(1).groupby(steps).sum().astype(float)
    overhead = _overhead(gpu_ms, kernels, host, serial)
    out = pd.DataFrame(index=gpu_ms.index)
    for phase in _PHASES:
        out[f"pred_{phase}_ms"] = per_phase[phase] if phase in per_phase else 0.0
    out["pred_overhead_ms"] = overhead
    out["pred_step_ms"] = gpu_ms + overhead
    out["kernels"] = kernels
    return out.astype(float)


def predict_steps(
    traced: list[tuple[pd.DataFrame, str]], model: KernelModel, host: HostOverhead = DEFAULT_HOST
) -> list[dict[str, float]]:
    """Many steps at once: (ops, device) pairs priced in one pass per device, with 80% intervals."""
    if not traced:
        return []
    graphs: dict[int, int] = {}  # a graph shared by several steps (one config, many GPUs) is read once
    frames = []
    for ops, _ in traced:
        if id(ops) not in graphs:
            graphs[id(ops)] = len(frames)
            frames.append(ops)
    sizes = np.array([len(f) for f in frames])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    graph_of = np.array([graphs[id(ops)] for ops, _ in traced], dtype=int)
    allops = pd.concat(frames, ignore_index=True)
    devices = np.array([str(device) for _, device in traced], dtype=object)
    # steps of one model at other batch sizes, or on other GPUs, share most of their ops: each distinct
    # op (all columns but its count) is priced once per device, and its time scales with the count
    keys = [c for c in allops.columns if c != "count"]
    codes = allops.groupby(keys, dropna=False, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(allops))).groupby(codes).first().to_numpy()
    unit = allops.iloc[first][keys].reset_index(drop=True).assign(count=1.0)
    count = allops["count"].to_numpy()
    phase = allops["phase"].to_numpy()
    out: dict[int, dict[str, float]] = {}
    q10, q90 = step_interval()
    for device in dict.fromkeys(devices):
        step_ids = np.flatnonzero(devices == device)
        g = graph_of[step_ids]
        rows = np.concatenate([np.arange(starts[j], starts[j] + sizes[j]) for j in g])
        steps = np.repeat(step_ids, sizes[g])
        used = np.unique(codes[rows])
        unit_ms = np.zeros(len(unit))
        unit_ms[used] = predict_ops(unit.iloc[used].reset_index(drop=True), device, model, host)["pred_ms"]
        part_count = count[rows]
        priced = pd.DataFrame(
            {
                "phase": phase[rows],
                "count": part_count,
                "pred_ms": unit_ms[codes[rows]] * np.nan_to_num(part_count.astype(float), nan=1.0),
            }
        )
        totals = totals_by_step(priced, steps, host, serial_host(device))
        totals["pred_step_ms_lo"] = totals["pred_step_ms"] * math.exp(q10)
        totals["pred_step_ms_hi"] = totals["pred_step_ms"] * math.exp(q90)
        out.update({int(i): row for i, row in totals.to_dict(orient="index").items()})
    return [out[i] for i in range(len(traced))]


def top_ops(priced: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The step's most expensive operators by predicted time, with their bound."""
    cols = ["phase", "aten", "family", "B", "M", "N", "K", "elems", "dtype", "count", "pred_ms", "bound"]
    keys = ["phase", "aten", "family", "dtype", "bound"]
    grouped = priced.groupby(keys, dropna=False, as_index=False).agg(
        count=("count", "sum"), pred_ms=("pred_ms", "sum"), B=("B", "first"), M=("M", "first"),
        N=("N", "first"), K=("K", "first"), elems=("elems", "first"),
    )  # fmt: skip
    total = priced["pred_ms"].sum()
    top = grouped.sort_values("pred_ms", ascending=False).head(n)[cols].reset_index(drop=True)
    top["share"] = top["pred_ms"] / total if total > 0 else np.nan
    return top


# 80% interval of a step prediction: log-ratio quantiles of measured over predicted steps on data the
# fit never saw (notebook 08 writes them; `step_interval()` reads them).
INTERVAL_FILE = Path(__file__).resolve().parents[2] / "results" / "kernels" / "step_interval.csv"


@functools.lru_cache(maxsize=1)
def step_interval() -> tuple[float, float]:
    """(q10, q90) of log(measured / predicted) step time, held-out; (-0.5, 0.5) until measured."""
    if INTERVAL_FILE.is_file():
        frame = pd.read_csv(INTERVAL_FILE)
        return float(frame["q10"].iloc[0]), float(frame["q90"].iloc[0])
    return -0.5, 0.5


def trace_config(
    *,
    model: str,
    gpu: str,
    batch_size: int,
    seq_len: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
    mode: str = "train",
    attn_implementation: str = "sdpa",
    dataset: str | None = None,
) -> tuple[pd.DataFrame, str]:
    """The traced op graph of a configuration (cached) and the catalog name of its GPU."""
    from chronos_core.catalog.devices import Devices
    from chronos_core.features.opgraph import trace_step

    device = Devices.get(gpu).name
    ops = trace_step(
        model,
        batch_size=batch_size,
        seq_len=seq_len,
        input_shape=input_shape,
        precision=precision,
        optimizer=optimizer,
        mode=mode,
        attn_implementation=attn_implementation,
        dataset=dataset,
    )
    return ops, device


def predict_step_config(
    *, kernel_model: KernelModel | None = None, host: HostOverhead = DEFAULT_HOST, **config: object
) -> dict[str, float]:
    """Trace the step of a configuration (`trace_config`'s arguments) and predict it on its GPU,
    with an 80% interval."""
    if kernel_model is None:
        from chronos_core.predict.kernel_default import default_kernel_model

        kernel_model = default_kernel_model()
    return predict_steps([trace_config(**config)], kernel_model, host)[0]
