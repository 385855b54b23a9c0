"""Time one PyTorch training configuration: compute and loader wait per iteration, over repeats.

The loop is the one a user would run: a real `DataLoader` (synthetic tensors of the dataset's
shape, `num_workers` configurable) feeds forward + loss + backward + optimizer step, under
`torch.autocast` for AMP. Warm-up iterations are dropped; on accelerators the device is
synchronized before every clock read. Loader wait (next batch + host-to-device copy) and compute
(zero_grad .. optimizer step) are timed separately; `repeats` consecutive blocks of `iters`
iterations give the spread (std and CV across block means, p10/p50/p90 across iterations).

Every interval is also read on this process's CPU-time clock (`*_cpu_ms`): for a single-threaded
CPU run it equals wall time on an idle core and ignores time the core gave to other processes,
so it is the steadier number on a shared machine. On accelerators only wall time is meaningful.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from chronos_core.errors import ChronosError
from chronos_core.profiling.environment import Environment, capture_environment, resolve_device, synchronize

log = logging.getLogger(__name__)

# Accepted spellings of each precision -> (bits column, amp, autocast dtype name)
_PRECISIONS: dict[str, tuple[int, bool, str]] = {
    "32": (32, False, ""),
    "fp32": (32, False, ""),
    "float32": (32, False, ""),
    "16": (16, True, "float16"),
    "fp16": (16, True, "float16"),
    "float16": (16, True, "float16"),
    "amp": (16, True, "float16"),
    "amp16": (16, True, "float16"),
    "bf16": (16, True, "bfloat16"),
    "bfloat16": (16, True, "bfloat16"),
    "ampbf16": (16, True, "bfloat16"),
}
PRECISION_CHOICES = ("32", "16", "bf16")
BANK_BYTES = 256 * 2**20  # synthetic samples kept in host memory; batches are drawn from them


@dataclass(frozen=True)
class Precision:
    """A training precision: `bits` as the canonical tables store it, plus the autocast dtype."""

    label: str  # "32", "16" or "bf16": what features and CLIs take
    bits: int
    amp: bool
    amp_dtype: str  # "", "float16" or "bfloat16"


def parse_precision(precision: object) -> Precision:
    """'32'/'fp32' -> fp32; '16'/'fp16'/'amp' -> AMP fp16; 'bf16' -> AMP bfloat16."""
    key = str(precision).strip().lower().replace("-", "").replace("_", "")
    if key not in _PRECISIONS:
        raise ChronosError(
            f"Unknown precision {precision!r}. Known: 32 (fp32), 16 (AMP fp16), bf16 (AMP bf16)"
        )
    bits, amp, dtype = _PRECISIONS[key]
    label = "32" if not amp else ("bf16" if dtype == "bfloat16" else "16")
    return Precision(label, bits, amp, dtype)


@dataclass
class TimingConfig:
    """One training configuration to time, plus how to time it."""

    model: Any  # zoo name (str) or a torch.nn.Module
    dataset: Any = "CIFAR10"  # catalog name or DatasetSpec
    batch_size: int = 32
    precision: str = "32"
    optimizer: str = "SGD"
    learning_rate: float = 0.01
    device: str = "cpu"
    input_shape: tuple[int, ...] | None = None  # per-sample override, e.g. (3, 32, 32) for ImageNet models
    repeats: int = 3
    warmup: int = 3
    iters: int = 10
    num_workers: int = 0
    threads: int | None = None  # torch.set_num_threads before timing (None: leave as is)
    seed: int = 0
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from chronos_core import validation as v

        for name in ("batch_size", "repeats", "iters"):
            setattr(self, name, v.positive_int(name, getattr(self, name)))
        for name in ("warmup", "num_workers", "seed"):
            setattr(self, name, v.non_negative_int(name, getattr(self, name)))
        if self.threads is not None:
            self.threads = v.positive_int("threads", self.threads)
        self.learning_rate = v.positive_float("learning_rate", self.learning_rate)
        if self.input_shape is not None:
            self.input_shape = tuple(int(d) for d in self.input_shape)

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else type(self.model).__name__


@dataclass
class TimingResult:
    """Per-iteration times (ms) of every timed iteration, grouped by repeat, with their summary."""

    config: TimingConfig
    compute_ms: list[list[float]]  # [repeat][iteration]
    loader_wait_ms: list[list[float]]
    param_count: int
    environment: Environment | None = None
    # the same intervals on this process's CPU-time clock (time.process_time): equal to wall time
    # for a single-threaded CPU run on an idle core, blind to time the core spent on other processes
    compute_cpu_ms: list[list[float]] | None = None
    loader_wait_cpu_ms: list[list[float]] | None = None

    @property
    def batch_time_ms(self) -> list[list[float]]:
        return [
            [c + w for c, w in zip(cs, ws, strict=True)]
            for cs, ws in zip(self.compute_ms, self.loader_wait_ms, strict=True)
        ]

    def summary(self) -> dict[str, float]:
        """Mean over repeats of each repeat's mean, its std/CV across repeats, iteration percentiles."""
        out: dict[str, float] = {}
        for name, values in (
            ("batch_time_ms", self.batch_time_ms),
            ("compute_ms", self.compute_ms),
            ("loader_wait_ms", self.loader_wait_ms),
        ):
            out.update(summarize_repeats(values, name))
        if self.compute_cpu_ms is not None and self.loader_wait_cpu_ms is not None:
            batch_cpu = [
                [c + w for c, w in zip(cs, ws, strict=True)]
                for cs, ws in zip(self.compute_cpu_ms, self.loader_wait_cpu_ms, strict=True)
            ]
            for name, values in (
                ("batch_time_cpu_ms", batch_cpu),
                ("compute_cpu_ms", self.compute_cpu_ms),
                ("loader_wait_cpu_ms", self.loader_wait_cpu_ms),
            ):
                out.update(summarize_repeats(values, name))
        out["n_repeats"] = len(self.compute_ms)
        return out

    def as_row(self) -> dict[str, Any]:
        """One flat row: configuration, summary, raw repeat means as JSON, environment fields."""
        cfg = self.config
        prec = parse_precision(cfg.precision)
        row: dict[str, Any] = {
            "model": cfg.model_name,
            "batch_size": cfg.batch_size,
            "precision": prec.bits,
            "amp": prec.amp,
            "amp_dtype": prec.amp_dtype,
            "optimizer": cfg.optimizer,
            "learning_rate": cfg.learning_rate,
            "num_workers": cfg.num_workers,
            "warmup_iters": cfg.warmup,
            "iters_per_repeat": cfg.iters,
            "param_count": self.param_count,
        }
        row.update(self.summary())
        for name, values in (
            ("compute_ms", self.compute_ms),
            ("loader_wait_ms", self.loader_wait_ms),
            ("compute_cpu_ms", self.compute_cpu_ms),
        ):
            if values is None:
                continue
            row[f"{name}_repeats_json"] = json.dumps([round(float(np.mean(v)), 6) for v in values])
        if self.environment is not None:
            row.update(self.environment.row_fields())
        return row


