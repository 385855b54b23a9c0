"""The coordinator: owns the versioned outer parameters; workers check out, compute and commit.

Run as an async Ray actor (one event loop, so no locks beyond an asyncio.Condition). Every message
between a worker and the coordinator is a `bytes` payload (pickled dict, float32 arrays); the
coordinator counts the bytes and messages it receives and returns, which is the traffic measured in
notebook 07. Modes:
- sync: a round per version; the update is the mean of every active worker's commit (a barrier).
- async / async_sparse: each commit is applied on arrival, weighted by decay**staleness, rejected
  beyond max_staleness; checkouts wait while max_in_flight versions are outstanding. (async_sparse
  differs only on the worker side, which sends less often.)
A commit with non-finite values is rejected and logged, never applied.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
import time
from dataclasses import asdict, dataclass

import numpy as np

from chronos_core.errors import ChronosError, unknown_choice
from chronos_core.nested.versioning import BoundedVersionQueue, StalenessPolicy

log = logging.getLogger(__name__)

MODES = ("sync", "async", "async_sparse")
WIRE_DTYPE = np.float32


def encode(message: dict) -> bytes:
    """Serialise one message (numpy arrays travel as float32)."""
    out = {
        k: (np.asarray(v, dtype=WIRE_DTYPE) if isinstance(v, np.ndarray) else v) for k, v in message.items()
    }
    return pickle.dumps(out, protocol=5)


def decode(payload: bytes) -> dict:
    """Inverse of `encode`."""
    return pickle.loads(payload)


@dataclass(frozen=True)
class CoordinatorConfig:
    """Mode, staleness bounds and stopping rule of one run."""

    mode: str = "async"
    max_in_flight: int = 4
    max_staleness: int = 4
    staleness_decay: float = 0.9
    time_budget_s: float | None = None  # stop handing out work after this long (from start())
    max_updates: int | None = None  # ... or after this many new versions

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise unknown_choice("mode", self.mode, MODES)
        StalenessPolicy(self.max_in_flight, self.max_staleness, self.staleness_decay)  # validates
        if self.time_budget_s is not None and not (
            math.isfinite(self.time_budget_s) and self.time_budget_s > 0
        ):
            raise ChronosError(
                f"time_budget_s must be a positive number of seconds, got {self.time_budget_s!r}"
            )
        if self.max_updates is not None and not (isinstance(self.max_updates, int) and self.max_updates >= 1):
            raise ChronosError(f"max_updates must be an integer >= 1, got {self.max_updates!r}")

    @property
    def policy(self) -> StalenessPolicy:
        """Sync is the special case of one version in flight and no staleness."""
        if self.mode == "sync":
            return StalenessPolicy(max_in_flight=1, max_staleness=0, staleness_decay=1.0)
        return StalenessPolicy(self.max_in_flight, self.max_staleness, self.staleness_decay)


class Coordinator:
    """Versioned outer parameters with traffic accounting; wrap with ray.remote for distribution."""

    def __init__(self, theta0, config: CoordinatorConfig, state: dict | None = None) -> None:
        self.config = config
        p = config.policy
        self.theta = np.array(theta0, dtype=np.float64).reshape(-1)
        self.queue = BoundedVersionQueue(p.max_in_flight, p.max_staleness, p.staleness_decay)
        self.counters = {
            "bytes_up": 0,
            "bytes_down": 0,
            "messages_up": 0,
            "messages_down": 0,
            "commits": 0,
            "accepted": 0,
            "staleness_sum": 0,
            "released": 0,
        }
        self.history: list[dict] = []  # one row per new version
        self.active: set[str] = set()  # sync: workers expected in the current round
        self.round: dict[str, np.ndarray | None] = {}  # sync: this round's (weighted) commits
        self.stopped = False
        self.t0: float | None = None
        self._cond: asyncio.Condition | None = None
        self._timer: asyncio.Task | None = None
        if state is not None:
            self._load(state)

    # --- control (driver side) -------------------------------------------------------------------
    async def start(self) -> None:
        """Start the clock (and the time budget); record version 0."""
        self.t0 = time.perf_counter()
        if not self.history:
            self._record()
        if self.config.time_budget_s is not None:
            self._timer = asyncio.get_running_loop().create_task(self._stop_after(self.config.time_budget_s))

    async def _stop_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.stop()

    async def stop(self) -> None:
        """Hand out no more work; waiting workers are answered with stop."""
        async with self.cond:
            self.stopped = True
            self.cond.notify_all()

    async def release(self, worker_id: str) -> int | None:
        """A worker died or left: free its checked-out version and drop it from the sync round."""
        async with self.cond:
            held = self.queue.release(worker_id)
            self.active.discard(worker_id)
            self.round.pop(worker_id, None)
            self.counters["released"] += 1
            self._maybe_close_round()
            self.cond.notify_all()
        log.info("released worker %s (held version %s)", worker_id, held)
        return held

    def is_stopped(self) -> bool:
        return self.stopped

    def get_theta(self) -> np.ndarray:
        return self.theta.copy()

    def report(self) -> dict:
        """Counters, rejection counts, current version and the per-version history."""
        return {
            "version": self.queue.version,
            "rejected": dict(self.queue.rejected),
            **self.counters,
            "in_flight": len(self.queue.checkouts),
            "history": list(self.history),
            "elapsed_s": self._elapsed(),
        }

    def state_dict(self) -> dict:
        """Everything needed to resume: parameters, version, counters, history (not in-flight work)."""
        return {
            "theta": self.theta.copy(),
            "config": asdict(self.config),
            "queue": self.queue.state_dict(),
            "counters": dict(self.counters),
            "history": list(self.history),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> Coordinator:
        """Rebuild a coordinator from `state_dict()` (e.g. after the process holding it died)."""
        return cls(state["theta"], CoordinatorConfig(**state["config"]), state=state)

    def _load(self, state: dict) -> None:
        self.theta = np.array(state["theta"], dtype=np.float64)
        self.queue = BoundedVersionQueue.from_state_dict(state["queue"])
        self.queue.checkouts.clear()  # work in flight at checkpoint time is not resumed: workers re-check out
        self.counters.update(state["counters"])
        self.history = list(state["history"])

    # --- data plane (worker side) ----------------------------------------------------------------
    @property
    def cond(self) -> asyncio.Condition:
        if self._cond is None:
            self._cond = asyncio.Condition()
        return self._cond

    async def checkout(self, payload: bytes) -> bytes:
        """{'worker'} -> {'version', 'theta', 'stop'} (waits while the in-flight bound is reached)."""
        request = self._receive(payload)
        async with self.cond:
            return await self._hand_out(request["worker"])

    async def commit(self, payload: bytes) -> bytes:
        """{'worker', 'version', 'delta'} -> verdict plus a fresh checkout (or stop)."""
        request = self._receive(payload)
        worker, version, delta = request["worker"], int(request["version"]), request.get("delta")
        async with self.cond:
            result = self.queue.commit(worker, version, delta)
            self.counters["commits"] += 1
            if result.accepted:
                self.counters["accepted"] += 1
                self.counters["staleness_sum"] += result.staleness
            weighted = (
                None
                if not result.accepted or delta is None
                else result.weight * np.asarray(delta, np.float64)
            )
            if self.config.mode == "sync":
                self.round[worker] = weighted
                self._maybe_close_round()
            elif weighted is not None:
                self.theta += weighted
                self._advance()
            self.cond.notify_all()
            verdict = {
                "accepted": result.accepted,
                "weight": result.weight,
                "staleness": result.staleness,
                "reason": result.reason,
            }
            reply = decode(await self._hand_out(worker, count=False))
            return self._send({**verdict, **reply})

    # --- internals -------------------------------------------------------------------------------
    async def _hand_out(self, worker: str, count: bool = True) -> bytes:
        """Check out the current version for `worker` once allowed (call with the condition held)."""
        self.active.add(worker)
        await self.cond.wait_for(
            lambda: self.stopped or (worker not in self.round and self.queue.can_checkout())
        )
        if self.stopped:
            self.active.discard(worker)
            message = {"stop": True, "version": self.queue.version}
        else:
            version = self.queue.checkout(worker)
            message = {"stop": False, "version": version, "theta": self.theta}
        return self._send(message) if count else encode(message)

    def _maybe_close_round(self) -> None:
        """Sync: once every active worker has committed on this version, apply the mean and advance."""
        if self.config.mode != "sync" or not self.round or not self.active <= set(self.round):
            return
        accepted = [d for d in self.round.values() if d is not None]
        if accepted:
            self.theta += np.mean(accepted, axis=0)
        self.round.clear()
        self._advance()

    def _advance(self) -> None:
        self.queue.advance()
        self._record()
        if self.config.max_updates is not None and self.queue.version >= self.config.max_updates:
            self.stopped = True

    def _record(self) -> None:
        c = self.counters
        self.history.append(
            {
                "elapsed_s": self._elapsed(),
                "version": self.queue.version,
                "accepted": c["accepted"],
                "bytes": c["bytes_up"] + c["bytes_down"],
                "messages": c["messages_up"] + c["messages_down"],
                "theta": self.theta.astype(WIRE_DTYPE),
            }
        )

    def _elapsed(self) -> float:
        return 0.0 if self.t0 is None else time.perf_counter() - self.t0

    def _receive(self, payload: bytes) -> dict:
        self.counters["bytes_up"] += len(payload)
        self.counters["messages_up"] += 1
        return decode(payload)

    def _send(self, message: dict) -> bytes:
        payload = encode(message)
        self.counters["bytes_down"] += len(payload)
        self.counters["messages_down"] += 1
        return payload


def save_checkpoint(state: dict, path) -> None:
    """Write a coordinator `state_dict()` to `path` (pickle)."""
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(pickle.dumps(state, protocol=5))


def load_checkpoint(path) -> dict:
    """Read a state written by `save_checkpoint`."""
    from pathlib import Path

    return pickle.loads(Path(path).read_bytes())
