"""Training on the GPUs of one node: data parallel (DDP), tensor parallel (Megatron-LM), pipeline
parallel (GPipe).

Data parallel: each GPU runs the traced step at its share of the batch, then PyTorch DDP
all-reduces the gradients with NCCL's ring algorithm.
The ring moves 2 (n - 1) / n of the gradient bytes in and out of every GPU, at the rate of its
link to its peers (`link_gbs`: NVLink or PCIe, per direction, from the catalog's interface and
architecture) times NCCL_BUS_EFFICIENCY. DDP starts each bucket of gradients (25 MB) as soon as
backward has produced it, so the all-reduce hides behind the backward pass; what is left on the
critical path is the part that outlasts backward, and never less than the last bucket's own
reduction. Tensor parallel (`tensor_parallel_graph`): each GPU runs the step with every GEMM split
n ways and the residual stream's operators repeated, then all-reduces the activations twice per
layer each way. Pipeline parallel (`pipeline_parallel`): equal stages, (m + n - 1) stage times per
pass, activations sent between neighbours. All constants are published figures, fixed before any
check: nothing here is fitted.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from chronos_core.catalog.devices import Devices, DeviceSpec
from chronos_core.errors import ChronosError

# Per-direction GPU-to-GPU bandwidth (GB/s) of each NVLink generation, by architecture: P100
# 4 links x 20, V100 6 x 25, A100 12 x 25, H100/H200 18 x 25 (NVLink 4), B200 NVLink 5 (1.8 TB/s
# both ways); NVIDIA's datasheets.
NVLINK_GBS = {"Pascal": 80.0, "Volta": 150.0, "Ampere": 300.0, "Hopper": 450.0, "Blackwell": 900.0}
# PCIe x16, per direction (GB/s); an x8 card gets half.
PCIE_GBS = {"3.0": 16.0, "4.0": 32.0, "5.0": 64.0}
# NCCL's all-reduce bus bandwidth as a share of the link rate (nccl-tests on DGX/HGX nodes report
# about 230 of 300 GB/s on A100 NVLink; PCIe rings reach a similar share of the slot).
NCCL_BUS_EFFICIENCY = 0.75
NCCL_STEP_LATENCY_MS = 0.01  # per ring step (2 (n - 1) of them): kernel launch and flag round trip
DDP_BUCKET_BYTES = 25 * 2**20  # torch.nn.parallel.DistributedDataParallel's bucket_cap_mb default
GRAD_BYTES = 4  # gradients of fp32 parameters (autocast keeps the weights in fp32)
MAX_GPUS = 8  # one node: its GPUs share NVLink or the PCIe switch; across nodes the network decides


def link_gbs(device: str | DeviceSpec) -> float:
    """Per-direction bandwidth (GB/s) from one GPU to its peers in the same node."""
    spec = device if isinstance(device, DeviceSpec) else Devices.get(str(device))
    interface = spec.interface or ""
    if "NVLink" in interface:  # SXM boards, and Grace superchips in NVLink domains
        rate = NVLINK_GBS.get(spec.architecture)
        if rate is not None:
            return rate
    for gen, rate in PCIE_GBS.items():
        if f"PCIe {gen}" in interface:
            return rate / 2 if "x8" in interface else rate
    raise ChronosError(
        f"the GPU-to-GPU bandwidth of {spec.name} is not known (interface {interface or 'blank'!r}); "
        f"known: NVLink on {', '.join(NVLINK_GBS)} GPUs, PCIe {', '.join(PCIE_GBS)}"
    )


def allreduce_ms(nbytes: float, n: int, device: str | DeviceSpec) -> float:
    """Time (ms) of one ring all-reduce of `nbytes` over `n` GPUs of this kind."""
    if n <= 1 or nbytes <= 0:
        return 0.0
    rate = link_gbs(device) * NCCL_BUS_EFFICIENCY * 1e9
    return 2 * (n - 1) / n * nbytes / rate * 1e3 + 2 * (n - 1) * NCCL_STEP_LATENCY_MS


def data_parallel_ms(
    parameters: int, n: int, device: str | DeviceSpec, backward_ms: float
) -> dict[str, float]:
    """The gradient all-reduce of a DDP step: its whole time and the part backward cannot hide."""
    grad_bytes = float(parameters) * GRAD_BYTES
    total = allreduce_ms(grad_bytes, n, device)
    last = allreduce_ms(min(grad_bytes, DDP_BUCKET_BYTES), n, device)
    return {"allreduce_ms": total, "exposed_ms": max(total - max(backward_ms, 0.0), last) if n > 1 else 0.0}


def check_gpus(num_gpus: object, batch_size: int, scheme: str = "dp") -> int:
    """The number of GPUs as an int (ChronosError naming a bad value): 1..MAX_GPUS, dividing the
    batch under data parallelism (tensor and pipeline parallel GPUs all see the whole batch)."""
    try:
        number = float(num_gpus)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ChronosError(f"num_gpus {num_gpus!r} is not a number; accepted: 1 to {MAX_GPUS}") from None
    if not math.isfinite(number) or not number.is_integer() or not 1 <= number <= MAX_GPUS:
        raise ChronosError(f"num_gpus {num_gpus!r} is not supported; accepted: 1 to {MAX_GPUS} (one node)")
    n = int(number)
    if scheme == "dp" and batch_size % n:
        raise ChronosError(
            f"batch_size {batch_size} does not split over num_gpus {n}: it is the global batch, "
            f"each GPU runs batch_size / num_gpus"
        )
    return n


# ---------------------------------------------------------------------------- tensor and pipeline parallel
SCHEMES = ("dp", "tp", "pp")  # data (DDP), tensor (Megatron-LM), pipeline (GPipe)
ACTIVATION_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2}


def check_scheme(value: object) -> str:
    """The parallel scheme's name (blank: data parallel); ChronosError naming a bad one."""
    text = "" if value is None else str(value).strip().lower()
    if text in ("", "nan", "none"):
        return "dp"
    if text not in SCHEMES:
        raise ChronosError(
            f"parallel {value!r} is not supported; accepted: "
            "dp (data), tp (tensor, Megatron-LM), pp (pipeline, GPipe)"
        )
    return text