def summarize_repeats(values: list[list[float]], name: str) -> dict[str, float]:
    """`name`: mean of repeat means; `_std`/`_cv` across repeats; `_p10/_p50/_p90` over iterations."""
    means = np.array([np.mean(v) for v in values], dtype=float)
    flat = np.concatenate([np.asarray(v, dtype=float) for v in values])
    mean = float(means.mean())
    std = float(means.std(ddof=1)) if len(means) > 1 else 0.0
    p10, p50, p90 = (float(x) for x in np.percentile(flat, [10, 50, 90]))
    return {
        name: mean,
        f"{name}_std": std,
        f"{name}_cv": std / mean if mean > 0 else math.nan,
        f"{name}_p10": p10,
        f"{name}_p50": p50,
        f"{name}_p90": p90,
    }


# ------------------------------------------------------------------------------------------ inputs


def dataset_spec(
    dataset: Any, input_shape: tuple[int, ...] | None = None, model: Any = None, **model_kwargs: Any
):
    """The catalog DatasetSpec as the model consumes it.

    `input_shape` wins when given; otherwise a zoo model's own input shape for the dataset (ViT
    resizes images to its `image_size`, text models read `max_len` tokens), else the dataset's.
    """
    from chronos_core.catalog.datasets import Datasets, DatasetSpec

    spec = dataset if isinstance(dataset, DatasetSpec) else Datasets.get(str(dataset))
    if input_shape is not None:
        return spec.with_input_shape(tuple(input_shape))
    if isinstance(model, str):
        from chronos_core.catalog.models import Models

        shape = Models.get(model).input_shape(spec, **model_kwargs)
        if tuple(shape) != tuple(spec.input_shape):
            return spec.with_input_shape(tuple(shape))
    return spec


