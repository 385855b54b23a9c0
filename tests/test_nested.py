"""Distributed nested optimisation: hypergradients against finite differences, staleness bounds,
sparse sync conservation, bad input, and Ray runs with 2 local workers (faults included)."""

from __future__ import annotations

import asyncio
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from chronos_core import _env  # noqa: F401  (before ray)
from chronos_core.errors import ChronosError
from chronos_core.nested.continuum import ContinuumMemory, MultiTimescaleSGD, TimescaleGroup
from chronos_core.nested.coordinator import (
    Coordinator,
    CoordinatorConfig,
    decode,
    encode,
    load_checkpoint,
    save_checkpoint,
)
from chronos_core.nested.experiment import ExperimentSpec, add_time_to_target, summarize, with_baseline
from chronos_core.nested.hypergrad import conjugate_gradient, implicit_hypergradient, unrolled_hypergradient
from chronos_core.nested.inner import HyperCleaning, MLPTuning, WeightedRidge, make_problem
from chronos_core.nested.sparse import SignificanceFilter, SparseSyncConfig
from chronos_core.nested.versioning import BoundedVersionQueue, StalenessPolicy
from chronos_core.nested.worker import WorkerConfig, WorkerFault

F64 = torch.float64


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


def finite_difference(fn, theta: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of a scalar function of theta, one coordinate at a time."""
    out = torch.zeros_like(theta)
    for i in range(len(theta)):
        step = torch.zeros_like(theta)
        step[i] = eps
        out[i] = (fn(theta + step) - fn(theta - step)) / (2 * eps)
    return out


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny problems: intra-op threads only add overhead (and stall badly on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --- small problems in float64 --------------------------------------------------------------------
@pytest.fixture
def ridge() -> WeightedRidge:
    gen = torch.Generator().manual_seed(0)
    x, xv = torch.randn(12, 4, generator=gen, dtype=F64), torch.randn(8, 4, generator=gen, dtype=F64)
    w_true = torch.randn(4, generator=gen, dtype=F64)
    y = x @ w_true + 0.3 * torch.randn(12, generator=gen, dtype=F64)
    return WeightedRidge(x, y, xv, xv @ w_true)


@pytest.fixture
def logistic() -> HyperCleaning:
    gen = torch.Generator().manual_seed(1)
    x, xv = torch.randn(10, 4, generator=gen, dtype=F64), torch.randn(10, 4, generator=gen, dtype=F64)
    y, yv = torch.randint(0, 3, (10,), generator=gen), torch.randint(0, 3, (10,), generator=gen)
    return HyperCleaning(x, y, xv, yv, l2=0.3)


@pytest.fixture
def small_mlp() -> MLPTuning:
    gen = torch.Generator().manual_seed(2)
    x, xv = torch.randn(20, 5, generator=gen, dtype=F64), torch.randn(10, 5, generator=gen, dtype=F64)
    y, yv = torch.randint(0, 3, (20,), generator=gen), torch.randint(0, 3, (10,), generator=gen)
    return MLPTuning(x, y, xv, yv, hidden=6, steps=8, init_lr=0.3, init_weight_decay=1e-2)


def random_theta(n: int, seed: int = 3) -> torch.Tensor:
    return 0.5 * torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_implicit_matches_finite_differences_on_ridge(ridge):
    theta = random_theta(ridge.num_outer)
    hg = implicit_hypergradient(ridge, theta, ridge.solve(theta), cg_tol=1e-14, max_cg_iters=200)
    fd = finite_difference(lambda t: ridge.val_loss(ridge.solve(t), t), theta)
    assert rel_err(hg.grad, fd) < 1e-3
    assert hg.cg_iterations <= ridge.num_inner + 2  # CG is exact in dim steps (up to rounding)


def test_unrolled_matches_finite_differences_on_logistic(logistic):
    theta, w0 = random_theta(logistic.num_outer), logistic.init_inner()
    hg = unrolled_hypergradient(logistic, theta, w0, steps=15)
    fd = finite_difference(lambda t: logistic.val_loss(logistic.run_inner(t, w0, 15), t), theta)
    assert rel_err(hg.grad, fd) < 1e-3
    assert torch.allclose(hg.inner, logistic.run_inner(theta, w0, 15))


def test_implicit_matches_finite_differences_on_logistic(logistic):
    theta = random_theta(logistic.num_outer)
    w_star = logistic.solve(theta)
    hg = implicit_hypergradient(logistic, theta, w_star, cg_tol=1e-14, max_cg_iters=500)
    fd = finite_difference(lambda t: logistic.val_loss(logistic.solve(t, w0=w_star), t), theta, eps=1e-5)
    assert rel_err(hg.grad, fd) < 1e-3


def test_unrolled_learning_rate_and_weight_decay_match_finite_differences(small_mlp):
    theta, w0 = small_mlp.init_outer(), small_mlp.init_inner()
    hg = unrolled_hypergradient(small_mlp, theta, w0, steps=small_mlp.steps)
    fd = finite_difference(lambda t: small_mlp.val_loss(small_mlp.solve(t), t), theta)
    assert rel_err(hg.grad, fd) < 1e-3


@pytest.mark.parametrize("problem_name", ["ridge", "logistic"])
def test_unrolled_and_implicit_agree_where_both_apply(problem_name, request):
    problem = request.getfixturevalue(problem_name)
    theta = random_theta(problem.num_outer)
    w_star = problem.solve(theta)
    implicit = implicit_hypergradient(problem, theta, w_star, cg_tol=1e-14, max_cg_iters=500)
    unrolled = unrolled_hypergradient(problem, theta, w_star, steps=60)  # d w_k / d theta -> d w* / d theta
    assert rel_err(unrolled.grad, implicit.grad) < 1e-3


def test_damping_biases_towards_a_shorter_solve(logistic):
    theta = random_theta(logistic.num_outer)
    w_star = logistic.solve(theta)
    exact = implicit_hypergradient(logistic, theta, w_star, cg_tol=1e-12, max_cg_iters=500)
    damped = implicit_hypergradient(logistic, theta, w_star, damping=1.0, cg_tol=1e-12, max_cg_iters=500)
    assert damped.cg_iterations <= exact.cg_iterations
    assert 0 < rel_err(damped.grad, exact.grad) < 1.0
    with pytest.raises(ChronosError, match="damping"):
        implicit_hypergradient(logistic, theta, w_star, damping=-1.0)


def test_conjugate_gradient_solves_spd_and_warm_start_helps():
    gen = torch.Generator().manual_seed(4)
    m = torch.randn(20, 20, generator=gen, dtype=F64)
    a, b = m @ m.T + 20 * torch.eye(20, dtype=F64), torch.randn(20, generator=gen, dtype=F64)
    x, iters = conjugate_gradient(lambda v: a @ v, b, tol=1e-12)
    assert torch.allclose(a @ x, b, atol=1e-9)
    _, warm_iters = conjugate_gradient(lambda v: a @ v, b, x0=x + 1e-6, tol=1e-12)
    assert warm_iters < iters


# --- versions and staleness ----------------------------------------------------------------------
def test_staleness_weights_and_rejection():
    q = BoundedVersionQueue(max_in_flight=4, max_staleness=2, staleness_decay=0.5)
    assert q.checkout("a") == 0 and q.checkout("b") == 0 and q.checkout("c") == 0
    first = q.commit("a", 0, np.ones(3))
    assert first.accepted and first.weight == 1.0 and first.staleness == 0
    q.advance()
    second = q.commit("b", 0, np.ones(3))
    assert second.accepted and second.staleness == 1 and second.weight == pytest.approx(0.5)
    q.advance()
    q.advance()
    third = q.commit("c", 0, np.ones(3))
    assert not third.accepted and third.reason == "stale" and third.weight == 0.0 and third.staleness == 3
    assert q.rejected["stale"] == 1 and not q.checkouts


def test_max_in_flight_blocks_new_versions_until_released():
    q = BoundedVersionQueue(max_in_flight=2, max_staleness=5)
    assert q.checkout("a") == 0
    q.advance()
    assert q.checkout("b") == 1
    q.advance()
    assert not q.can_checkout() and q.checkout("c") is None  # versions 0 and 1 still out
    assert q.checkout("a") == 2 or True  # 'a' re-checking out gives up version 0 first
    assert q.in_flight_versions == {1, 2}
    assert q.release("b") == 1
    assert q.checkout("c") == 2 and q.in_flight_versions == {2}


def test_nan_commit_is_rejected_and_logged(caplog):
    q = BoundedVersionQueue()
    q.checkout("w")
    with caplog.at_level(logging.WARNING, logger="chronos_core.nested.versioning"):
        result = q.commit("w", 0, np.array([1.0, np.nan]))
    assert not result.accepted and result.reason == "not_finite" and result.weight == 0.0
    assert q.rejected["not_finite"] == 1 and "not_finite" in caplog.text


def test_commit_without_checkout_is_rejected():
    q = BoundedVersionQueue()
    assert q.commit("ghost", 0, np.zeros(2)).reason == "no_checkout"


def test_queue_state_round_trips():
    q = BoundedVersionQueue(3, 2, 0.7)
    q.checkout("a")
    q.advance()
    q.commit("a", 0, np.zeros(1))
    again = BoundedVersionQueue.from_state_dict(q.state_dict())
    assert again.version == 1 and again.policy == q.policy and again.rejected == q.rejected


# --- sparse sync ---------------------------------------------------------------------------------
def test_error_feedback_conserves_every_update_after_flush():
    gen = torch.Generator().manual_seed(5)
    filt = SignificanceFilter(SparseSyncConfig(initial_threshold=0.05, target_send_rate=0.3, max_skips=6))
    theta = torch.randn(50, generator=gen, dtype=F64)
    produced, sent = torch.zeros(50, dtype=F64), torch.zeros(50, dtype=F64)
    for step in range(200):
        delta = torch.randn(50, generator=gen, dtype=F64) * (0.05 / (1 + step / 20))
        theta = theta + delta
        produced += delta
        out = filt.offer(delta, theta)
        if out is not None:
            sent += out
    tail = filt.flush()
    if tail is not None:
        sent += tail
    assert torch.allclose(sent, produced, rtol=0, atol=1e-12)
    assert filt.sent < filt.produced  # it did skip
    assert filt.flush() is None


def test_filter_forces_a_send_after_max_skips_and_adapts_threshold():
    filt = SignificanceFilter(SparseSyncConfig(initial_threshold=1.0, max_threshold=1.0, max_skips=3))
    theta = torch.full((4,), 10.0)
    sends = [filt.offer(torch.full((4,), 1e-4), theta) is not None for _ in range(8)]
    assert sends == [False, False, False, True, False, False, False, True]
    assert filt.threshold < 1.0  # skips lowered it


def test_filter_sends_large_changes_at_once_and_drops_non_finite():
    filt = SignificanceFilter(SparseSyncConfig(initial_threshold=0.01))
    theta = torch.ones(4)
    assert filt.offer(torch.full((4,), 0.5), theta) is not None
    assert filt.offer(torch.tensor([0.0, float("nan"), 0.0, 0.0]), theta) is None
    assert filt.dropped == 1 and filt.residual is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"target_send_rate": 0.0},
        {"target_send_rate": 1.5},
        {"initial_threshold": -0.1},
        {"initial_threshold": 2.0},
        {"min_threshold": 0.0},
        {"adapt_rate": 0.0},
        {"max_skips": -1},
        {"norm_floor": 0.0},
        {"initial_threshold": float("nan")},
    ],
)
def test_bad_threshold_parameters_raise(kwargs):
    with pytest.raises(ChronosError):
        SparseSyncConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"max_staleness": -1}, "max_staleness"),
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"staleness_decay": 0.0}, "staleness_decay"),
        ({"staleness_decay": 1.5}, "staleness_decay"),
        ({"max_staleness": 1.5}, "max_staleness"),
    ],
)
def test_bad_staleness_parameters_raise(kwargs, word):
    with pytest.raises(ChronosError, match=word):
        StalenessPolicy(**kwargs)
    with pytest.raises(ChronosError, match=word):
        CoordinatorConfig(**kwargs)


def test_other_bad_input_raises():
    with pytest.raises(ChronosError, match="Unknown mode"):
        CoordinatorConfig(mode="eventual")
    with pytest.raises(ChronosError, match="Unknown hypergradient method"):
        WorkerConfig(method="zeroth_order")
    with pytest.raises(ChronosError, match="Unknown task"):
        make_problem("imagenet")
    with pytest.raises(ChronosError, match="implicit"):
        WorkerConfig(method="unrolled", continuum_k=2)
    with pytest.raises(ChronosError, match="time_budget_s"):
        CoordinatorConfig(time_budget_s=-1.0)


# --- continuum memory and multi-timescale --------------------------------------------------------
def test_continuum_memory_retrieves_nearest_and_interpolates():
    memory = ContinuumMemory(capacity=3, k=2)
    for i in range(4):  # capacity 3: the first is evicted
        memory.store(torch.tensor([float(i)]), {"v": torch.tensor([10.0 * i])}, step=i)
    assert len(memory) == 3
    near = memory.retrieve_similar(torch.tensor([2.2]))
    assert [e.step for e in near] == [2, 3]
    assert torch.allclose(memory.predict(torch.tensor([3.0]), "v"), torch.tensor([30.0]))
    midway = float(memory.predict(torch.tensor([2.5]), "v"))
    assert midway == pytest.approx(25.0)


def test_multi_timescale_updates_slow_group_with_the_mean_gradient():
    opt = MultiTimescaleSGD(lr=0.1, num_params=2, groups=(TimescaleGroup("slow", 1, 2, update_every=3),))
    deltas = [opt.step(torch.tensor([1.0, float(i)])) for i in range(1, 7)]
    assert [float(d[0]) for d in deltas] == pytest.approx([-0.1] * 6)
    assert [float(d[1]) for d in deltas] == pytest.approx([0, 0, -0.2, 0, 0, -0.5])
    with pytest.raises(ChronosError, match="overlaps"):
        MultiTimescaleSGD(0.1, 2, (TimescaleGroup("a", 0, 2), TimescaleGroup("b", 1, 2)))


# --- coordinator without Ray ---------------------------------------------------------------------
def test_coordinator_release_unblocks_the_in_flight_bound():
    async def scenario():
        coord = Coordinator(np.zeros(2), CoordinatorConfig(mode="async", max_in_flight=1, max_staleness=3))
        await coord.start()
        await coord.checkout(encode({"worker": "a"}))  # 'a' holds version 0
        await coord.checkout(encode({"worker": "c"}))  # version 0 again: the same version, allowed
        commit_c = asyncio.create_task(
            coord.commit(encode({"worker": "c", "version": 0, "delta": np.ones(2)}))
        )
        await asyncio.sleep(0.01)
        assert coord.queue.version == 1  # c's update is applied ...
        assert not commit_c.done()  # ... but its next checkout waits: 'a' still holds version 0
        assert await coord.release("a") == 0  # 'a' died mid-step
        reply = decode(await commit_c)
        assert reply["accepted"] and reply["version"] == 1
        return coord

    coord = asyncio.run(scenario())
    assert np.allclose(coord.get_theta(), 1.0) and coord.report()["released"] == 1


def test_coordinator_sync_round_averages_and_checkpoint_restores(tmp_path):
    async def scenario():
        coord = Coordinator(np.zeros(3), CoordinatorConfig(mode="sync", max_updates=5))
        await coord.start()
        for w in ("a", "b"):
            decode(await coord.checkout(encode({"worker": w})))
        first = asyncio.create_task(coord.commit(encode({"worker": "a", "version": 0, "delta": np.ones(3)})))
        await asyncio.sleep(0.01)
        assert not first.done()  # waits at the barrier for 'b'
        second = decode(await coord.commit(encode({"worker": "b", "version": 0, "delta": 3 * np.ones(3)})))
        assert decode(await first)["version"] == 1 and second["version"] == 1
        return coord

    coord = asyncio.run(scenario())
    assert np.allclose(coord.get_theta(), 2.0)
    report = coord.report()
    assert report["messages_up"] == 4 and report["bytes_up"] > 0 and report["bytes_down"] > 0
    save_checkpoint(coord.state_dict(), tmp_path / "coord.pkl")
    restored = Coordinator.from_state_dict(load_checkpoint(tmp_path / "coord.pkl"))
    assert (
        restored.queue.version == 1
        and np.allclose(restored.get_theta(), 2.0)
        and not restored.queue.checkouts
    )
    assert restored.report()["bytes_up"] == report["bytes_up"]


# --- experiment bookkeeping without Ray ----------------------------------------------------------
def test_time_to_target_and_summary_from_trajectories():
    runs = pd.DataFrame(
        [
            {
                "run_id": r,
                "task": "t",
                "seed": 0,
                "mode": m,
                "num_workers": 1,
                "variant": "base",
                "initial_val_loss": 1.0,
                "final_val_loss": f,
                "final_test_acc": 0.9,
                "bytes": 100,
                "messages": 10,
                "hypergradients": 5,
                "mean_staleness": 0.0,
                "send_fraction": 1.0,
            }
            for r, m, f in [("s", "sync", 0.0), ("a", "async", 0.05), ("p", "async_sparse", 0.5)]
        ]
    )
    traj = pd.DataFrame(
        [
            {"run_id": r, "elapsed_s": t, "val_loss": v, "bytes": 10 * t, "messages": t}
            for r, pts in {
                "s": [(0, 1.0), (2, 0.2), (4, 0.0)],
                "a": [(0, 1.0), (1, 0.05)],
                "p": [(0, 1.0), (3, 0.5)],
            }.items()
            for t, v in pts
        ]
    )
    out = add_time_to_target(runs, traj, fraction=0.9).set_index("run_id")
    assert out.loc["s", "target_val_loss"] == pytest.approx(0.1)
    assert out.loc["s", "time_to_target_s"] == 4 and out.loc["a", "time_to_target_s"] == 1
    assert math.isnan(out.loc["p", "time_to_target_s"])
    table = summarize(out.reset_index()).set_index("mode")
    assert table.loc["async", "time_to_target_s_vs_sync"] == pytest.approx(0.25)
    assert table.loc["async_sparse", "reached"] == "0/1"


def test_with_baseline_swaps_in_the_scaled_sync_runs():
    rows = [
        ("s", "sync", "base", 1),
        ("s2", "sync", "base", 2),
        ("x2", "sync", "sync_lr_x_workers", 2),
        ("a2", "async", "base", 2),
    ]
    runs = pd.DataFrame(
        [
            {"run_id": r, "mode": m, "variant": v, "num_workers": n, "task": "t", "seed": 0}
            for r, m, v, n in rows
        ]
    )
    swapped = with_baseline(runs).set_index("run_id")
    assert sorted(swapped.index) == ["a2", "s", "x2"] and set(swapped["variant"]) == {"base"}
    spec = ExperimentSpec(task="mlp_tuning", mode="sync", num_workers=4, sync_lr_x_workers=True)
    assert spec.run_config().worker.outer_lr == pytest.approx(4 * 0.3) and spec.run_id.endswith("|lrx")


def test_experiment_spec_validates():
    with pytest.raises(ChronosError, match="continuum"):
        ExperimentSpec(task="mlp_tuning", continuum=True)
    with pytest.raises(ChronosError, match="Unknown mode"):
        ExperimentSpec(mode="gossip")
    with pytest.raises(ChronosError, match="sync_lr_x_workers"):
        ExperimentSpec(mode="async", sync_lr_x_workers=True)


# --- Ray: 2 local workers ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_pool():
    ray = pytest.importorskip("ray")
    from chronos_core.nested.runner import LOCAL_SYSTEM_CONFIG, WorkerPool

    # Ray's default worker niceness (15) starves the workers on a busy machine
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _system_config=LOCAL_SYSTEM_CONFIG)
    pool = WorkerPool()
    pool.prestart(3, cpus=0.5)  # 2 workers + a spare for the replaced-worker test, booting in parallel
    yield pool
    pool.close()
    ray.shutdown()


def tiny_run(mode: str = "async", faults=None, **coordinator):
    from chronos_core.nested.runner import RunConfig

    worker = WorkerConfig(
        inner_steps=3,
        outer_lr=50.0,
        val_batch_size=50,
        max_cg_iters=10,
        sparse=SparseSyncConfig() if mode == "async_sparse" else None,
        task_options={"n_train": 120, "n_val": 100},
    )
    return RunConfig(
        task="hyper_cleaning",
        num_workers=2,
        worker=worker,
        cpus_per_worker=0.5,
        coordinator=CoordinatorConfig(mode=mode, **coordinator),
        faults=faults or {},
    )


@pytest.mark.parametrize("mode", ["sync", "async", "async_sparse"])
def test_ray_runs_a_few_outer_steps(ray_pool, mode):
    from chronos_core.nested.runner import run_distributed

    result = run_distributed(tiny_run(mode, max_updates=4), pool=ray_pool)
    report = result.report
    assert report["version"] >= 4 and np.isfinite(result.theta).all() and np.abs(result.theta).sum() > 0
    assert report["in_flight"] == 0 and result.restarts == 0
    steps = sum(w["steps"] for w in result.workers)
    # every message is a checkout or a commit, each a request and a reply
    assert report["messages_up"] == report["messages_down"] == 2 + report["commits"]
    assert report["bytes_up"] > 0 and report["bytes_down"] > 0
    if mode == "sync":
        # a barrier: never stale; each round takes one commit per active worker, and a worker whose Ray
        # process starts late joins from the next round (so 1..2 commits per round, not always 2)
        assert report["staleness_sum"] == 0
        assert report["version"] <= report["accepted"] <= 2 * report["version"]
    if mode == "async_sparse":
        assert report["commits"] <= steps


def test_ray_worker_killed_mid_step_is_replaced_and_its_version_released(ray_pool):
    from chronos_core.nested.runner import run_distributed

    faults = {0: WorkerFault(die_at_step=2)}  # sync: the survivor must not wait for the dead at the barrier
    result = run_distributed(tiny_run("sync", faults=faults, time_budget_s=1.5), pool=ray_pool)
    assert result.restarts == 1
    assert result.report["released"] >= 1 and result.report["in_flight"] == 0
    assert result.report["version"] >= 3
    assert {w["worker"] for w in result.workers} == {"w1", "w0.r1"}


def test_ray_nan_hypergradient_is_rejected_never_applied(ray_pool):
    from chronos_core.nested.runner import run_distributed

    result = run_distributed(
        tiny_run("async", faults={1: WorkerFault(nan_at_step=2)}, max_updates=5), pool=ray_pool
    )
    assert result.report["rejected"]["not_finite"] == 1
    assert np.isfinite(result.theta).all()
    assert all(np.isfinite(h["theta"]).all() for h in result.report["history"])


def test_ray_run_resumes_from_a_checkpoint(ray_pool, tmp_path):
    from chronos_core.nested.runner import run_distributed

    first = run_distributed(tiny_run("async", max_updates=3), pool=ray_pool)
    save_checkpoint(first.state, tmp_path / "state.pkl")
    resumed = run_distributed(
        tiny_run("async", max_updates=6), state=load_checkpoint(tmp_path / "state.pkl"), pool=ray_pool
    )
    assert first.report["version"] >= 3 and resumed.report["version"] >= 6
    assert len(resumed.report["history"]) > len(first.report["history"])
    assert resumed.report["commits"] > first.report["commits"]  # counters carried over
