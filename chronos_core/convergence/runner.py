"""Train one configuration to convergence and record everything a convergence model may learn from.

Definitions (CHRONOS's early stopping, epochs counted from 1):
- T_conv: the epoch at which validation-loss early stopping fired, i.e. best epoch + patience, where
  an epoch improves on the best if val_loss < best - min_delta. Runs that never fire get
  T_conv = max_epochs and converged = False (right-censored).
- T_red80 / T_red90: first epoch whose validation loss achieved 80% / 90% of the run's final loss
  reduction (initial val loss at epoch 0 minus the best val loss).
- Divergence: a non-finite training or validation loss ends the run; it is recorded with
  diverged = True and no targets, never raised.
- CAPE's probe-batch steps: full-batch AdamW on the run's first training batch, counting steps
  until loss <= epsilon * initial loss (cap 5000), from the same initialization.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from chronos_core.convergence.nets import NETS, build_model, param_count
from chronos_core.convergence.stopping import early_stopping_epoch
from chronos_core.convergence.tasks import load_task
from chronos_core.errors import ChronosError, unknown_choice
from chronos_core.probes import ProbeConfig, probe_model

OPTIMIZERS = ("SGD", "AdamW")
CAPE_EPSILONS = (0.1, 0.15, 0.2)
CAPE_STEP_CAP = 5000
CAPE_DEFAULT_LR = 1e-3  # probe-batch AdamW lr for runs whose own optimizer is not AdamW


@dataclass(frozen=True)
class RunConfig:
    """One training run: task, model, optimizer, learning rate, batch size, seed, stopping rule."""

    task: str
    model: str
    optimizer: str
    learning_rate: float
    batch_size: int
    seed: int
    max_epochs: int = 50
    patience: int = 5
    min_delta: float = 1e-4
    probe_batch: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise unknown_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.model not in NETS:
            raise unknown_choice("convergence model", self.model, NETS)
        if not (self.learning_rate > 0 and self.batch_size >= 2 and self.max_epochs >= 1):
            raise ChronosError(
                f"Need learning_rate > 0, batch_size >= 2, max_epochs >= 1 (got {self.learning_rate}, "
                f"{self.batch_size}, {self.max_epochs})"
            )

    @property
    def key(self) -> str:
        """Unique id of the run (the sweep's resume key)."""
        return (
            f"{self.task}|{self.model}|{self.optimizer}|{self.learning_rate:g}|{self.batch_size}|{self.seed}"
            f"|{self.max_epochs}|{self.patience}|{self.min_delta:g}"
        )

    @property
    def config_key(self) -> str:
        """The run's configuration without its seed: repeats share it (group splits by it)."""
        return self.key.replace(f"|{self.batch_size}|{self.seed}|", f"|{self.batch_size}|*|")


def reduction_epoch(curve: Sequence[float], initial: float, fraction: float) -> int | None:
    """First epoch (1-based) whose loss achieved `fraction` of the total reduction initial -> min(curve)."""
    if not curve:
        return None
    total = initial - min(curve)
    if not total > 0:
        return None
    for epoch, value in enumerate(curve, start=1):
        if initial - value >= fraction * total - 1e-12:
            return epoch
    return None


def _make_optimizer(name: str, params: Sequence[nn.Parameter], lr: float) -> torch.optim.Optimizer:
    if name == "SGD":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.AdamW(params, lr=lr, weight_decay=0.01)


def probe_batch_steps(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    learning_rate: float,
    epsilons: Sequence[float] = CAPE_EPSILONS,
    cap: int = CAPE_STEP_CAP,
) -> dict[float, int | None]:
    """CAPE's T_star: full-batch AdamW steps on one batch until loss <= eps * initial loss (None: cap hit)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    found: dict[float, int | None] = dict.fromkeys(epsilons)
    initial = None
    for step in range(cap + 1):
        loss = F.cross_entropy(model(inputs), targets)
        value = loss.item()
        if not math.isfinite(value):
            break
        if initial is None:
            initial = value
        for eps in epsilons:
            if found[eps] is None and value <= eps * initial:
                found[eps] = step
        if all(v is not None for v in found.values()) or step == cap:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return found


def _val_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(x)
        return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def train_run(cfg: RunConfig) -> dict[str, object]:
    """Train `cfg` to convergence (or divergence, or max_epochs); one flat row with probes and targets."""
    started = time.perf_counter()
    task = load_task(cfg.task)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, task)
    gen = torch.Generator().manual_seed(cfg.seed)
    n = task.dataset_size
    first = torch.randperm(n, generator=gen)[: cfg.batch_size]
    xb, yb = task.x_train[first], task.y_train[first]

    row: dict[str, object] = {**asdict(cfg), "key": cfg.key, "config_key": cfg.config_key}
    row.update(
        family=NETS[cfg.model].family,
        dataset=cfg.task,
        modality=task.modality,
        dataset_size=n,
        val_size=int(task.x_val.shape[0]),
        num_classes=task.num_classes,
        seq_len=task.seq_len,
        input_dim=task.input_dim,
        param_count=param_count(model),
        steps_per_epoch=math.ceil(n / cfg.batch_size),
    )
    t0 = time.perf_counter()
    probes = probe_model(model, xb, yb, ProbeConfig(seed=cfg.seed, sketch_repeats=8))
    row.update({f"probe_{k}": v for k, v in probes.as_dict().items() if not k.startswith("seconds_")})
    row.update(probes.log10_features())
    row["ntk_trace_proxy_log10"] = 2 * row["gradient_norm_log10"]  # CHRONOS's proxy: squared grad norm
    row["probe_seconds"] = time.perf_counter() - t0

    if cfg.probe_batch:
        t0 = time.perf_counter()
        lr = cfg.learning_rate if cfg.optimizer == "AdamW" else CAPE_DEFAULT_LR
        steps = probe_batch_steps(copy.deepcopy(model), xb, yb, lr)
        row["probe_batch_lr"] = lr
        for eps, value in steps.items():
            row[f"probe_batch_steps_eps{int(round(eps * 100))}"] = value if value is not None else math.nan
        row["probe_batch_seconds"] = time.perf_counter() - t0

    initial_val, initial_acc = _val_loss(model, task.x_val, task.y_val)
    opt = _make_optimizer(cfg.optimizer, list(model.parameters()), cfg.learning_rate)
    val_curve: list[float] = []
    train_curve: list[float] = []
    acc_curve: list[float] = []
    diverged_epoch = None
    stop_epoch = None
    t0 = time.perf_counter()
    for epoch in range(1, cfg.max_epochs + 1):
        model.train()
        order = torch.randperm(n, generator=gen)
        total, count = 0.0, 0
        for start in range(0, n, cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            if len(idx) < 2:
                continue  # BatchNorm needs two samples
            loss = F.cross_entropy(model(task.x_train[idx]), task.y_train[idx])
            if not torch.isfinite(loss):
                diverged_epoch = epoch
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            count += len(idx)
        if diverged_epoch is not None:
            break
        val, acc = _val_loss(model, task.x_val, task.y_val)
        if not math.isfinite(val):
            diverged_epoch = epoch
            break
        val_curve.append(val)
        acc_curve.append(acc)
        train_curve.append(total / max(count, 1))
        stop_epoch = early_stopping_epoch(val_curve, cfg.patience, cfg.min_delta)
        if stop_epoch is not None:
            break
    row["train_seconds"] = time.perf_counter() - t0

    diverged = diverged_epoch is not None
    best = min(val_curve) if val_curve else math.nan
    row.update(
        initial_val_loss=initial_val,
        initial_val_acc=initial_acc,
        epochs_run=len(val_curve),
        diverged=diverged,
        diverged_epoch=diverged_epoch if diverged else math.nan,
        converged=stop_epoch is not None,
        T_conv=math.nan if diverged else (stop_epoch if stop_epoch is not None else cfg.max_epochs),
        T_best=(val_curve.index(best) + 1) if val_curve and not diverged else math.nan,
        best_val_loss=best,
        best_val_acc=max(acc_curve) if acc_curve else math.nan,
    )
    for frac in (0.8, 0.9):
        hit = None if diverged else reduction_epoch(val_curve, initial_val, frac)
        row[f"T_red{int(frac * 100)}"] = hit if hit is not None else math.nan
    row["val_loss_curve"] = json.dumps([round(v, 6) for v in val_curve])
    row["train_loss_curve"] = json.dumps([round(v, 6) for v in train_curve])
    row["val_acc_curve"] = json.dumps([round(v, 4) for v in acc_curve])
    row["wall_seconds"] = time.perf_counter() - started
    return row
