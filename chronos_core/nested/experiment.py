"""Measure the HOPE claims: sync vs bounded-async vs bounded-async + sparse sync, 1..N workers, seeds.

`run_experiment(spec)` runs one configuration on Ray and scores it offline: snapshots of theta taken
by the coordinator at each new version are evaluated after the run with the task's own evaluator
(validation loss of the inner solution at theta, test accuracy), so evaluation never costs run time.
`sweep(specs, out_dir)` appends one CSV row per run (resumable) plus the trajectories; then
`add_time_to_target` and `summarize` turn them into the notebook's table.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from chronos_core import _env  # noqa: F401  (before ray)
from chronos_core.errors import ChronosError, unknown_choice
from chronos_core.nested.continuum import TimescaleGroup
from chronos_core.nested.coordinator import MODES, CoordinatorConfig
from chronos_core.nested.inner import TASKS, make_problem
from chronos_core.nested.runner import RunConfig, WorkerPool, connect, run_distributed
from chronos_core.nested.sparse import SparseSyncConfig
from chronos_core.nested.worker import WorkerConfig

log = logging.getLogger(__name__)

# Per-task worker recipe. outer_lr was picked once on the synchronous 1-worker baseline (seed 0) and is
# shared by every mode; nothing here is tuned per mode.
TASK_SETTINGS: dict[str, dict] = {
    "hyper_cleaning": {
        "method": "implicit",
        "inner_steps": 10,
        "warm_start_inner": True,
        "outer_lr": 100.0,
        "val_batch_size": 100,
        "max_cg_iters": 50,
        "cg_tol": 1e-4,
    },
    "mlp_tuning": {
        "method": "unrolled",
        "inner_steps": 40,
        "warm_start_inner": False,
        "outer_lr": 0.3,
        "clip_norm": 1.0,
        "val_batch_size": 100,
    },
}
MLP_TIMESCALES = (TimescaleGroup("log_lr", 0, 1, 1), TimescaleGroup("log_weight_decay", 1, 2, 5))
RUNS_CSV, TRAJECTORIES_CSV = "runs.csv", "trajectories.csv"


@dataclass(frozen=True)
class ExperimentSpec:
    """One cell of the sweep."""

    task: str = "hyper_cleaning"
    mode: str = "sync"
    num_workers: int = 1
    seed: int = 0
    time_budget_s: float = 6.0
    continuum: bool = False  # continuum memory (implicit tasks): warm-start CG from nearest past states
    multi_timescale: bool = False  # mlp_tuning: weight decay updated every 5 hypergradients
    sync_lr_x_workers: bool = False  # sync baseline whose averaged update is scaled by the worker count
    max_in_flight: int = 4
    max_staleness: int = 4
    staleness_decay: float = 0.9
    eval_points: int = 40

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise unknown_choice("task", self.task, TASKS)
        if self.mode not in MODES:
            raise unknown_choice("mode", self.mode, MODES)
        if self.continuum and TASK_SETTINGS[self.task]["method"] != "implicit":
            raise ChronosError(f"continuum memory needs an implicit-hypergradient task, not {self.task!r}")
        if self.sync_lr_x_workers and self.mode != "sync":
            raise ChronosError(f"sync_lr_x_workers applies to mode 'sync', not {self.mode!r}")
        if self.multi_timescale and self.task != "mlp_tuning":
            raise ChronosError(
                f"multi_timescale applies to task 'mlp_tuning' (two outer groups), not {self.task!r}"
            )
        if self.eval_points < 2:
            raise ChronosError(f"eval_points must be >= 2, got {self.eval_points!r}")

    @property
    def run_id(self) -> str:
        return (
            f"{self.task}|{self.mode}|w{self.num_workers}|s{self.seed}|t{self.time_budget_s:g}"
            f"|cm{int(self.continuum)}|mt{int(self.multi_timescale)}"
            + ("|lrx" if self.sync_lr_x_workers else "")
        )

    @property
    def variant(self) -> str:
        """'base' or the ablated feature(s)."""
        parts = [
            name
            for name, on in (
                ("continuum", self.continuum),
                ("multi_timescale", self.multi_timescale),
                ("sync_lr_x_workers", self.sync_lr_x_workers),
            )
            if on
        ]
        return "+".join(parts) or "base"

    def run_config(self, cpus_per_worker: float = 1.0) -> RunConfig:
        settings = dict(TASK_SETTINGS[self.task])
        if self.sync_lr_x_workers:  # the mean of N updates, N times larger: the sum of the workers' steps
            settings["outer_lr"] *= self.num_workers
        worker = WorkerConfig(
            **settings,
            sparse=SparseSyncConfig() if self.mode == "async_sparse" else None,
            continuum_k=4 if self.continuum else 0,
            timescales=MLP_TIMESCALES if self.multi_timescale else (),
        )
        coordinator = CoordinatorConfig(
            self.mode,
            self.max_in_flight,
            self.max_staleness,
            self.staleness_decay,
            time_budget_s=self.time_budget_s,
        )
        return RunConfig(
            task=self.task,
            seed=self.seed,
            num_workers=self.num_workers,
            coordinator=coordinator,
            worker=worker,
            cpus_per_worker=cpus_per_worker,
        )


def default_grid(
    seeds=(0, 1, 2),
    workers=(1, 2, 4),
    tasks=TASKS,
    modes=MODES,
    time_budget_s: float = 6.0,
    ablation_workers: int = 2,
    scaled_sync: bool = True,
) -> list[ExperimentSpec]:
    """Main grid (modes x workers x seeds x tasks; mode order rotated per seed), the two ablations, and
    (scaled_sync) a stronger synchronous baseline with the outer lr multiplied by the worker count."""
    specs = []
    for i, seed in enumerate(seeds):
        rotated = list(modes[i % len(modes) :]) + list(modes[: i % len(modes)])  # no mode always runs first
        for n in workers:
            for mode in rotated:
                for task in tasks:
                    specs.append(ExperimentSpec(task, mode, n, seed, time_budget_s))
        if "hyper_cleaning" in tasks:
            specs.append(
                ExperimentSpec(
                    "hyper_cleaning", "async_sparse", ablation_workers, seed, time_budget_s, continuum=True
                )
            )
        if "mlp_tuning" in tasks:
            specs.append(
                ExperimentSpec(
                    "mlp_tuning", "async_sparse", ablation_workers, seed, time_budget_s, multi_timescale=True
                )
            )
    if scaled_sync and "sync" in modes:
        for seed in seeds:
            for n in (n for n in workers if n > 1):
                for task in tasks:
                    specs.append(ExperimentSpec(task, "sync", n, seed, time_budget_s, sync_lr_x_workers=True))
    return specs


def with_baseline(runs: pd.DataFrame, variant: str = "sync_lr_x_workers") -> pd.DataFrame:
    """`runs` with each base synchronous run replaced by the `variant` run of the same task, workers and
    seed where one exists (relabelled 'base'), so summarize/claims_table compare against that baseline."""
    alt = runs[runs["variant"] == variant]
    keys = set(zip(alt["task"], alt["num_workers"], alt["seed"], strict=True))
    replaced = (
        (runs["variant"] == "base")
        & (runs["mode"] == "sync")
        & np.array([key in keys for key in zip(runs["task"], runs["num_workers"], runs["seed"], strict=True)])
    )
    return pd.concat(
        [runs[~replaced & (runs["variant"] != variant)], alt.assign(variant="base")], ignore_index=True
    )


def _eval_indices(elapsed: np.ndarray, budget_s: float, points: int) -> list[int]:
    """Snapshot indices to evaluate: the latest one at each of `points` evenly spaced times, and the last."""
    picks = {int(np.searchsorted(elapsed, t, side="right")) - 1 for t in np.linspace(0, budget_s, points)}
    return sorted({max(i, 0) for i in picks} | {len(elapsed) - 1})


def _evaluate(problem, thetas: list[np.ndarray]) -> list[dict[str, float]]:
    """Score outer parameters with the task's evaluator, single-threaded (small problems)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return [problem.evaluate(torch.tensor(np.asarray(t), dtype=torch.float32)) for t in thetas]
    finally:
        torch.set_num_threads(threads)


