"""Optimisation history (continuum memory) and per-parameter update periods (multi-timescale).

- `ContinuumMemory` keeps recent (outer state -> tensors) pairs and predicts a tensor at a new outer
  state from its k nearest stored states (inverse-distance weights). Workers use it to warm-start the
  conjugate-gradient solve of implicit hypergradients (v = H^-1 df/dw varies smoothly with theta).
- `MultiTimescaleSGD` turns hypergradients into outer updates; each parameter group has its own
  period: a slow group averages its hypergradients over `update_every` steps and moves once.
Both are ablated in notebook 07 and are off by default unless that ablation shows they help.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import torch
from torch import Tensor

from chronos_core.errors import ChronosError


@dataclass
class MemoryEntry:
    """One stored outer state and what was computed there."""

    key: Tensor
    values: dict[str, Tensor]
    step: int
    distance: float = math.nan  # filled in by retrieve_similar


class ContinuumMemory:
    """Bounded store of past outer states; k-nearest-neighbour retrieval and prediction."""

    def __init__(self, capacity: int = 64, k: int = 4) -> None:
        if not (isinstance(capacity, int) and capacity >= 1 and isinstance(k, int) and 1 <= k <= capacity):
            raise ChronosError(
                f"need capacity >= 1 and 1 <= k <= capacity, got capacity={capacity!r}, k={k!r}"
            )
        self.capacity, self.k = capacity, k
        self.entries: deque[MemoryEntry] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self.entries)

    def store(self, key: Tensor, values: dict[str, Tensor], step: int) -> None:
        """Remember `values` computed at outer state `key` (oldest entry evicted when full)."""
        self.entries.append(
            MemoryEntry(key.detach().clone(), {n: v.detach().clone() for n, v in values.items()}, step)
        )

    def retrieve_similar(self, key: Tensor, k: int | None = None) -> list[MemoryEntry]:
        """The k stored entries nearest to `key` (Euclidean), nearest first, with `distance` set."""
        if not self.entries:
            return []
        keys = torch.stack([e.key for e in self.entries])
        distances = torch.linalg.vector_norm(keys - key.detach().to(keys.dtype), dim=1)
        order = torch.argsort(distances)[: k or self.k]
        out = []
        for i in order.tolist():
            entry = self.entries[i]
            out.append(MemoryEntry(entry.key, entry.values, entry.step, float(distances[i])))
        return out

    def predict(self, key: Tensor, name: str) -> Tensor | None:
        """Inverse-distance-weighted mean of `name` over the nearest entries (None when empty)."""
        near = [e for e in self.retrieve_similar(key) if name in e.values]
        if not near:
            return None
        if near[0].distance == 0:
            return near[0].values[name].clone()
        weights = torch.tensor([1.0 / e.distance for e in near], dtype=torch.float64)
        weights = weights / weights.sum()
        stacked = torch.stack([e.values[name] for e in near])
        return (weights.to(stacked.dtype)[:, None] * stacked).sum(0)


@dataclass(frozen=True)
class TimescaleGroup:
    """Outer parameters theta[start:stop] updated every `update_every` hypergradients."""

    name: str
    start: int
    stop: int
    update_every: int = 1

    def __post_init__(self) -> None:
        if not (0 <= self.start < self.stop):
            raise ChronosError(
                f"timescale group {self.name!r} needs 0 <= start < stop, got {self.start}, {self.stop}"
            )
        if not (isinstance(self.update_every, int) and self.update_every >= 1):
            raise ChronosError(
                f"update_every of {self.name!r} must be an integer >= 1, got {self.update_every!r}"
            )


@dataclass
class MultiTimescaleSGD:
    """SGD on the outer parameters, producing update deltas; groups may update less often."""

    lr: float
    num_params: int
    groups: tuple[TimescaleGroup, ...] = ()
    clip_norm: float | None = None  # clip each hypergradient to this norm first
    steps: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ChronosError(f"outer lr must be a finite number > 0, got {self.lr!r}")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ChronosError(f"clip_norm must be > 0 or None, got {self.clip_norm!r}")
        covered = torch.zeros(self.num_params, dtype=torch.bool)
        for g in self.groups:
            if g.stop > self.num_params or covered[g.start : g.stop].any():
                raise ChronosError(
                    f"timescale group {g.name!r} overlaps another or exceeds {self.num_params} params"
                )
            covered[g.start : g.stop] = True
        self._accumulated: Tensor | None = None

    def step(self, hypergrad: Tensor) -> Tensor:
        """The update to add to theta for this hypergradient (zeros on groups not due this step)."""
        g = hypergrad.detach()
        if self.clip_norm is not None:
            norm = float(torch.linalg.vector_norm(g))
            if norm > self.clip_norm:
                g = g * (self.clip_norm / norm)
        self.steps += 1
        delta = -self.lr * g
        if not self.groups:
            return delta
        if self._accumulated is None:
            self._accumulated = torch.zeros_like(g)
        for group in self.groups:
            part = slice(group.start, group.stop)
            self._accumulated[part] += g[part]
            if self.steps % group.update_every == 0:
                delta[part] = -self.lr * self._accumulated[part] / group.update_every
                self._accumulated[part] = 0
            else:
                delta[part] = 0
        return delta
