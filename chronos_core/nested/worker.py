"""A worker: check out the outer parameters, run the inner loop, compute a hypergradient, commit.

Each worker draws its own validation mini-batches (so workers add hypergradient samples, data-parallel
over the outer objective) and keeps its inner parameters between steps when `warm_start_inner`.
With a `SparseSyncConfig` it applies its own updates locally and commits the accumulated residual only
when significant (sparse sync); otherwise every update is committed. Wrapped by ray.remote in
`runner.py`; the same code runs on a laptop (local Ray) and on a cluster.
"""

from __future__ import annotations

import logging
import math
import os
import time
import zlib
from dataclasses import dataclass, field

import numpy as np
import ray
import torch

from chronos_core import _env  # noqa: F401  (before ray)
from chronos_core.errors import ChronosError
from chronos_core.nested.continuum import ContinuumMemory, MultiTimescaleSGD, TimescaleGroup
from chronos_core.nested.coordinator import decode, encode
from chronos_core.nested.hypergrad import (
    Hypergradient,
    check_method,
    implicit_hypergradient,
    unrolled_hypergradient,
)
from chronos_core.nested.inner import make_problem
from chronos_core.nested.sparse import SignificanceFilter, SparseSyncConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerFault:
    """Fault injection (tests, demos): exit the process after checkout, or send a NaN update."""

    die_at_step: int | None = None
    nan_at_step: int | None = None


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker turns outer parameters into updates; validated at construction."""

    method: str = "implicit"  # implicit | unrolled
    inner_steps: int = 10  # GD steps before an implicit hypergradient, or steps unrolled
    warm_start_inner: bool = True  # keep w between outer steps (else restart from problem.init_inner())
    outer_lr: float = 1.0
    clip_norm: float | None = None  # clip hypergradients to this norm
    val_batch_size: int | None = None  # validation rows per hypergradient (None: all)
    damping: float = 0.0  # implicit: (H + damping I)
    max_cg_iters: int = 50
    cg_tol: float = 1e-4  # relative residual
    sparse: SparseSyncConfig | None = None  # significance-triggered sync (None: commit every update)
    continuum_k: int = 0  # > 0: warm-start CG from the k nearest stored outer states
    continuum_capacity: int = 64
    timescales: tuple[TimescaleGroup, ...] = ()  # per-group update periods (empty: every step)
    max_steps: int | None = None  # safety bound on hypergradients per worker
    torch_threads: int = 1
    task_options: dict = field(default_factory=dict)  # forwarded to make_problem

    def __post_init__(self) -> None:
        check_method(self.method)
        if not (isinstance(self.inner_steps, int) and self.inner_steps >= 1):
            raise ChronosError(f"inner_steps must be an integer >= 1, got {self.inner_steps!r}")
        if not (math.isfinite(self.outer_lr) and self.outer_lr > 0):
            raise ChronosError(f"outer_lr must be a finite number > 0, got {self.outer_lr!r}")
        if self.val_batch_size is not None and self.val_batch_size < 1:
            raise ChronosError(f"val_batch_size must be >= 1 or None, got {self.val_batch_size!r}")
        if not (math.isfinite(self.damping) and self.damping >= 0):
            raise ChronosError(f"damping must be a finite number >= 0, got {self.damping!r}")
        if self.continuum_k < 0 or (self.continuum_k and self.continuum_k > self.continuum_capacity):
            raise ChronosError(
                f"continuum_k must be in [0, {self.continuum_capacity}] (continuum_capacity), "
                f"got {self.continuum_k!r}"
            )
        if self.continuum_k and self.method != "implicit":
            raise ChronosError(
                f"continuum memory warm-starts CG: needs method 'implicit', got {self.method!r}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ChronosError(f"max_steps must be >= 1 or None, got {self.max_steps!r}")


class NestedWorker:
    """One worker process: its own copy of the problem, inner state, filter and memory."""

    def __init__(
        self, worker_id: str, task: str, seed: int, config: WorkerConfig, fault: WorkerFault | None = None
    ) -> None:
        self.reset(worker_id, task, seed, config, fault)

    def reset(
        self, worker_id: str, task: str, seed: int, config: WorkerConfig, fault: WorkerFault | None = None
    ) -> str:
        """(Re)build all state for a new run, so a pooled actor process can be reused."""
        torch.set_num_threads(config.torch_threads)
        self.worker_id, self.config, self.fault = worker_id, config, fault or WorkerFault()
        self.problem = make_problem(task, seed=seed, **config.task_options)
        self.w = self.problem.init_inner()
        self.generator = torch.Generator().manual_seed(seed * 100_003 + zlib.crc32(worker_id.encode()))
        self.outer = MultiTimescaleSGD(
            config.outer_lr, self.problem.num_outer, config.timescales, config.clip_norm
        )
        self.filter = SignificanceFilter(config.sparse) if config.sparse is not None else None
        self.memory = (
            ContinuumMemory(config.continuum_capacity, config.continuum_k) if config.continuum_k else None
        )
        self.stats = {
            "steps": 0,
            "commits": 0,
            "skipped": 0,
            "cg_iterations": 0,
            "compute_s": 0.0,
            "comm_s": 0.0,
            "accepted": 0,
            "rejected": 0,
        }
        return worker_id

    def ready(self) -> str:
        """Warm up (first torch.func / autograd calls are slow) so start-up is not timed; returns the id."""
        problem = self.problem
        theta, w0 = problem.init_outer(), problem.init_inner()
        if self.config.method == "unrolled":
            unrolled_hypergradient(problem, theta, w0, 1)
        else:
            implicit_hypergradient(problem, theta, problem.run_inner(theta, w0, 1), max_cg_iters=2)
        return self.worker_id

    def hypergradient(self, theta: torch.Tensor) -> Hypergradient:
        """One hypergradient at theta on a fresh validation mini-batch (updates the inner state)."""
        cfg, problem = self.config, self.problem
        batch = None
        if cfg.val_batch_size is not None and cfg.val_batch_size < problem.num_val:
            batch = torch.randperm(problem.num_val, generator=self.generator)[: cfg.val_batch_size]
        w0 = self.w if cfg.warm_start_inner else problem.init_inner()
        if cfg.method == "unrolled":
            hg = unrolled_hypergradient(problem, theta, w0, cfg.inner_steps, batch)
        else:
            w = problem.run_inner(theta, w0, cfg.inner_steps)
            v0 = self.memory.predict(theta, "v") if self.memory is not None else None
            hg = implicit_hypergradient(
                problem, theta, w, batch, cfg.damping, cfg.max_cg_iters, cfg.cg_tol, v0
            )
            if self.memory is not None:
                self.memory.store(theta, {"v": hg.cg_solution}, self.stats["steps"])
        if cfg.warm_start_inner and bool(torch.isfinite(hg.inner).all()):
            self.w = hg.inner
        self.stats["cg_iterations"] += hg.cg_iterations
        return hg

    def run(self, coordinator) -> dict:
        """Work until the coordinator says stop (or max_steps); returns this worker's counters.

        Stop arrives in the reply to a commit, i.e. right after this worker sent its residual, so a
        sparse worker never leaves unsent updates behind; at max_steps it flushes the residual first.
        """
        cpu_start = time.process_time()
        reply = self._call(coordinator.checkout, {"worker": self.worker_id})
        dtype, max_steps = self.problem.dtype, self.config.max_steps
        while not reply["stop"]:
            version = reply["version"]
            theta = torch.as_tensor(np.asarray(reply["theta"]), dtype=dtype)
            while True:  # local steps on this checkout: one, unless sparse sync holds the update back
                self.stats["steps"] += 1
                step = self.stats["steps"]
                last = max_steps is not None and step >= max_steps
                if self.fault.die_at_step == step:
                    log.warning(
                        "worker %s exits on purpose at step %d (fault injection)", self.worker_id, step
                    )
                    os._exit(1)
                start = time.perf_counter()
                delta = self.outer.step(self.hypergradient(theta).grad)
                self.stats["compute_s"] += time.perf_counter() - start
                if self.fault.nan_at_step == step:
                    to_send = torch.full_like(delta, float("nan"))
                elif self.filter is None:
                    to_send = delta
                else:
                    if bool(torch.isfinite(delta).all()):  # a non-finite update is dropped by the filter
                        theta = theta + delta
                    to_send = self.filter.offer(delta, theta)
                    if to_send is None and last:
                        to_send = self.filter.flush()
                if to_send is not None or last:
                    break
                self.stats["skipped"] += 1
            reply = self._commit(coordinator, version, to_send)
            if max_steps is not None and self.stats["steps"] >= max_steps:
                if not reply["stop"]:
                    ray.get(coordinator.release.remote(self.worker_id))
                break
        self.stats.update(self._filter_stats(), cpu_s=time.process_time() - cpu_start)
        return {"worker": self.worker_id, **self.stats}

    def _commit(self, coordinator, version: int, delta: torch.Tensor | None) -> dict:
        message = {
            "worker": self.worker_id,
            "version": version,
            "delta": None if delta is None else delta.detach().cpu().numpy(),
        }
        reply = self._call(coordinator.commit, message)
        self.stats["commits"] += 1
        self.stats["accepted" if reply["accepted"] else "rejected"] += 1
        return reply

    def _call(self, method, message: dict) -> dict:
        start = time.perf_counter()
        reply = decode(ray.get(method.remote(encode(message))))
        self.stats["comm_s"] += time.perf_counter() - start
        return reply

    def _filter_stats(self) -> dict:
        if self.filter is None:
            return {"send_fraction": 1.0, "dropped": 0}
        return {"send_fraction": self.filter.send_fraction, "dropped": self.filter.dropped}
