"""Resumable sweep of real training runs: tasks x models x (optimizer, lr, batch) x seeds -> runs.csv.

Each (task, model) pair gets a balanced half of the optimizer x lr x batch grid (every learning rate of
both optimizers, each with one batch size drawn at random), every configuration with `seeds` seeds.
Configurations run in a fixed random order (seeds together), so a sweep stopped early is still a
uniform sample. Rows are appended one at a time; a restarted sweep skips keys already in the CSV.

    taskset -c 1 python -m chronos_core.convergence.sweep --out meta_datasets/convergence/runs.csv
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import subprocess
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from chronos_core.convergence.nets import NETS
from chronos_core.convergence.runner import RunConfig, train_run
from chronos_core.convergence.tasks import TASKS

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("meta_datasets/convergence/runs.csv")


@dataclass
class SweepConfig:
    """The grid. Learning rates are per optimizer; batch sizes are shared."""

    tasks: tuple[str, ...] = tuple(TASKS)
    models: tuple[str, ...] = tuple(NETS)
    learning_rates: dict[str, tuple[float, ...]] = field(
        default_factory=lambda: {"SGD": (0.01, 0.03, 0.1), "AdamW": (3e-4, 1e-3, 3e-3)}
    )
    batch_sizes: tuple[int, ...] = (32, 128)
    seeds: tuple[int, ...] = (0, 1, 2)
    max_epochs: int = 50
    patience: int = 5
    min_delta: float = 1e-4
    order_seed: int = 0


def plan(cfg: SweepConfig) -> list[RunConfig]:
    """All runs of the sweep in execution order."""
    rng = np.random.default_rng(cfg.order_seed)
    configs: list[tuple] = []
    for task in cfg.tasks:
        for model in cfg.models:
            for opt, lrs in cfg.learning_rates.items():
                for lr in lrs:
                    batch = int(rng.choice(cfg.batch_sizes))
                    configs.append((task, model, opt, lr, batch))
    order = rng.permutation(len(configs))
    return [
        RunConfig(
            *configs[i], seed=s, max_epochs=cfg.max_epochs, patience=cfg.patience, min_delta=cfg.min_delta
        )
        for i in order
        for s in cfg.seeds
    ]


def done_keys(path: Path) -> set[str]:
    """Keys of runs already recorded in `path`."""
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    return set(pd.read_csv(path, usecols=["key"])["key"])


def append_row(path: Path, row: dict[str, object]) -> None:
    """Append one row in the existing header's column order (rewrites the file if the row adds columns)."""
    frame = pd.DataFrame([row])
    if path.is_file() and path.stat().st_size > 0:
        header = pd.read_csv(path, nrows=0).columns.tolist()
        if all(c in header for c in frame.columns):
            frame.reindex(columns=header).to_csv(path, mode="a", header=False, index=False)
            return
        merged = pd.concat([pd.read_csv(path), frame], ignore_index=True)  # new columns: rewrite once
        merged.to_csv(path, index=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(path, index=False)


def _git_revision() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_name() -> str:
    try:
        from chronos_core.catalog.devices import local_cpu

        return local_cpu().name
    except Exception:  # catalog.devices is optional here
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
        return platform.processor() or "unknown"


def write_provenance(path: Path, cfg: SweepConfig, argv: Sequence[str], n_planned: int) -> None:
    """Sidecar JSON: machine, library versions, date, git revision, command, grid, definitions."""
    import mnist1d
    import sklearn

    info = {
        "table": path.name,
        "what": "real training runs to convergence (validation-loss early stopping) with init-time probes",
        "device": {"kind": "cpu", "name": _cpu_name(), "cpu_count": os.cpu_count()},
        "threads": torch.get_num_threads(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "sklearn": sklearn.__version__,
        "mnist1d": getattr(mnist1d, "__version__", "unknown"),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_revision": _git_revision(),
        "command": " ".join(["python -m chronos_core.convergence.sweep", *argv]),
        "grid": asdict(cfg),
        "runs_planned": n_planned,
        "definitions": {
            "T_conv": "epoch at which early stopping fired: best epoch + patience, improvement means "
            "val_loss < best - min_delta; max_epochs with converged=False when it never fired",
            "T_best": "epoch of the lowest validation loss",
            "T_red80/T_red90": "first epoch reaching 80%/90% of (epoch-0 val loss - best val loss)",
            "probe_batch_steps_epsXX": "CAPE probe-batch T_star: full-batch AdamW steps on the first "
            "training batch until loss <= eps * initial loss (cap 5000; nan = cap hit); lr = run lr for "
            "AdamW runs, 1e-3 otherwise (probe_batch_lr)",
            "probes": "chronos_core.probes.probe_model on the first training batch at initialization "
            "(eval mode); gradient_norm_log10 = log10 ||batch gradient|| (CHRONOS's quantity), "
            "ntk_trace_proxy_log10 = 2 x that (CHRONOS's proxy), ntk_trace_log10 = per-sample NTK trace",
            "curves": "val_loss_curve / train_loss_curve / val_acc_curve: JSON lists, epoch 1..epochs_run",
            "diverged": "a non-finite training or validation loss ended the run (no targets)",
        },
    }
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():  # a resumed sweep keeps the first start date
        info["started"] = json.loads(sidecar.read_text()).get("started", info["date"])
    else:
        info["started"] = info["date"]
    if path.is_file():
        info["runs_recorded"] = len(done_keys(path))
    sidecar.write_text(json.dumps(info, indent=2) + "\n")


def run_sweep(out: Path, cfg: SweepConfig, limit: int | None = None, argv: Sequence[str] = ()) -> int:
    """Run every planned run not yet in `out`; returns how many were run now."""
    runs = plan(cfg)
    write_provenance(out, cfg, argv, len(runs))
    done = done_keys(out)
    todo = [r for r in runs if r.key not in done][: limit if limit is not None else None]
    ran = 0
    for run in tqdm(todo, desc="convergence runs", initial=len(runs) - len(todo), total=len(runs)):
        try:
            row = train_run(run)
            row["error"] = ""
        except Exception as exc:  # a run that crashes is recorded, the sweep goes on
            log.warning("run %s failed: %s", run.key, exc)
            row = {**asdict(run), "key": run.key, "config_key": run.config_key}
            row["error"] = "".join(traceback.format_exception_only(exc)).strip()[:300]
        append_row(out, row)
        ran += 1
    write_provenance(out, cfg, argv, len(runs))
    return ran


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--limit", type=int, default=None, help="run at most this many new runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=SweepConfig.max_epochs)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    cfg = SweepConfig(max_epochs=args.max_epochs)
    run_sweep(args.out, cfg, args.limit, sys.argv[1:] if argv is None else argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
