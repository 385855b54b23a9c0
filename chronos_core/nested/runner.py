"""Drive one distributed run: a coordinator actor, N worker actors, supervision of worker failures.

One code path for a laptop and a cluster: `connect()` starts local Ray or joins `address`. A worker
that dies mid-step is detected (its `run` call fails), its checked-out version is released at the
coordinator, and a replacement actor takes its place (up to `max_restarts` in all).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import ray

from chronos_core import _env  # noqa: F401  (before ray)
from chronos_core.errors import ChronosError
from chronos_core.nested.coordinator import Coordinator, CoordinatorConfig
from chronos_core.nested.inner import make_problem
from chronos_core.nested.worker import NestedWorker, WorkerConfig, WorkerFault

log = logging.getLogger(__name__)


# Ray starts worker processes at nice 15 by default: on a shared machine they then starve behind
# everything else, and timings measure the neighbours. Local clusters started here use nice 0.
LOCAL_SYSTEM_CONFIG = {"worker_niceness": 0}


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start local Ray (address None) or join a cluster (e.g. 'auto', 'ray://head:10001'); idempotent."""
    if ray.is_initialized():
        return
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address is None:
        ray.init(num_cpus=num_cpus, _system_config=LOCAL_SYSTEM_CONFIG, **kwargs)
    else:
        ray.init(address=address, **kwargs)


@dataclass(frozen=True)
class RunConfig:
    """One distributed run: task, workers, coordinator policy, worker recipe, faults to inject."""

    task: str = "hyper_cleaning"
    seed: int = 0
    num_workers: int = 2
    coordinator: CoordinatorConfig = field(default_factory=CoordinatorConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    cpus_per_worker: float = 1.0  # Ray scheduling resource; < 1 packs more workers than cores
    max_restarts: int = 4
    actor_start_timeout_s: float = 300.0
    faults: dict[int, WorkerFault] = field(default_factory=dict)  # worker index -> fault (first incarnation)

    def __post_init__(self) -> None:
        if not (isinstance(self.num_workers, int) and self.num_workers >= 1):
            raise ChronosError(f"num_workers must be an integer >= 1, got {self.num_workers!r}")
        if not self.cpus_per_worker >= 0:
            raise ChronosError(f"cpus_per_worker must be >= 0, got {self.cpus_per_worker!r}")
        if (
            self.coordinator.time_budget_s is None
            and self.coordinator.max_updates is None
            and self.worker.max_steps is None
        ):
            raise ChronosError("a run needs a stopping rule: time_budget_s, max_updates or max_steps")
        if self.coordinator.mode == "async_sparse" and self.worker.sparse is None:
            raise ChronosError("mode 'async_sparse' needs worker.sparse (a SparseSyncConfig)")
        if self.coordinator.mode != "async_sparse" and self.worker.sparse is not None:
            raise ChronosError(
                f"worker.sparse is only used with mode 'async_sparse', got mode {self.coordinator.mode!r}"
            )


@dataclass
class RunResult:
    """What a run produced: final parameters, the coordinator's report and each worker's counters."""

    theta: np.ndarray
    report: dict  # coordinator counters and per-version history
    workers: list[dict]
    restarts: int
    wall_s: float
    state: dict  # coordinator checkpoint at the end (restore with Coordinator.from_state_dict)


class WorkerPool:
    """Worker actors kept alive between runs (saves a process start and the torch import per run)."""

    def __init__(self) -> None:
        self.idle: dict[float, list] = {}  # cpus per worker -> idle actor handles

    def take(self, cpus: float):
        """An idle actor reserving `cpus`, or a new one (idle actors of other sizes are killed first:
        they hold CPU reservations the new one may need)."""
        free = self.idle.get(cpus, [])
        if free:
            return free.pop()
        for size in [s for s in self.idle if s != cpus]:
            for actor in self.idle.pop(size):
                ray.kill(actor)
        return _worker_actor(cpus)

    def prestart(self, count: int, cpus: float) -> None:
        """Start `count` idle actors now (they boot in the background while other work goes on)."""
        self.give_back([_worker_actor(cpus) for _ in range(count)], cpus)

    def give_back(self, actors, cpus: float) -> None:
        self.idle.setdefault(cpus, []).extend(actors)

    def close(self) -> None:
        """Kill every idle actor."""
        for actors in self.idle.values():
            for actor in actors:
                ray.kill(actor)
        self.idle.clear()


def _worker_actor(cpus: float):
    placeholder = WorkerConfig()
    return (
        ray.remote(NestedWorker)
        .options(num_cpus=cpus, max_restarts=0)
        .remote("idle", "hyper_cleaning", 0, placeholder)
    )


def run_distributed(
    config: RunConfig, state: dict | None = None, pool: WorkerPool | None = None
) -> RunResult:
    """Run to the stopping rule; `state` resumes from a coordinator checkpoint; `pool` reuses actors."""
    connect()
    theta0 = (
        state["theta"]
        if state is not None
        else make_problem(config.task, seed=config.seed, **config.worker.task_options).init_outer().numpy()
    )
    coordinator = ray.remote(Coordinator).options(num_cpus=0).remote(theta0, config.coordinator, state=state)
    cpus = config.cpus_per_worker
    owned = pool is None  # a private pool is closed at the end
    pool = pool or WorkerPool()

    def spawn(worker_id: str, fault: WorkerFault | None):
        actor = pool.take(cpus)
        try:
            ray.get(
                actor.reset.remote(worker_id, config.task, config.seed, config.worker, fault),
                timeout=config.actor_start_timeout_s,
            )
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor)
            total = ray.cluster_resources().get("CPU")
            raise ChronosError(
                f"worker actor not up within {config.actor_start_timeout_s} s: cpus_per_worker={cpus} x "
                f"{config.num_workers} workers may exceed the cluster's {total} CPUs"
            ) from None
        return actor

    actors = {f"w{i}": spawn(f"w{i}", config.faults.get(i)) for i in range(config.num_workers)}
    ray.get([a.ready.remote() for a in actors.values()])
    ray.get(coordinator.start.remote())
    start = time.perf_counter()
    running = {actor.run.remote(coordinator): wid for wid, actor in actors.items()}
    finished, dead, restarts, ok = [], set(), 0, False
    try:
        while running:
            done, _ = ray.wait(list(running), num_returns=1)
            wid = running.pop(done[0])
            try:
                finished.append(ray.get(done[0]))
            except ray.exceptions.RayActorError:
                dead.add(wid)
                held = ray.get(coordinator.release.remote(wid))
                log.warning("worker %s died holding version %s", wid, held)
                if restarts >= config.max_restarts or ray.get(coordinator.is_stopped.remote()):
                    continue
                restarts += 1
                new_id = f"{wid.split('.')[0]}.r{restarts}"
                actors[new_id] = spawn(new_id, None)
                ray.get(actors[new_id].ready.remote())
                running[actors[new_id].run.remote(coordinator)] = new_id
        wall_s = time.perf_counter() - start
        result = RunResult(
            theta=ray.get(coordinator.get_theta.remote()),
            report=ray.get(coordinator.report.remote()),
            workers=finished,
            restarts=restarts,
            wall_s=wall_s,
            state=ray.get(coordinator.state_dict.remote()),
        )
        ok = True
        return result
    finally:
        ray.kill(coordinator)
        for wid, actor in actors.items():
            if wid in dead or not ok:  # dead, or possibly still inside run() after an error
                ray.kill(actor)
            else:
                pool.give_back([actor], cpus)
        if owned:
            pool.close()
