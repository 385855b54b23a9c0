"""Measurement quality of the profiler, written to results/measurement_quality.{csv,md,png}.

1. Repeatability: median CV across repeats of the committed CPU tables (meta_datasets/cpu-*/),
   target < 3%, on both clocks the profiler reads (wall time and process CPU time).
2. Agreement: the profiler's compute_ms against an independent plain timing loop (one
   pre-made batch, forward + loss + backward + step, one clock around N iterations; no
   DataLoader, no per-iteration sync) on 5 configurations, target within 5%. The two are
   interleaved `rounds` times and each side's median is compared, so slow drifts in machine
   load hit both alike.

Run pinned to one core, as the sweeps were:
    taskset -c 0 .venv/bin/python benchmarks/measurement_quality.py
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from chronos_core.catalog.models import Models  # noqa: E402
from chronos_core.profiling.aggregate import load_measured, measured_folder, median_cv  # noqa: E402
from chronos_core.profiling.environment import capture_environment  # noqa: E402
from chronos_core.profiling.timers import TimingConfig, dataset_spec, time_training  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
TARGET_CV, TARGET_AGREEMENT = 0.03, 0.05

AGREEMENT_CONFIGS = [
    dict(model="SimpleCNN", dataset="CIFAR10", batch_size=32, precision="32", optimizer="SGD"),
    dict(model="ResNet18", dataset="CIFAR10", batch_size=8, precision="32", optimizer="Adam"),
    dict(model="MLP-Mixer", dataset="CIFAR10", batch_size=16, precision="bf16", optimizer="SGD"),
    dict(model="LSTM", dataset="SST2", batch_size=32, precision="32", optimizer="Adam", input_shape=(32,)),
    dict(
        model="ViT",
        dataset="CIFAR10",
        batch_size=16,
        precision="32",
        optimizer="SGD",
        model_kwargs=dict(image_size=32, patch_size=4, depth=4, num_heads=4, embed_dim=128, mlp_dim=256),
    ),
]


def plain_loop_ms(cfg: dict, iters: int, warmup: int) -> tuple[float, float]:
    """Mean ms per training step of the simplest possible loop (independent of chronos' timer):
    (wall clock, process CPU time)."""
    kwargs = cfg.get("model_kwargs", {})
    spec = dataset_spec(cfg["dataset"], cfg.get("input_shape"), cfg["model"], **kwargs)
    torch.manual_seed(0)
    model = Models.get(cfg["model"]).build(spec, **kwargs)
    model.train()
    if spec.modality == "text":
        x = torch.randint(0, spec.vocab_size, (cfg["batch_size"], *spec.input_shape))
    else:
        x = torch.randn(cfg["batch_size"], *spec.input_shape)
    y = torch.randint(0, spec.num_classes, (cfg["batch_size"],))
    opt_cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam}[cfg["optimizer"]]
    opt = opt_cls(model.parameters(), lr=0.01)
    amp = cfg["precision"] == "bf16"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    return 1000.0 * (time.perf_counter() - start) / iters, 1000.0 * (time.process_time() - cpu) / iters


def profiler_ms(cfg: dict, iters: int, warmup: int) -> tuple[float, float]:
    timing = TimingConfig(
        cfg["model"],
        cfg["dataset"],
        cfg["batch_size"],
        cfg["precision"],
        cfg["optimizer"],
        input_shape=cfg.get("input_shape"),
        model_kwargs=cfg.get("model_kwargs", {}),
        repeats=1,
        warmup=warmup,
        iters=iters,
    )
    summary = time_training(timing, capture_env=False).summary()
    return summary["compute_ms"], summary["compute_cpu_ms"]


def agreement(rounds: int, iters: int, warmup: int) -> pd.DataFrame:
    rows = []
    for cfg in AGREEMENT_CONFIGS:
        plain, prof = [], []
        for _ in range(rounds):
            plain.append(plain_loop_ms(cfg, iters, warmup))
            prof.append(profiler_ms(cfg, iters, warmup))
        label = f"{cfg['model']} bs{cfg['batch_size']} {cfg['precision']} {cfg['optimizer']}"
        row = {"config": label}
        for i, clock in enumerate(("wall", "cpu")):
            p = statistics.median(v[i] for v in plain)
            q = statistics.median(v[i] for v in prof)
            row[f"plain_loop_{clock}_ms"] = p
            row[f"profiler_compute_{clock}_ms"] = q
            row[f"relative_diff_{clock}"] = (q - p) / p
        row["plain_rounds_wall_ms"] = [round(v[0], 3) for v in plain]
        row["profiler_rounds_wall_ms"] = [round(v[0], 3) for v in prof]
        rows.append(row)
        print(
            f"  {label}: wall {row['plain_loop_wall_ms']:.2f} vs {row['profiler_compute_wall_ms']:.2f} ms"
            f" ({100 * row['relative_diff_wall']:+.1f}%), cpu {row['plain_loop_cpu_ms']:.2f} vs"
            f" {row['profiler_compute_cpu_ms']:.2f} ms ({100 * row['relative_diff_cpu']:+.1f}%)",
            flush=True,
        )
    return pd.DataFrame(rows)


def repeatability(device: str | None) -> pd.DataFrame:
    models = load_measured("models", device)
    layers = load_measured("layers", device)
    rows = []
    for table, frame, columns in (
        (
            "models",
            models,
            ["batch_time_ms", "compute_ms", "loader_wait_ms", "batch_time_cpu_ms", "compute_cpu_ms"],
        ),
        ("layers", layers, ["fwd_ms", "train_ms", "fwd_cpu_ms", "train_cpu_ms"]),
    ):
        for column in columns:
            if f"{column}_cv" not in frame:
                continue
            cv = frame[f"{column}_cv"].astype(float).dropna()
            rows.append(
                {
                    "table": table,
                    "column": column,
                    "configs": len(cv),
                    "median_cv": median_cv(frame, column),
                    "p90_cv": float(cv.quantile(0.9)),
                    "share_under_3pct": float((cv < TARGET_CV).mean()),
                }
            )
    return pd.DataFrame(rows), models, layers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--device-folder",
        default=None,
        help="meta_datasets/<folder> (default: this CPU's, else the committed one)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = args.device_folder or measured_folder("cpu")
    RESULTS.mkdir(exist_ok=True)

    rep, models, layers = repeatability(folder)
    print(rep.to_string(index=False))
    agree = agreement(args.rounds, args.iters, args.warmup)
    env = capture_environment("cpu", command=" ".join(["python", *sys.argv]))

    table = pd.concat(
        [
            rep.assign(kind="repeatability"),
            agree.drop(columns=["plain_rounds_wall_ms", "profiler_rounds_wall_ms"]).assign(kind="agreement"),
        ],
        ignore_index=True,
    )
    table.to_csv(RESULTS / "measurement_quality.csv", index=False)

    main_cv = rep.set_index(["table", "column"])["median_cv"]

    def verdict(value: float, target: float) -> str:
        return "met" if value <= target else "missed"

    worst = {c: agree[f"relative_diff_{c}"].abs().max() for c in ("wall", "cpu")}
    lines = [
        "# Measurement quality",
        "",
        f"Device: {env.device_name} ({env.cpu_model}), torch {env.torch_version}, {env.threads} thread(s),"
        f" {env.date_utc}, git {env.git_revision}. Command: `{env.command}`.",
        "",
        "Two clocks: wall time (`*_ms`) and this process's CPU time (`*_cpu_ms`). On a single-threaded",
        "CPU run they agree on an idle core; when other jobs share the core, wall time also counts the",
        "time the core spent on them, CPU time does not.",
        "",
        "## Repeatability of the committed tables (CV across repeats)",
        "",
        "| table | column | configs | median CV | p90 CV | share under 3% |",
        "|---|---|---:|---:|---:|---:|",
        *[
            f"| {r.table} | {r.column} | {r.configs} | {100 * r.median_cv:.2f}% | {100 * r.p90_cv:.2f}% |"
            f" {100 * r.share_under_3pct:.0f}% |"
            for r in rep.itertuples()
        ],
        "",
        "Target: median CV < 3%. "
        + "; ".join(
            f"{t} {c}: {100 * main_cv[(t, c)]:.2f}% ({verdict(main_cv[(t, c)], TARGET_CV)})"
            for t, c in [
                ("models", "batch_time_ms"),
                ("models", "batch_time_cpu_ms"),
                ("layers", "train_ms"),
                ("layers", "train_cpu_ms"),
            ]
            if (t, c) in main_cv
        )
        + ".",
        "",
        "## Agreement with an independent plain timing loop",
        "",
        f"Medians of {args.rounds} interleaved rounds of {args.iters} iterations"
        f" (after {args.warmup} warm-up).",
        "",
        "| configuration | plain wall (ms) | profiler wall (ms) | diff"
        " | plain CPU (ms) | profiler CPU (ms) | diff |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r.config} | {r.plain_loop_wall_ms:.2f} | {r.profiler_compute_wall_ms:.2f}"
            f" | {100 * r.relative_diff_wall:+.1f}% | {r.plain_loop_cpu_ms:.2f}"
            f" | {r.profiler_compute_cpu_ms:.2f}"
            f" | {100 * r.relative_diff_cpu:+.1f}% |"
            for r in agree.itertuples()
        ],
        "",
        f"Target: within 5%. Largest difference: wall clock {100 * worst['wall']:.1f}%"
        f" ({verdict(worst['wall'], TARGET_AGREEMENT)}), CPU clock {100 * worst['cpu']:.1f}%"
        f" ({verdict(worst['cpu'], TARGET_AGREEMENT)}).",
        "",
    ]
    (RESULTS / "measurement_quality.md").write_text("\n".join(lines))

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, (frame, column, title) in zip(
        axes[:2],
        [(models, "batch_time", "model-level batch time"), (layers, "train", "layer training step")],
        strict=True,
    ):
        for clock, color in (("ms", "tab:blue"), ("cpu_ms", "tab:orange")):
            if f"{column}_{clock}_cv" not in frame:
                continue
            cv = 100 * frame[f"{column}_{clock}_cv"].astype(float).dropna()
            label = f"{'wall' if clock == 'ms' else 'CPU'} clock, median {cv.median():.2f}%"
            ax.hist(cv.clip(upper=30), bins=40, color=color, alpha=0.6, label=label)
        ax.axvline(3, color="red", ls="--", label="3% target")
        ax.set(xlabel="CV across repeats (%, clipped at 30)", ylabel="configurations", title=title)
        ax.legend(fontsize=8)
    ax = axes[2]
    y = np.arange(len(agree))
    ax.barh(y - 0.2, 100 * agree["relative_diff_wall"], height=0.4, label="wall clock")
    ax.barh(y + 0.2, 100 * agree["relative_diff_cpu"], height=0.4, label="CPU clock")
    ax.set_yticks(y, agree["config"], fontsize=8)
    ax.legend(fontsize=8)
    ax.axvline(5, color="red", ls="--")
    ax.axvline(-5, color="red", ls="--")
    ax.set(xlabel="profiler vs plain loop (%)", title="agreement on 5 configs")
    fig.tight_layout()
    fig.savefig(RESULTS / "measurement_quality.png", dpi=120)
    print(f"wrote {RESULTS / 'measurement_quality.csv'}, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