def run_experiment(spec: ExperimentSpec, pool: WorkerPool | None = None) -> tuple[dict, pd.DataFrame]:
    """Run one spec on Ray; returns its metrics row and its evaluated trajectory."""
    import ray

    connect()
    cpus = min(1.0, float(ray.cluster_resources().get("CPU", 1.0)) / spec.num_workers)
    log.info("run %s: %s", spec.run_id, asdict(spec))
    load_before = os.getloadavg()[0]
    result = run_distributed(spec.run_config(cpus), pool=pool)
    load_after = os.getloadavg()[0]
    problem = make_problem(spec.task, seed=spec.seed)
    history = result.report["history"]
    picked = [
        history[i]
        for i in _eval_indices(
            np.array([h["elapsed_s"] for h in history]), spec.time_budget_s, spec.eval_points
        )
    ]
    *scores, final = _evaluate(problem, [h["theta"] for h in picked] + [result.theta])
    keys = ("elapsed_s", "version", "bytes", "messages")
    trajectory = pd.DataFrame(
        [{"run_id": spec.run_id, **{k: h[k] for k in keys}, **s} for h, s in zip(picked, scores, strict=True)]
    )
    rep, workers = result.report, result.workers
    steps = sum(w["steps"] for w in workers)
    traffic = rep["bytes_up"] + rep["bytes_down"]
    row = {
        "run_id": spec.run_id,
        **asdict(spec),
        "variant": spec.variant,
        "wall_s": result.wall_s,
        "versions": rep["version"],
        "hypergradients": steps,
        "commits": rep["commits"],
        "accepted": rep["accepted"],
        "rejected_stale": rep["rejected"]["stale"],
        "rejected_not_finite": rep["rejected"]["not_finite"],
        "bytes": traffic,
        "messages": rep["messages_up"] + rep["messages_down"],
        "bytes_per_hypergradient": traffic / max(steps, 1),
        "mean_staleness": rep["staleness_sum"] / max(rep["accepted"], 1),
        "send_fraction": rep["commits"] / max(steps, 1),
        "cg_iterations_per_step": sum(w["cg_iterations"] for w in workers) / max(steps, 1),
        "compute_s_per_step": sum(w["compute_s"] for w in workers) / max(steps, 1),
        "comm_s_per_step": sum(w["comm_s"] for w in workers) / max(steps, 1),
        "worker_cpu_s": sum(w["cpu_s"] for w in workers),
        "restarts": result.restarts,
        "initial_val_loss": float(trajectory["val_loss"].iloc[0]),
        "final_val_loss": final["val_loss"],
        "final_test_acc": final["test_acc"],
        "cpus_per_worker": cpus,
        "load_avg_before": load_before,
        "load_avg_after": load_after,
    }
    return row, trajectory