def check_microbatches(value: object, batch_size: int) -> int:
    """GPipe's micro-batch count (blank: 1, GPipe's default `chunks`), dividing the global batch."""
    if value is None:
        return 1
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ChronosError(
            f"microbatches {value!r} is not a number; accepted: a divisor of the batch"
        ) from None
    if not math.isfinite(number) or not number.is_integer() or number < 1 or batch_size % int(number):
        raise ChronosError(
            f"microbatches {value!r} is not supported; "
            f"accepted: a whole number that divides batch_size {batch_size}"
        )
    return int(number)


def check_plan(
    parallel: object, num_gpus: object, microbatches: object, batch_size: int, *, pp_name: str, where: str
) -> tuple[str, int, int]:
    """(scheme, GPUs, micro-batches) of a run, each checked with a one-line ChronosError. A None
    scheme or micro-batch count is the default (data parallel, one micro-batch); micro-batches belong
    to pipeline parallel only (`pp_name` and `where` word that error as its caller's input does, e.g.
    "parallel pp" and "this row")."""
    scheme = check_scheme(parallel)
    n = check_gpus(num_gpus, batch_size, scheme)
    if microbatches is not None and scheme != "pp":
        chunks = microbatches
        shown = int(chunks) if isinstance(chunks, float) and chunks.is_integer() else chunks
        raise ChronosError(f"microbatches {shown!r} applies to {pp_name} only ({where}: {scheme})")
    return scheme, n, check_microbatches(microbatches, batch_size) if scheme == "pp" else 1


def _residual_stream(ops: pd.DataFrame) -> int | None:
    """Elements of a transformer's residual stream (tokens x hidden: its token embedding's output),
    None for a trace without a transformer's shape or a token embedding."""
    embed = ops[(ops["phase"] == "forward") & (ops["aten"] == "aten.embedding.default")]
    if not ops.attrs.get("hidden_size") or embed.empty:
        return None
    return int(embed["elems"].iloc[0])


def _tp_shape(ops: pd.DataFrame, n: int) -> tuple[int, int, int, int]:
    """(hidden, layers, tokens, activation bytes) of a traced transformer; ChronosError if not one."""
    attrs = ops.attrs
    hidden, layers, heads = attrs.get("hidden_size"), attrs.get("num_layers"), attrs.get("num_heads")
    if not (hidden and layers and heads):
        raise ChronosError(
            "tensor parallel is modelled for Hugging Face transformers (hf:NAME or a config.json); "
            "use dp or pp for other models"
        )
    if heads % n:
        raise ChronosError(f"tensor parallel over {n} GPUs needs the {heads} attention heads to split evenly")
    residual = _residual_stream(ops)
    if residual is None:
        raise ChronosError("tensor parallel needs the model's token embedding (none was traced)")
    tokens = residual // int(hidden)
    gemm = ops[(ops["phase"] == "forward") & (ops["family"] == "gemm")]
    dtype = gemm["dtype"].mode().iloc[0] if len(gemm) else "fp32"
    return int(hidden), int(layers), tokens, ACTIVATION_BYTES.get(str(dtype), 4)


