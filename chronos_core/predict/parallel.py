"""Data-parallel training on the GPUs of one node: each GPU runs the traced step at its share of the
batch, then PyTorch DDP all-reduces the gradients with NCCL's ring algorithm.

The ring moves 2 (n - 1) / n of the gradient bytes in and out of every GPU, at the rate of its
link to its peers (`link_gbs`: NVLink or PCIe, per direction, from the catalog's interface and
architecture) times NCCL_BUS_EFFICIENCY. DDP starts each bucket of gradients (25 MB) as soon as
backward has produced it, so the all-reduce hides behind the backward pass; what is left on the
critical path is the part that outlasts backward, and never less than the last bucket's own
reduction. All constants are published figures, fixed before any check: nothing here is fitted.
"""

from __future__ import annotations

import math

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


def check_gpus(num_gpus: object, batch_size: int) -> int:
    """The number of GPUs as an int (ChronosError naming a bad value): 1..MAX_GPUS, dividing the batch."""
    try:
        number = float(num_gpus)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ChronosError(f"num_gpus {num_gpus!r} is not a number; accepted: 1 to {MAX_GPUS}") from None
    if not math.isfinite(number) or not number.is_integer() or not 1 <= number <= MAX_GPUS:
        raise ChronosError(f"num_gpus {num_gpus!r} is not supported; accepted: 1 to {MAX_GPUS} (one node)")
    n = int(number)
    if batch_size % n:
        raise ChronosError(
            f"batch_size {batch_size} does not split over num_gpus {n}: it is the global batch, "
            f"each GPU runs batch_size / num_gpus"
        )
    return n
