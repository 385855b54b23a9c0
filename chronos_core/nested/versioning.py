"""Versioned outer parameters with bounded asynchrony (pure Python; the coordinator holds one).

Workers check out the current version, compute, and commit an update tagged with that version.
staleness = current version - checked-out version; a commit is weighted by decay**staleness and
rejected beyond `max_staleness` (or when not finite). At most `max_in_flight` distinct versions may be
checked out at once: a worker asking for a version that would exceed it must wait.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from chronos_core.errors import ChronosError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StalenessPolicy:
    """Bounds of the asynchrony: outstanding versions, accepted staleness, and its down-weighting."""

    max_in_flight: int = 4
    max_staleness: int = 4
    staleness_decay: float = 0.9  # commit weight = staleness_decay ** staleness

    def __post_init__(self) -> None:
        if not (isinstance(self.max_in_flight, int) and self.max_in_flight >= 1):
            raise ChronosError(f"max_in_flight must be an integer >= 1, got {self.max_in_flight!r}")
        if not (isinstance(self.max_staleness, int) and self.max_staleness >= 0):
            raise ChronosError(f"max_staleness must be an integer >= 0, got {self.max_staleness!r}")
        if not (isinstance(self.staleness_decay, int | float) and 0 < self.staleness_decay <= 1):
            raise ChronosError(f"staleness_decay must be in (0, 1], got {self.staleness_decay!r}")

    def weight(self, staleness: int) -> float:
        """decay**staleness, or 0 beyond max_staleness."""
        return self.staleness_decay**staleness if 0 <= staleness <= self.max_staleness else 0.0


@dataclass(frozen=True)
class CommitResult:
    """What happened to one commit."""

    accepted: bool
    weight: float  # multiply the update by this before applying (0 when rejected)
    staleness: int
    reason: str  # accepted | stale | not_finite | no_checkout | future_version


class BoundedVersionQueue:
    """Checkouts and commits against a monotonically increasing version number."""

    def __init__(self, max_in_flight: int = 4, max_staleness: int = 4, staleness_decay: float = 0.9) -> None:
        self.policy = StalenessPolicy(max_in_flight, max_staleness, staleness_decay)
        self.version = 0
        self.checkouts: dict[str, int] = {}  # worker id -> version it holds
        self.rejected: dict[str, int] = {"stale": 0, "not_finite": 0, "no_checkout": 0, "future_version": 0}

    @property
    def in_flight_versions(self) -> set[int]:
        """Distinct versions currently checked out."""
        return set(self.checkouts.values())

    def can_checkout(self) -> bool:
        """Whether checking out the current version keeps at most max_in_flight versions outstanding."""
        versions = self.in_flight_versions
        return self.version in versions or len(versions) < self.policy.max_in_flight

    def checkout(self, worker_id: str) -> int | None:
        """Hand the current version to `worker_id` (replacing any it held); None when it must wait."""
        previous = self.checkouts.pop(worker_id, None)
        if not self.can_checkout():
            if previous is not None:
                self.checkouts[worker_id] = previous
            return None
        self.checkouts[worker_id] = self.version
        return self.version

    def commit(self, worker_id: str, version: int, update=None) -> CommitResult:
        """Judge a commit made on `version` and release the worker's checkout; does not advance."""
        held = self.checkouts.pop(worker_id, None)
        staleness = self.version - version
        if held is None or held != version:
            return self._reject("no_checkout", staleness, worker_id, version)
        if staleness < 0:
            return self._reject("future_version", staleness, worker_id, version)
        if update is not None and not np.all(np.isfinite(np.asarray(update, dtype=np.float64))):
            return self._reject("not_finite", staleness, worker_id, version)
        if staleness > self.policy.max_staleness:
            return self._reject("stale", staleness, worker_id, version)
        return CommitResult(True, self.policy.weight(staleness), staleness, "accepted")

    def _reject(self, reason: str, staleness: int, worker_id: str, version: int) -> CommitResult:
        self.rejected[reason] += 1
        level = logging.WARNING if reason == "not_finite" else logging.DEBUG
        log.log(
            level,
            "rejected commit from %s on version %d (current %d): %s",
            worker_id,
            version,
            self.version,
            reason,
        )
        return CommitResult(False, 0.0, staleness, reason)

    def advance(self) -> int:
        """A new version of the outer parameters exists (after applying one or more commits)."""
        self.version += 1
        return self.version

    def release(self, worker_id: str) -> int | None:
        """Drop a worker's checkout (it died or left); returns the version it held."""
        return self.checkouts.pop(worker_id, None)

    def state_dict(self) -> dict:
        """Plain-data snapshot for checkpoints."""
        policy = self.policy
        return {
            "version": self.version,
            "checkouts": dict(self.checkouts),
            "rejected": dict(self.rejected),
            "policy": (policy.max_in_flight, policy.max_staleness, policy.staleness_decay),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> BoundedVersionQueue:
        """Rebuild a queue from `state_dict()`."""
        queue = cls(*state["policy"])
        queue.version = int(state["version"])
        queue.checkouts = {str(k): int(v) for k, v in state["checkouts"].items()}
        queue.rejected.update(state["rejected"])
        return queue