def tensor_parallel_graph(ops: pd.DataFrame, n: int) -> pd.DataFrame:
    """What each of n GPUs runs under Megatron-LM's tensor parallelism of a transformer step.

    Every GEMM is split n ways: attention's batched GEMMs and fused kernels by head (their B),
    the others along their largest dimension that is not the token count (column-parallel QKV and
    MLP-in, row-parallel output and MLP-out, the vocabulary-parallel embedding and LM head). Other operators
    are split where they act on split tensors (attention scores, MLP activations, logits: more
    elements than the residual stream) and repeated on every GPU where they act on the residual
    stream (layer norms, residual adds, their dropouts). The optimizer updates 1/n of the
    parameters. attrs gain `tp_allreduces` and `tp_allreduce_bytes` for `tensor_parallel_ms`.
    """
    hidden, layers, tokens, act_bytes = _tp_shape(ops, n)
    out = ops.copy()
    ratio = np.ones(len(out))
    gemm = (out["family"] == "gemm").to_numpy()
    attention = (out["family"] == "attention").to_numpy()  # fused (sdpa) kernels: B = batch x heads
    batched = out["aten"].str.contains("bmm").to_numpy() | attention
    dims = out[["M", "N", "K"]].to_numpy(dtype=float)
    for i in np.flatnonzero(gemm | attention):
        if batched[i] and out["B"].iat[i] >= n:
            new = math.ceil(out["B"].iat[i] / n)
            ratio[i] = new / out["B"].iat[i]
            out.iat[i, out.columns.get_loc("B")] = new
            continue
        free = [j for j in range(3) if np.isfinite(dims[i, j]) and dims[i, j] != tokens]
        if not free:
            free = [j for j in range(3) if np.isfinite(dims[i, j])]
        if not free:
            continue
        j = max(free, key=lambda c: dims[i, c])
        new = math.ceil(dims[i, j] / n)
        ratio[i] = new / dims[i, j]
        out.iat[i, out.columns.get_loc("MNK"[j])] = new
    elems = out["elems"].to_numpy(dtype=float)
    split = ~gemm & ~attention & (elems > tokens * hidden) & (out["phase"] != "optimizer").to_numpy()
    split |= (out["phase"] == "optimizer").to_numpy()
    ratio[split] = 1.0 / n
    traffic = _gemm_traffic(ops)
    new_traffic = _gemm_traffic(out)
    for col in ("elems", "flops", "bytes"):
        scaled = out[col].to_numpy(dtype=float) * ratio
        if col == "elems":  # a GEMM's output: B x M x N as now split
            scaled[gemm] = (out["B"].fillna(1) * out["M"] * out["N"]).to_numpy(dtype=float)[gemm]
        elif col == "bytes":  # operands and output, as now split
            scaled[gemm] = out[col].to_numpy(dtype=float)[gemm] * (new_traffic / traffic)[gemm]
        out[col] = np.ceil(scaled).astype(ops[col].dtype)
    rows = np.isfinite(out["rows"].to_numpy(dtype=float)) & split & (out["family"] == "softmax").to_numpy()
    out.loc[rows, "rows"] = np.ceil(out.loc[rows, "rows"] / n)
    train = (ops["phase"] == "backward").any()
    out.attrs = dict(ops.attrs)
    out.attrs["parameters"] = math.ceil(ops.attrs.get("parameters", 0) / n)
    # two all-reduces of the residual stream per layer forward (after the row-parallel attention
    # output and MLP-out), two backward (the column-parallel QKV and MLP-in input gradients), and
    # the vocabulary-parallel embedding's forward and LM head's backward
    out.attrs["tp_allreduces"] = (4 * layers + 2) if train else (2 * layers + 1)
    out.attrs["tp_allreduce_bytes"] = tokens * hidden * act_bytes
    return out


def _gemm_traffic(ops: pd.DataFrame) -> np.ndarray:
    b, m, nn, k = (ops[c].to_numpy(dtype=float) for c in ("B", "M", "N", "K"))
    b = np.nan_to_num(b, nan=1.0)
    traffic = b * (m * k + k * nn + m * nn)
    return np.where(np.isfinite(traffic) & (traffic > 0), traffic, 1.0)


def tensor_parallel_ms(ops: pd.DataFrame, n: int, device: str | DeviceSpec) -> float:
    """The activation all-reduces of a tensor-parallel step: on the critical path, none hidden."""
    count = ops.attrs.get("tp_allreduces", 0)
    return count * allreduce_ms(ops.attrs.get("tp_allreduce_bytes", 0), n, device) if n > 1 else 0.0