def sweep(
    specs: list[ExperimentSpec],
    out_dir: str | Path = "results/nested",
    resume: bool = True,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every spec not already in out_dir/runs.csv, appending a row (and its trajectory) per run."""
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs_path, traj_path = out / RUNS_CSV, out / TRAJECTORIES_CSV
    if not resume:
        runs_path.unlink(missing_ok=True)
        traj_path.unlink(missing_ok=True)
    done = set(pd.read_csv(runs_path)["run_id"]) if runs_path.exists() else set()
    todo = [s for s in specs if s.run_id not in done]
    pool = WorkerPool()
    try:
        for spec in tqdm(todo, desc="nested sweep", disable=not progress):
            row, trajectory = run_experiment(spec, pool=pool)
            trajectory.to_csv(traj_path, mode="a", header=not traj_path.exists(), index=False)
            previous = pd.read_csv(runs_path) if runs_path.exists() else None
            # rewritten whole (tens of rows), so a column added since the last run cannot misalign the file
            pd.concat([previous, pd.DataFrame([row])], ignore_index=True).to_csv(runs_path, index=False)
    finally:
        pool.close()
    return load_results(out)


def load_results(out_dir: str | Path = "results/nested") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs, trajectories) as written by `sweep`."""
    out = Path(out_dir)
    if not (out / RUNS_CSV).exists():
        raise ChronosError(f"No sweep results in {out} (expected {RUNS_CSV}); run the sweep first")
    return pd.read_csv(out / RUNS_CSV), pd.read_csv(out / TRAJECTORIES_CSV)


def add_time_to_target(
    runs: pd.DataFrame, trajectories: pd.DataFrame, fraction: float = 0.9, reference_mode: str = "sync"
) -> pd.DataFrame:
    """Target per (task, seed): initial loss minus `fraction` of the best improvement any reference-mode
    base run reached; adds time/bytes/messages to reach it (NaN when never reached)."""
    if not 0 < fraction <= 1:
        raise ChronosError(f"fraction must be in (0, 1], got {fraction!r}")
    runs = runs.copy()
    for col in ("target_val_loss", "time_to_target_s", "bytes_to_target", "messages_to_target"):
        runs[col] = math.nan
    by_run = dict(tuple(trajectories.sort_values("elapsed_s").groupby("run_id")))
    for (_task, _seed), group in runs.groupby(["task", "seed"]):
        reference = group[(group["mode"] == reference_mode) & (group["variant"] == "base")]
        if reference.empty:
            continue
        start = float(group["initial_val_loss"].max())
        target = start - fraction * (start - float(reference["final_val_loss"].min()))
        for index, run_id in group["run_id"].items():
            traj = by_run.get(run_id)
            runs.loc[index, "target_val_loss"] = target
            if traj is None:
                continue
            hit = traj[traj["val_loss"] <= target]
            if not hit.empty:
                first = hit.iloc[0]
                runs.loc[index, ["time_to_target_s", "bytes_to_target", "messages_to_target"]] = [
                    first["elapsed_s"],
                    first["bytes"],
                    first["messages"],
                ]
    return runs


def summarize(runs: pd.DataFrame, variant: str = "base") -> pd.DataFrame:
    """Mean over seeds per (task, workers, mode), with ratios to the synchronous baseline."""
    base = runs[runs["variant"] == variant]
    metrics = [
        "bytes_to_target",
        "messages_to_target",
        "time_to_target_s",
        "final_test_acc",
        "final_val_loss",
        "bytes",
        "messages",
        "hypergradients",
        "mean_staleness",
        "send_fraction",
    ]
    table = base.groupby(["task", "num_workers", "mode"])[metrics].mean()
    table["test_acc_std"] = base.groupby(["task", "num_workers", "mode"])["final_test_acc"].std()
    table["reached"] = base.groupby(["task", "num_workers", "mode"])["time_to_target_s"].apply(
        lambda s: f"{int(s.notna().sum())}/{len(s)}"
    )
    table["seeds"] = base.groupby(["task", "num_workers", "mode"]).size()
    sync = table.xs("sync", level="mode")
    for col in ("bytes_to_target", "time_to_target_s"):
        table[f"{col}_vs_sync"] = [
            row[col] / sync.loc[(task, n), col] if (task, n) in sync.index else math.nan
            for (task, n, _mode), row in table.iterrows()
        ]
    return table.reset_index()


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Each ablated feature against the base run with the same task, mode, workers and seed."""
    rows = []
    for variant, group in runs[runs["variant"] != "base"].groupby("variant"):
        for _, run in group.iterrows():
            match = runs[
                (runs["variant"] == "base")
                & (runs["task"] == run["task"])
                & (runs["mode"] == run["mode"])
                & (runs["num_workers"] == run["num_workers"])
                & (runs["seed"] == run["seed"])
            ]
            if match.empty:
                continue
            base = match.iloc[0]
            rows.append(
                {
                    "variant": variant,
                    "task": run["task"],
                    "mode": run["mode"],
                    "seed": run["seed"],
                    "num_workers": run["num_workers"],
                    "final_val_loss_on": run["final_val_loss"],
                    "final_val_loss_off": base["final_val_loss"],
                    "test_acc_on": run["final_test_acc"],
                    "test_acc_off": base["final_test_acc"],
                    "time_to_target_on": run.get("time_to_target_s"),
                    "time_to_target_off": base.get("time_to_target_s"),
                    "hypergradients_on": run["hypergradients"],
                    "hypergradients_off": base["hypergradients"],
                    "cg_iters_on": run["cg_iterations_per_step"],
                    "cg_iters_off": base["cg_iterations_per_step"],
                }
            )
    return pd.DataFrame(rows)


def resample_trajectories(
    runs: pd.DataFrame, trajectories: pd.DataFrame, points: int = 25, column: str = "val_loss"
) -> pd.DataFrame:
    """Each run's `column` on a common time grid (value of the latest evaluated snapshot at each time),
    joined with the run's task, mode, workers, seed and variant: ready for mean/sd plots over seeds."""
    rows = []
    for run_id, traj in trajectories.sort_values("elapsed_s").groupby("run_id"):
        meta = runs.loc[runs["run_id"] == run_id]
        if meta.empty:
            continue
        meta = meta.iloc[0]
        grid = np.linspace(0.0, float(meta["time_budget_s"]), points)
        index = np.searchsorted(traj["elapsed_s"].to_numpy(), grid, side="right") - 1
        values = traj[column].to_numpy()[np.clip(index, 0, None)]
        for t, v in zip(grid, values, strict=True):
            rows.append(
                {
                    "run_id": run_id,
                    "time_s": t,
                    column: v,
                    **meta[["task", "mode", "num_workers", "seed", "variant"]].to_dict(),
                }
            )
    return pd.DataFrame(rows)


HOPE_CLAIMS = {"bytes_to_target": -0.40, "time_to_target_s": -0.28}  # their README: -40% traffic, -28% time


def claims_table(summary: pd.DataFrame, baseline: str = "sync") -> pd.DataFrame:
    """Each mode against the synchronous baseline at the same (task, workers): relative change of traffic
    and wall-clock to the target, change of test accuracy (percentage points), and whether HOPE's
    numbers (-40% traffic, -28% wall-clock, no accuracy loss) hold there."""
    rows = []
    indexed = summary.set_index(["task", "num_workers", "mode"])
    for (task, workers, mode), row in indexed.iterrows():
        if mode == baseline or (task, workers, baseline) not in indexed.index:
            continue
        base = indexed.loc[(task, workers, baseline)]
        traffic = row["bytes_to_target"] / base["bytes_to_target"] - 1
        wall = row["time_to_target_s"] / base["time_to_target_s"] - 1
        acc_pp = 100 * (row["final_test_acc"] - base["final_test_acc"])
        rows.append(
            {
                "task": task,
                "num_workers": workers,
                "mode": mode,
                "traffic_to_target_change": traffic,
                "wall_clock_to_target_change": wall,
                "test_acc_change_pp": acc_pp,
                "total_bytes_change": row["bytes"] / base["bytes"] - 1,
                "traffic_claim_holds": bool(traffic <= HOPE_CLAIMS["bytes_to_target"]),
                "wall_clock_claim_holds": bool(wall <= HOPE_CLAIMS["time_to_target_s"]),
                "accuracy_claim_holds": bool(
                    acc_pp >= -0.5
                ),  # within half a point (test-set noise is ~1 point)
            }
        )
    return pd.DataFrame(rows)
