"""`chronos calibrate`: time the kernels of a training step on the device at hand -> a device profile.

The kernels are the ones a training step is made of, named as NeuSight names them: GEMMs (`linear`,
`bmm`) and 2-D convolutions (`conv`) of several shapes and precisions, large elementwise ops (`add`,
`addu`) for bandwidth, `gelu`/`relu`, tiny `add`s for the launch floor, `ln` and `softmax`. Each is
warmed up, then timed over `repeats` blocks of back-to-back calls (CUDA events on a GPU, perf_counter
on the CPU); a row holds the median ms per call. `chronos_core.data.device_profiles` stores and reads
the table.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F

from chronos_core.data.device_profiles import KERNEL_COLUMNS
from chronos_core.errors import ChronosError, unknown_choice
from chronos_core.profiling.environment import (
    capture_environment,
    cpu_model,
    device_spec,
    resolve_device,
    synchronize,
)

SOURCE = "chronos-calibrate"
FAMILIES = {
    "linear": "gemm",
    "bmm": "gemm",
    "add": "elementwise",
    "addu": "elementwise",
    "gelu": "elementwise",
    "relu": "elementwise",
    "ln": "ln",
    "softmax": "softmax",
    "conv": "conv",
}
DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
GEMM_DTYPES = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "fp16", "bf16")}
# tensors read + written per element (ln also reads its H weights and biases)
_TENSORS_MOVED = {"add": 3, "addu": 2, "gelu": 2, "relu": 2, "ln": 2, "softmax": 2}
DEFAULT_REPEATS = 10
QUICK_REPEATS = 5
# per kernel: a timed block lasts at least this long (tiny kernels are looped); all blocks together
# at most roughly KERNEL_BUDGET_S (slow kernels get fewer blocks, never fewer than MIN_REPEATS)
MIN_BLOCK_S = {"cpu": 0.01, "cuda": 0.002}
KERNEL_BUDGET_S = {"cpu": 1.0, "cuda": 0.5}
MIN_REPEATS = 3
MAX_ITERS = 100_000


@dataclass(frozen=True)
class Kernel:
    """One kernel to time: a NeuSight op with its shape (B, M, N, K for GEMMs; B x H for the vector
    ops; for `conv`, NeuSight's square 2-D convolution: batch B, M input and N output channels, a K x K
    kernel over an H x H image, stride 1, padding K // 2)."""

    op: str
    dtype: str
    B: int
    M: int | None = None
    N: int | None = None
    K: int | None = None
    H: int | None = None

    @property
    def family(self) -> str:
        return FAMILIES[self.op]

    @property
    def dims(self) -> tuple[int | None, ...]:
        if self.family == "conv":
            return (self.B, self.M, self.N, self.K, self.H)
        return (self.B, self.M, self.N, self.K) if self.family == "gemm" else (self.B, self.H)

    @property
    def shape(self) -> str:
        return "x".join(str(d) for d in self.dims)

    def work(self) -> tuple[float, str]:
        """FLOPs (GEMMs, convolutions) or bytes moved (the rest) per call, with the unit."""
        if self.family == "gemm":
            return 2.0 * self.B * self.M * self.N * self.K, "FLOP"
        if self.family == "conv":  # the output is H x H (stride 1, padding K // 2, odd K)
            return 2.0 * self.B * self.N * self.H**2 * self.M * self.K**2, "FLOP"
        size = DTYPES[self.dtype].itemsize
        moved = _TENSORS_MOVED[self.op] * self.B * self.H + (2 * self.H if self.op == "ln" else 0)
        return float(moved * size), "B"


def _gemms(
    dtype: str, linear: Sequence[tuple[int, int, int]], bmm: Sequence[tuple[int, ...]]
) -> list[Kernel]:
    return [Kernel("linear", dtype, 1, m, n, k) for m, n, k in linear] + [
        Kernel("bmm", dtype, b, m, n, k) for b, m, n, k in bmm
    ]


def _rows(op: str, shapes: Sequence[tuple[int, int]], dtype: str = "fp32") -> list[Kernel]:
    return [Kernel(op, dtype, b, H=h) for b, h in shapes]


def _convs(shapes: Sequence[tuple[int, int, int, int, int]], dtype: str = "fp32") -> list[Kernel]:
    """(batch, in channels, out channels, kernel size, image size) -> conv kernels."""
    return [Kernel("conv", dtype, b, cin, cout, k, size) for b, cin, cout, k, size in shapes]


# Convolutions of CNN training: CIFAR-scale and ImageNet-scale images, 3x3 and 1x1 kernels
_CPU_CONV = [
    (16, 3, 64, 3, 32), (16, 64, 64, 3, 32), (16, 128, 128, 3, 16), (16, 256, 256, 3, 8),
    (64, 64, 64, 3, 32), (16, 64, 256, 1, 32), (4, 64, 64, 3, 56), (16, 512, 512, 3, 4),
]  # fmt: skip
_CUDA_CONV = [
    (64, 3, 64, 3, 224), (64, 64, 64, 3, 56), (64, 128, 128, 3, 28), (64, 256, 256, 3, 14),
    (64, 512, 512, 3, 7), (64, 64, 256, 1, 56), (64, 256, 64, 1, 56), (64, 1024, 256, 1, 14),
    (128, 3, 64, 3, 32), (128, 64, 64, 3, 32), (128, 128, 128, 3, 16), (128, 256, 256, 3, 8),
    (128, 512, 512, 3, 4), (256, 64, 64, 3, 32), (16, 64, 64, 3, 56), (8, 32, 32, 3, 32),
]  # fmt: skip


# A CUDA calibration: per GEMM dtype 16 linear and 16 bmm shapes (square, skinny, attention-like), and 16
# kernels each of the elementwise, layer norm and softmax groups, from the launch floor to past L2: what
# notebook 08 simulates on held-out GPUs (`kernel_eval.calibration_sample`: 16 per op group and dtype).
_CUDA_LINEAR = [
    (256, 256, 256), (512, 512, 512), (768, 768, 768), (1024, 1024, 1024), (2048, 2048, 2048),
    (4096, 4096, 4096), (8192, 8192, 8192), (64, 8192, 8192), (8192, 1024, 4096), (1024, 1024, 8192),
    (128, 4096, 1024), (4096, 128, 4096), (2048, 8192, 1024), (512, 3072, 768), (4096, 768, 3072),
    (8192, 4096, 1024),
]  # fmt: skip
_CUDA_BMM = [
    (32, 512, 512, 64), (32, 512, 64, 512), (16, 1024, 1024, 1024), (4, 4096, 4096, 4096), (8, 128, 128, 128),
    (64, 256, 256, 64), (64, 256, 64, 256), (12, 1024, 1024, 64), (12, 1024, 64, 1024), (48, 2048, 2048, 64),
    (48, 2048, 64, 2048), (256, 64, 64, 64), (2, 2048, 2048, 2048), (96, 512, 512, 128), (16, 4096, 4096, 64),
    (16, 4096, 64, 4096),
]  # fmt: skip
_CUDA_VECTOR_ROWS = {
    "ln": [(b, h) for b in (512, 2048, 8192, 16384) for h in (768, 1024, 4096, 8192)],
    "softmax": [(b, h) for b in (1024, 4096, 16384, 65536) for h in (128, 512, 1024, 4096)],
}


def _cuda_kernels(quick: bool) -> list[Kernel]:
    every = 3 if quick else 1  # quick: a third of each group
    kernels: list[Kernel] = []
    for dtype in GEMM_DTYPES["cuda"][: 2 if quick else None]:
        kernels += _gemms(dtype, _CUDA_LINEAR[::every], _CUDA_BMM[::every]) + _convs(
            _CUDA_CONV[::every], dtype
        )
    kernels += _rows("add", [(1, 1), (1, 32)])  # the launch floor
    sizes = [(256, 1024), (1024, 1024), (2048, 2048), (4096, 4096), (8192, 8192), (16384, 16384)][::every]
    kernels += _rows("add", sizes) + _rows("addu", sizes)
    kernels += [] if quick else _rows("gelu", [(1024, 1024), (8192, 8192)]) + _rows("relu", [(1024, 1024)])
    for op, shapes in _CUDA_VECTOR_ROWS.items():
        kernels += _rows(op, shapes[::every])
    if not quick:  # mixed-precision training moves half-width activations
        kernels += _rows("add", [(16384, 16384)], "bf16") + _rows("ln", [(8192, 1024)], "bf16")
        kernels += _rows("softmax", [(8192, 1024)], "bf16")
    return kernels


def default_kernels(device: str = "cpu", *, quick: bool = False) -> list[Kernel]:
    """The calibration set for a device kind ('cpu' or 'cuda'): square and skinny GEMMs, bandwidth,
    launch floor, ln, softmax; `quick` keeps a third of it. CPU sizes fit a 2-core CPU in under a
    minute; the CUDA set is `_cuda_kernels`."""
    if str(device).startswith("cuda"):
        return _cuda_kernels(quick)
    square = [(64, 64, 64), (256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048)]
    skinny = [(32, 1024, 1024), (4096, 128, 1024), (1024, 1024, 4096)]
    bmm = [(8, 128, 128, 128), (16, 256, 256, 64), (16, 256, 64, 256), (4, 512, 512, 512)]
    big, medium, tiny = (4096, 4096), (2048, 2048), [(1, 1), (1, 32)]
    cached = [(256, 256), (1024, 1024)]  # in L2, about the size of the last-level cache
    norms = [(512, 768), (2048, 1024), (8192, 1024)]
    softmaxes = [(4096, 128), (2048, 1024), (1024, 4096)]
    if quick:
        square, skinny, bmm = [square[1], square[3]], skinny[:1], bmm[1:2]
        tiny, norms, softmaxes, cached = tiny[:1], norms[1:2], softmaxes[1:2], []
    kernels: list[Kernel] = []
    for dtype in GEMM_DTYPES["cpu"][: 2 if quick else None]:
        if dtype == "bf16":  # oneDNN bf16 on a CPU without AMX: keep it short
            kernels += _gemms(dtype, [s for s in square if s[0] <= 1024] + skinny[:1], bmm[:3])
        else:
            kernels += _gemms(dtype, square + skinny, bmm)
    kernels += _rows("add", [*cached, big]) + _rows("addu", [*cached, big]) + _rows("add", tiny)
    kernels += [] if quick else _rows("gelu", [medium]) + _rows("relu", [medium])
    kernels += _rows("ln", norms) + _rows("softmax", softmaxes)
    kernels += _convs(_CPU_CONV[1:3] if quick else _CPU_CONV)
    return kernels


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ChronosError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_kernel(kernel: Kernel, kind: str) -> None:
    if kernel.op not in FAMILIES:
        raise unknown_choice("kernel op", kernel.op, FAMILIES)
    if kernel.dtype not in DTYPES:
        raise unknown_choice("dtype", kernel.dtype, DTYPES)
    if kind == "cpu" and kernel.dtype == "tf32":
        raise ChronosError("dtype 'tf32' exists on CUDA GPUs only; on the cpu use fp32, fp16 or bf16")
    dims = kernel.dims
    if any(not isinstance(d, int) or d <= 0 for d in dims):
        raise ChronosError(f"kernel {kernel.op} {kernel.dtype} needs positive integer sizes, got {dims}")


@contextlib.contextmanager
def _matmul_precision(dtype: str) -> Iterator[None]:
    """fp32 means TF32 off (full-precision GEMMs and convolutions), tf32 means TF32 on; restored
    afterwards."""
    saved = (
        torch.get_float32_matmul_precision(),
        torch.backends.cuda.matmul.allow_tf32,
        torch.backends.cudnn.allow_tf32,
    )
    tf32 = dtype == "tf32"
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cuda.matmul.allow_tf32 = saved[1]
        torch.backends.cudnn.allow_tf32 = saved[2]


def _make_call(kernel: Kernel, device: str) -> Callable[[], Any]:
    """The kernel as a no-argument call on tensors allocated once on `device`."""
    dt = DTYPES[kernel.dtype]

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device, dtype=dt)

    B, M, N, K, H = kernel.B, kernel.M, kernel.N, kernel.K, kernel.H
    if kernel.op == "linear":
        x, w = randn(M, K), randn(N, K)
        return lambda: F.linear(x, w)
    if kernel.op == "bmm":
        a, b = randn(B, M, K), randn(B, K, N)
        return lambda: torch.bmm(a, b)
    if kernel.op == "conv":
        image, weight = randn(B, M, H, H), randn(N, M, K, K)
        return lambda: F.conv2d(image, weight, padding=K // 2)
    x = randn(B, H)
    if kernel.op == "add":
        y = randn(B, H)
        return lambda: x + y
    if kernel.op == "addu":
        return lambda: x + 1.0
    if kernel.op == "gelu":
        return lambda: F.gelu(x)
    if kernel.op == "relu":
        return lambda: F.relu(x)
    if kernel.op == "ln":
        weight, bias = randn(H), randn(H)
        return lambda: F.layer_norm(x, (H,), weight, bias)
    return lambda: F.softmax(x, dim=-1)


def _block_s(call: Callable[[], Any], device: str, iters: int) -> float:
    """Seconds for `iters` back-to-back calls, the device synchronized around them."""
    if device.startswith("cuda"):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        synchronize(device)
        start.record()
        for _ in range(iters):
            call()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000.0
    synchronize(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        call()
    synchronize(device)
    return time.perf_counter() - t0


def time_kernel(kernel: Kernel, device: str, repeats: int) -> tuple[float, float, int]:
    """Median and std of ms per call over timed blocks, and how many blocks were timed.

    Warm-up grows the block (calls back to back) until it lasts MIN_BLOCK_S, as timeit's autorange
    does; slow kernels then get as many blocks as KERNEL_BUDGET_S allows (at least MIN_REPEATS).
    """
    kind = "cuda" if device.startswith("cuda") else "cpu"
    min_block_s = MIN_BLOCK_S[kind]
    with torch.inference_mode(), _matmul_precision(kernel.dtype):
        call = _make_call(kernel, device)
        _block_s(call, device, 1)  # first call: allocations, kernel selection, lazy init
        iters = 1
        while (elapsed := _block_s(call, device, iters)) < min_block_s and iters < MAX_ITERS:
            grow = math.ceil(1.2 * iters * min_block_s / max(elapsed, 1e-9))
            iters = min(MAX_ITERS, 10 * iters, max(2 * iters, grow))
        blocks = min(repeats, max(MIN_REPEATS, int(KERNEL_BUDGET_S[kind] / max(elapsed, 1e-9))))
        per_call_ms = [1000.0 * _block_s(call, device, iters) / iters for _ in range(blocks)]
    std = statistics.stdev(per_call_ms) if len(per_call_ms) > 1 else 0.0
    return statistics.median(per_call_ms), std, len(per_call_ms)


def _row(kernel: Kernel, device_key: str, device_name: str, timing: tuple[float, float, int]) -> dict:
    nan = float("nan")
    gemm = kernel.family == "gemm"
    row = dict.fromkeys(KERNEL_COLUMNS, nan)
    if kernel.family == "conv":  # NeuSight's conv columns
        row.update(
            in_channels=kernel.M,
            out_channels=kernel.N,
            kernel_size=kernel.K,
            input_size=kernel.H,
            stride=1,
            padding=kernel.K // 2,
        )
    row.update(
        op=kernel.op,
        family=kernel.family,
        B=kernel.B,
        M=kernel.M if gemm else nan,
        N=kernel.N if gemm else nan,
        K=kernel.K if gemm else nan,
        H=kernel.H if kernel.family not in ("gemm", "conv") else nan,
        dtype=kernel.dtype,
        device=device_key,
        device_name=device_name,
        latency_ms=timing[0],
        latency_ms_std=timing[1],
        repeats=timing[2],
        source=SOURCE,
        split="calibration",
    )
    return row


def _load_average() -> float | None:
    """The 1-minute load average (None where the OS has none); it lags by about a minute."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _cpu_busy(seconds: float = 0.5) -> float | None:
    """Share of all CPUs busy over a short sample while this process sleeps (Linux /proc/stat)."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as handle:
            ticks = [int(v) for v in handle.readline().split()[1:9]]  # guest time is inside user
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all

    try:
        idle0, all0 = read()
        time.sleep(seconds)
        idle1, all1 = read()
    except (OSError, ValueError, IndexError):
        return None
    return round(1.0 - (idle1 - idle0) / (all1 - all0), 3) if all1 > all0 else None


def contention_note(frame: pd.DataFrame) -> str | None:
    """A warning when other processes kept the CPU busy as a CPU calibration began (timings read slow)."""
    provenance = frame.attrs.get("provenance", {})
    info = provenance.get("calibration", {})
    busy, load, cpus = info.get("cpu_busy_before"), info.get("load_average_1m_before"), info.get("cpu_count")
    if provenance.get("device") != "cpu":
        return None
    if busy is not None:
        if busy < 0.25:
            return None
        seen = f"{busy:.0%} of the {cpus or '?'} CPUs were busy"
    elif load is not None and load >= max(1.0, 0.5 * (cpus or 1)):
        seen = f"load average {load:.1f} on {cpus or '?'} CPUs"
    else:
        return None
    return (
        f"note: {seen} as calibration began: other processes competed for the cores,"
        " so these CPU timings may read slow; rerun on an idle machine"
    )


def _device_kind(device: str) -> str:
    text = str(device).strip().lower()
    kind = text.partition(":")[0]
    if kind not in ("cpu", "cuda"):
        raise ChronosError(f"Unknown calibration device {device!r}. Known: cpu, cuda, cuda:N")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ChronosError(f"no CUDA device on this machine (torch {torch.__version__}); use --device cpu")
    return kind


def calibrate(
    device: str = "cpu",
    *,
    quick: bool = False,
    repeats: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    kernels: Iterable[Kernel] | None = None,
    command: str | None = None,
) -> pd.DataFrame:
    """Time the calibration kernels on `device` ('cpu', 'cuda', 'cuda:N'): one row per kernel.

    `repeats` timed blocks per kernel (default 10, 5 with `quick`; slow kernels get fewer, at least 3),
    `threads` sets torch's CPU threads for the run, `kernels` replaces the default set. The run's
    provenance (device, libraries, git revision, command, settings) is in `frame.attrs["provenance"]`.
    """
    if repeats is None:
        repeats = QUICK_REPEATS if quick else DEFAULT_REPEATS
    _positive_int("repeats", repeats)
    if threads is not None:
        _positive_int("threads", threads)
    kind = _device_kind(device)
    device = resolve_device(device)
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    todo = list(kernels) if kernels is not None else default_kernels(kind, quick=quick)
    if not todo:
        raise ChronosError("calibrate needs at least one kernel to time")
    for kernel in todo:
        _check_kernel(kernel, kind)
    device_key = str(device_spec(device).get("name", device))
    device_name = torch.cuda.get_device_name(device) if kind == "cuda" else cpu_model()
    saved_threads = torch.get_num_threads()
    load_before = _load_average()
    busy_before = _cpu_busy() if kind == "cpu" else None
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stack.callback(torch.set_num_threads, saved_threads)
        if threads is not None:
            torch.set_num_threads(threads)
        env = capture_environment(device, command=command)
        if kind == "cuda":  # events and the current stream belong to the device being timed
            stack.enter_context(torch.cuda.device(device))
        _block_s(_make_call(Kernel("linear", "fp32", 1, 256, 256, 256), device), device, 3)  # wake up
        rows = []
        from tqdm.auto import tqdm

        bar = tqdm(todo, desc=f"calibrate {device_key}", unit="kernel", file=sys.stderr, disable=not progress)
        for kernel in bar:
            bar.set_postfix_str(f"{kernel.op} {kernel.dtype} {kernel.shape}", refresh=False)
            rows.append(_row(kernel, device_key, device_name, time_kernel(kernel, device, repeats)))
            if kind == "cuda":
                torch.cuda.empty_cache()
    frame = pd.DataFrame(rows, columns=list(KERNEL_COLUMNS))
    frame.attrs["provenance"] = {
        **env.as_dict(),
        "calibration": {
            "quick": quick,
            "repeats": repeats,
            "min_block_s": MIN_BLOCK_S[kind],
            "kernel_budget_s": KERNEL_BUDGET_S[kind],
            "kernels": len(frame),
            "wall_s": round(time.perf_counter() - start, 2),
            "cpu_busy_before": busy_before,
            "load_average_1m_before": load_before,
            "cpu_count": os.cpu_count(),
        },
    }
    return frame


def summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per kernel: op, dtype, shape, latency and the throughput it achieved (GFLOP/s or GB/s)."""
    out = []
    for row in frame.itertuples(index=False):
        if row.family == "gemm":
            kernel = Kernel(row.op, row.dtype, int(row.B), int(row.M), int(row.N), int(row.K))
        elif row.family == "conv":
            dims = (row.in_channels, row.out_channels, row.kernel_size, row.input_size)
            kernel = Kernel(row.op, row.dtype, int(row.B), *(int(d) for d in dims))
        else:
            kernel = Kernel(row.op, row.dtype, int(row.B), H=int(row.H))
        amount, unit = kernel.work()
        rate = amount / (row.latency_ms / 1000.0) / 1e9
        out.append(
            {
                "op": row.op,
                "dtype": row.dtype,
                "shape": kernel.shape,
                "latency_ms": row.latency_ms,
                "achieved": f"{rate:,.1f} {'GFLOP/s' if unit == 'FLOP' else 'GB/s'}",
            }
        )
    return pd.DataFrame(out)