def boundary_bytes(ops: pd.DataFrame) -> float:
    """Bytes a pipeline stage sends its neighbour per micro-batch: a transformer's residual stream
    (tokens x hidden), otherwise a typical forward activation (the median forward operator's output)."""
    fwd = ops[ops["phase"] == "forward"]
    if fwd.empty:
        return 0.0
    act = ACTIVATION_BYTES.get(str(fwd["dtype"].mode().iloc[0]), 4)
    residual = _residual_stream(ops)
    return float(residual if residual is not None else fwd["elems"].median()) * act


def p2p_ms(nbytes: float, device: str | DeviceSpec) -> float:
    """One point-to-point send between neighbouring GPUs (ms)."""
    return nbytes / (link_gbs(device) * NCCL_BUS_EFFICIENCY * 1e9) * 1e3 + NCCL_STEP_LATENCY_MS


def pipeline_parallel(
    parts: dict[str, float], n: int, microbatches: int, boundary_bytes: float, device: str | DeviceSpec
) -> dict[str, float]:
    """GPipe over n GPUs from one micro-batch's single-GPU step (`parts`: predict_steps' columns).

    The model is cut into n stages of equal time; each micro-batch's forward passes through all
    stages, then the backwards run in reverse, so the step takes (m + n - 1) stage times for the
    forward and as many for the backward (the bubble), plus 2 (n - 1) activation (and gradient)
    sends between neighbours on the critical path. Each stage updates its own 1/n of the weights.
    The host's overhead is that of one micro-batch's step.
    """
    m = microbatches
    scale = (m + n - 1) / n
    out = dict(parts)
    out["pred_forward_ms"] = parts["pred_forward_ms"] * scale
    out["pred_backward_ms"] = parts["pred_backward_ms"] * scale
    out["pred_optimizer_ms"] = parts["pred_optimizer_ms"] / n
    sends = 2 * (n - 1) if parts["pred_backward_ms"] > 0 else n - 1
    out["pred_comm_ms"] = sends * p2p_ms(boundary_bytes, device) if n > 1 else 0.0
    total = sum(
        out[k] for k in ("pred_forward_ms", "pred_backward_ms", "pred_optimizer_ms", "pred_overhead_ms")
    )
    total += out["pred_comm_ms"]
    for col in ("pred_step_ms_lo", "pred_step_ms_hi"):
        out[col] = parts[col] / parts["pred_step_ms"] * total if parts["pred_step_ms"] > 0 else total
    out["pred_step_ms"] = total
    return out


# ---------------------------------------------------------------------------------------------- one plan
def per_gpu_batch(batch_size: int, scheme: str, n: int, microbatches: int = 1) -> int:
    """The batch of the step each GPU's graph is traced at: the global batch / n (dp), the whole
    batch (tp: every GPU sees it), one micro-batch (pp)."""
    if scheme == "dp":
        return batch_size // n
    if scheme == "pp":
        return batch_size // microbatches
    return batch_size


def per_gpu_graph(ops: pd.DataFrame, scheme: str, n: int) -> pd.DataFrame:
    """What each GPU runs of a step traced at `per_gpu_batch`: its tensor-parallel shard, or the step."""
    return tensor_parallel_graph(ops, n) if scheme == "tp" and n > 1 else ops


def on_gpus(
    parts: dict[str, float],
    ops: pd.DataFrame,
    scheme: str,
    n: int,
    microbatches: int,
    device: str | DeviceSpec,
) -> dict[str, float]:
    """The step on n GPUs from the single-GPU prediction (`parts`: predict_steps' columns) of the graph
    each GPU runs (`per_gpu_graph` at `per_gpu_batch`), with `pred_comm_ms`: GPipe's schedule and
    sends (pp), the activation all-reduces (tp), or the gradient all-reduce backward cannot hide (dp)."""
    if scheme == "pp":
        return pipeline_parallel(parts, n, microbatches, boundary_bytes(ops), device)
    if scheme == "tp":
        comm = tensor_parallel_ms(ops, n, device)
    else:
        comm = data_parallel_ms(ops.attrs.get("parameters", 0), n, device, parts["pred_backward_ms"])[
            "exposed_ms"
        ]
    out = dict(parts)
    out["pred_comm_ms"] = comm
    for col in ("pred_step_ms", "pred_step_ms_lo", "pred_step_ms_hi"):
        out[col] = parts[col] + comm
    return out
