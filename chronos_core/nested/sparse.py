"""Significance-triggered communication with error feedback.

A worker adds each produced update to a residual and sends the residual only when its significance
||residual|| / max(||theta||, norm_floor) exceeds a threshold. The threshold adapts to the training
phase by a multiplicative rate controller: it rises after a send and falls after a skip, so that in
steady state about `target_send_rate` of the steps send, and the ones that do are those whose
accumulated change is largest relative to theta (early, large steps go out at once; late, small ones
accumulate). After `max_skips` consecutive skips it sends anyway, bounding how far a worker drifts.
Unsent updates stay in the residual (error feedback), so after a final `flush()` the sum of sent
updates equals the sum of produced ones: nothing is lost, only delayed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from chronos_core.errors import ChronosError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparseSyncConfig:
    """Knobs of the significance filter, validated at construction."""

    initial_threshold: float = 0.01  # significance needed to send, before adaptation
    target_send_rate: float = 0.5  # fraction of steps that send, in steady state, in (0, 1]
    adapt_rate: float = 0.2  # log-step of the threshold controller, > 0
    min_threshold: float = 1e-6
    max_threshold: float = 1.0
    max_skips: int = 4  # consecutive skipped steps before a forced send (0: send every step)
    norm_floor: float = 1.0  # significance denominator max(||theta||, norm_floor): relative for large theta

    def __post_init__(self) -> None:
        if not (
            _is_number(self.min_threshold)
            and _is_number(self.max_threshold)
            and 0 < self.min_threshold <= self.max_threshold
        ):
            raise ChronosError(
                f"need 0 < min_threshold <= max_threshold, got {self.min_threshold!r}, {self.max_threshold!r}"
            )
        if not (
            _is_number(self.initial_threshold)
            and self.min_threshold <= self.initial_threshold <= self.max_threshold
        ):
            raise ChronosError(
                f"initial_threshold must be in [{self.min_threshold}, {self.max_threshold}], "
                f"got {self.initial_threshold!r}"
            )
        if not (_is_number(self.target_send_rate) and 0 < self.target_send_rate <= 1):
            raise ChronosError(f"target_send_rate must be in (0, 1], got {self.target_send_rate!r}")
        if not (_is_number(self.adapt_rate) and self.adapt_rate > 0):
            raise ChronosError(f"adapt_rate must be a finite number > 0, got {self.adapt_rate!r}")
        if not (
            isinstance(self.max_skips, int) and not isinstance(self.max_skips, bool) and self.max_skips >= 0
        ):
            raise ChronosError(f"max_skips must be an integer >= 0, got {self.max_skips!r}")
        if not (_is_number(self.norm_floor) and self.norm_floor > 0):
            raise ChronosError(f"norm_floor must be a finite number > 0, got {self.norm_floor!r}")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def significance(delta: Tensor, params: Tensor, norm_floor: float = 1.0) -> float:
    """||delta|| / max(||params||, norm_floor)."""
    return float(torch.linalg.vector_norm(delta)) / max(float(torch.linalg.vector_norm(params)), norm_floor)


class SignificanceFilter:
    """Accumulate updates; release the accumulated residual when it becomes significant."""

    def __init__(self, config: SparseSyncConfig | None = None) -> None:
        self.config = config or SparseSyncConfig()
        self.residual: Tensor | None = None
        self.threshold = self.config.initial_threshold
        self.skips = 0
        self.produced = 0  # updates offered
        self.sent = 0  # residuals released (including flushes)
        self.dropped = 0  # non-finite updates refused

    def offer(self, delta: Tensor, params: Tensor) -> Tensor | None:
        """Add `delta` (theta is now `params`); return the residual to send, or None to keep waiting."""
        if not bool(torch.isfinite(delta).all()):
            self.dropped += 1
            log.warning("dropped a non-finite update (norm %s); residual kept clean", float(delta.norm()))
            return None
        cfg = self.config
        self.produced += 1
        self.residual = delta.clone() if self.residual is None else self.residual + delta
        send = (
            self.skips >= cfg.max_skips
            or significance(self.residual, params, cfg.norm_floor) > self.threshold
        )
        rate = cfg.target_send_rate
        self.threshold *= math.exp(cfg.adapt_rate * ((1 - rate) if send else -rate))
        self.threshold = min(cfg.max_threshold, max(cfg.min_threshold, self.threshold))
        if send:
            return self._release()
        self.skips += 1
        return None

    def flush(self) -> Tensor | None:
        """Release whatever is left (at shutdown), or None when nothing is pending."""
        return None if self.residual is None else self._release()

    def _release(self) -> Tensor:
        out, self.residual, self.skips = self.residual, None, 0
        self.sent += 1
        return out

    @property
    def send_fraction(self) -> float:
        """Sends per produced update (1.0 = dense)."""
        return self.sent / self.produced if self.produced else math.nan