def synthetic_tensors(spec, n: int, seed: int = 0, vocab_size: int | None = None):
    """`n` random samples of a dataset's shape: floats for images/sequences, token ids for text."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    if spec.modality == "text":
        vocab = int(vocab_size or spec.vocab_size or 30522)
        x = torch.randint(0, vocab, (n, *spec.input_shape), generator=gen)
    else:
        x = torch.randn((n, *spec.input_shape), generator=gen)
    y = torch.randint(0, spec.num_classes, (n,), generator=gen)
    return x, y


def make_loader(
    spec,
    batch_size: int,
    n_batches: int,
    num_workers: int = 0,
    pin_memory: bool = False,
    seed: int = 0,
    vocab_size: int | None = None,
):
    """A DataLoader yielding exactly `n_batches` batches drawn (with replacement) from a synthetic bank."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset

    sample_bytes = 4 * max(1, math.prod(spec.input_shape))
    bank = int(min(n_batches * batch_size, max(batch_size, BANK_BYTES // sample_bytes)))
    x, y = synthetic_tensors(spec, bank, seed, vocab_size)
    gen = torch.Generator().manual_seed(seed + 1)
    sampler = RandomSampler(
        TensorDataset(x, y), replacement=True, num_samples=n_batches * batch_size, generator=gen
    )
    return DataLoader(
        TensorDataset(x, y),
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


# ------------------------------------------------------------------------------------------ models


def build_model(model: Any, spec, **overrides: Any):
    """A torch module: passed through, or built from the zoo (`Models.get(name).build(dataset)`)."""
    import torch

    if isinstance(model, torch.nn.Module):
        return model
    if not isinstance(model, str):
        raise ChronosError(f"model must be a zoo name or a torch.nn.Module, got {type(model).__name__}")
    from chronos_core.catalog.models import Models

    built = Models.get(model).build(spec, **overrides)
    if not isinstance(built, torch.nn.Module):
        raise ChronosError(
            f"Model {model!r} is not a PyTorch model; time it with chronos_core.profiling.keras_timer"
        )
    return built


def _logits(output: Any):
    """The logits tensor of a model output (tensor, tuple, dict or HF-style object), as [batch, classes]."""
    import torch

    if isinstance(output, dict):
        output = output.get("logits", next(iter(output.values())))
    elif isinstance(output, tuple | list):
        output = output[0]
    elif not isinstance(output, torch.Tensor) and hasattr(output, "logits"):
        output = output.logits
    if output.dim() > 2:  # per-token logits: average over positions
        output = output.reshape(output.shape[0], -1, output.shape[-1]).mean(1)
    return output


_OOM_MARKERS = ("out of memory", "can't allocate memory", "not enough memory", "cannot allocate memory")


def is_oom(exc: BaseException) -> bool:
    """True for allocator failures on any device (torch.OutOfMemoryError or CPU allocator errors)."""
    import torch

    return isinstance(exc, torch.OutOfMemoryError | MemoryError) or any(
        m in str(exc).lower() for m in _OOM_MARKERS
    )


def _features(cfg: TimingConfig, spec) -> dict[str, Any]:
    """compute_features for a timing configuration, as a plain dict."""
    from chronos_core.features import compute_features

    precision = parse_precision(cfg.precision).label
    feats = compute_features(cfg.model, spec, cfg.batch_size, precision, cfg.optimizer, **cfg.model_kwargs)
    return feats.as_dict() if hasattr(feats, "as_dict") else dict(feats)


def _check_fits(cfg: TimingConfig, spec, device: str) -> None:
    """Refuse early (one line) when the analytic memory estimate exceeds the device's free memory."""
    if not isinstance(cfg.model, str):
        return
    try:
        values = _features(cfg, spec)
        need = float(values.get("total_state_bytes", 0)) + cfg.batch_size * float(
            values.get("act_bytes_per_sample", 0)
        )
    except ChronosError:
        raise
    except Exception as exc:  # noqa: BLE001 - the estimate is a courtesy; the real run still guards
        log.debug("memory estimate unavailable: %s", exc)
        return
    if device.startswith("cuda"):
        import torch

        free = torch.cuda.mem_get_info(device)[0]
    else:
        import psutil

        free = psutil.virtual_memory().available
    if math.isfinite(need) and need > 0.9 * free:
        raise ChronosError(
            f"batch_size {cfg.batch_size} of {cfg.model} does not fit in memory on {device}: "
            f"needs ~{need / 2**30:.1f} GiB, {free / 2**30:.1f} GiB free"
        )


# ------------------------------------------------------------------------------------------ timing


def time_training(cfg: TimingConfig, capture_env: bool = True) -> TimingResult:
    """Time `cfg`; raises ChronosError for bad input, a missing device or a batch that does not fit."""
    import torch

    device = resolve_device(cfg.device)
    prec = parse_precision(cfg.precision)
    spec = dataset_spec(cfg.dataset, cfg.input_shape, cfg.model, **cfg.model_kwargs)
    if cfg.threads is not None:
        torch.set_num_threads(int(cfg.threads))
    kind = device.split(":")[0]
    if (
        prec.amp
        and kind == "mps"
        and prec.amp_dtype == "bfloat16"
        and not torch.backends.mps.is_macos_or_newer(14, 0)
    ):
        raise ChronosError("Precision 'bf16' is not supported on this MPS device (needs macOS 14+)")
    _check_fits(cfg, spec, device)
    try:
        return _time(cfg, spec, device, prec, capture_env)
    except ChronosError:
        raise
    except Exception as exc:
        if is_oom(exc):
            if kind == "cuda":
                torch.cuda.empty_cache()
            raise ChronosError(
                f"batch_size {cfg.batch_size} of {cfg.model_name} does not fit in memory on {device}: "
                f"{str(exc).splitlines()[0][:160]}"
            ) from exc
        raise


def _time(cfg: TimingConfig, spec, device: str, prec: Precision, capture_env: bool) -> TimingResult:
    import torch

    from chronos_core.catalog.optimizers import Optimizers

    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, spec, **cfg.model_kwargs).to(device)
    model.train()
    param_count = sum(p.numel() for p in model.parameters())
    optimizer = Optimizers.get(cfg.optimizer).build(model.parameters(), lr=cfg.learning_rate)
    criterion = torch.nn.CrossEntropyLoss()
    kind = device.split(":")[0]
    dtype = getattr(torch, prec.amp_dtype) if prec.amp else None
    scaler = torch.amp.GradScaler(kind, enabled=prec.amp and prec.amp_dtype == "float16" and kind == "cuda")
    n_timed = cfg.repeats * cfg.iters
    vocab = cfg.model_kwargs.get("vocab_size")
    loader = make_loader(
        spec, cfg.batch_size, cfg.warmup + n_timed, cfg.num_workers, kind == "cuda", cfg.seed, vocab
    )
    batches = iter(loader)
    non_blocking = kind == "cuda"

    def step(x, y) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=kind, dtype=dtype, enabled=prec.amp):
            loss = criterion(_logits(model(x)).float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    compute: list[float] = []
    wait: list[float] = []
    compute_cpu: list[float] = []
    wait_cpu: list[float] = []
    for i in range(cfg.warmup + n_timed):
        synchronize(device)
        t0, c0 = time.perf_counter(), time.process_time()
        x, y = next(batches)
        x, y = x.to(device, non_blocking=non_blocking), y.to(device, non_blocking=non_blocking)
        synchronize(device)
        t1, c1 = time.perf_counter(), time.process_time()
        step(x, y)
        synchronize(device)
        t2, c2 = time.perf_counter(), time.process_time()
        if i >= cfg.warmup:
            wait.append(1000.0 * (t1 - t0))
            compute.append(1000.0 * (t2 - t1))
            wait_cpu.append(1000.0 * (c1 - c0))
            compute_cpu.append(1000.0 * (c2 - c1))
    del batches, loader
    blocks = [slice(r * cfg.iters, (r + 1) * cfg.iters) for r in range(cfg.repeats)]
    env = capture_environment(device, threads=torch.get_num_threads()) if capture_env else None
    return TimingResult(
        cfg,
        [compute[b] for b in blocks],
        [wait[b] for b in blocks],
        param_count,
        env,
        [compute_cpu[b] for b in blocks],
        [wait_cpu[b] for b in blocks],
    )


def measure(cfg: TimingConfig, features: bool = True) -> dict[str, Any]:
    """Time `cfg` and return one canonical row: configuration, dataset, features, device specs, timings."""
    result = time_training(cfg)
    spec = dataset_spec(cfg.dataset, cfg.input_shape, cfg.model, **cfg.model_kwargs)
    row = result.as_row()
    if isinstance(cfg.model, str):
        from chronos_core.catalog.models import Models

        zoo = Models.get(cfg.model)
        row["model"], row["family"] = zoo.name, zoo.family
    row["model_kwargs"] = json.dumps(cfg.model_kwargs, sort_keys=True) if cfg.model_kwargs else ""
    row.update(dataset_columns(spec, cfg.batch_size))
    if features and isinstance(cfg.model, str):
        row.update(feature_columns_for(cfg, spec))
    if result.environment is not None:
        row.update(device_columns(result.environment))
    return row


def dataset_columns(spec, batch_size: int) -> dict[str, Any]:
    """Dataset fields of a canonical time row, with steps_per_epoch for this batch size."""
    return {
        "dataset": spec.name,
        "dataset_size": spec.train_size,
        "input_shape": str(tuple(spec.input_shape)),
        "seq_len": spec.seq_len,
        "num_classes": spec.num_classes,
        "modality": spec.modality,
        "steps_per_epoch": spec.steps_per_epoch(batch_size),
    }


def feature_columns_for(cfg: TimingConfig, spec) -> dict[str, Any]:
    """Computational features of a zoo configuration (empty when the features package is unavailable)."""
    try:
        values = _features(cfg, spec)
    except ImportError:
        return {}
    return {k: v for k, v in values.items() if not isinstance(v, dict | list)}


def device_columns(env: Environment) -> dict[str, Any]:
    """The canonical gpu_* device columns from the catalog spec of the measuring device (CPU included)."""
    from chronos_core.catalog.devices import canonical_device_columns

    spec = env.device_spec
    out = canonical_device_columns(spec)
    out["gpu_name"] = spec.get("name", env.device_name)
    return {
        **out,
        "device_kind": spec.get("kind", ""),
        "cpu_model": env.cpu_model,
        "physical_cores": spec.get("physical_cores"),
    }


def with_overrides(cfg: TimingConfig, **changes: Any) -> TimingConfig:
    """A copy of `cfg` with some fields changed (validated again)."""
    return replace(cfg, **changes)


def config_dict(cfg: TimingConfig) -> dict[str, Any]:
    """The configuration as plain data (model by name)."""
    out = (
        asdict(cfg)
        if isinstance(cfg.model, str)
        else {**asdict(replace(cfg, model="")), "model": cfg.model_name}
    )
    return out
