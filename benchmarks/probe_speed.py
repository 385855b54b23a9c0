"""Speed of all init-time probes for a ResNet-18 (torchvision, 10 classes) at batch 64 on 32x32 inputs.

Target (issue 5): under 3 s on this CPU. Also measures how far the fast sketch estimator is from the
exact per-sample statistics on a model small enough to compute them exactly. Writes
results/convergence/probe_speed.md. Run pinned: taskset -c 1 python benchmarks/probe_speed.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

from chronos_core.probes import ProbeConfig, per_sample_stats_exact, per_sample_stats_sketch, probe_model

OUT = Path(__file__).resolve().parents[1] / "results" / "convergence" / "probe_speed.md"


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def sketch_error(repeats: int = 20) -> dict[str, tuple[float, float]]:
    """Relative bias and spread of the sketch (default repeats) against exact stats on a small CNN."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    ).eval()  # fmt: skip
    x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))
    exact = per_sample_stats_exact(model, x, y, 10)
    cfg = ProbeConfig()
    runs = [per_sample_stats_sketch(model, x, y, cfg.sketch_repeats, seed=s) for s in range(repeats)]
    out = {}
    for key in ("grad_sq_norm", "trace_sigma", "ntk_trace"):
        values = np.array([r[key] for r in runs]) / exact[key]
        out[key] = (float(values.mean() - 1), float(values.std()))
    return out


def main(repeats: int = 5) -> str:
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    probe_model(model, x, y)  # warm-up (allocator, first-call overheads)
    results = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = probe_model(model, x, y)
        results.append((time.perf_counter() - t0, res))
    totals = [t for t, _ in results]
    median = statistics.median(totals)
    last = results[-1][1]
    parts = {k: statistics.median(r.seconds[k] for _, r in results) for k in last.seconds if k != "total"}
    errors = sketch_error()
    load = os.getloadavg()[0]
    cfg = ProbeConfig()
    lines = [
        "# Probe speed: ResNet-18, batch 64, 32x32, 10 classes",
        "",
        f"CPU: {_cpu_name()}; torch {torch.__version__}; {threads} thread(s); affinity "
        f"{sorted(os.sched_getaffinity(0))}; load average {load:.1f} on {os.cpu_count()} cores "
        "(shared machine, so the minimum is the best estimate of an idle core).",
        "",
        "Probes: initial loss, per-sample gradient norm (mean ||g_i||^2), batch gradient norm, tr(Sigma) "
        "and gradient noise scale, NTK trace (mean tr J_i J_i^T), Hessian top eigenvalue "
        f"({cfg.hessian_iters} HVPs, Lanczos, {cfg.hessian_batch} samples). Estimator chosen: "
        f"`{last.method}` ({last.n_params:,} parameters).",
        "",
        "| what | median | min | target |",
        "| --- | --- | --- | --- |",
        f"| all probes, {repeats} repeats | {median:.2f} s | {min(totals):.2f} s | < 3 s |",
        *[f"| {k} | {v:.2f} s | | |" for k, v in parts.items()],
        "",
        f"Result: {'PASS' if median < 3.0 else 'MISS'} (median {median:.2f} s against 3 s).",
        "",
        "Values: "
        + ", ".join(
            f"{k}={v:.4g}" for k, v in last.as_dict().items() if not k.startswith(("seconds", "n_", "method"))
        ),
        "",
        "## Sketch estimator against exact per-sample statistics (small CNN, batch 64, 20 seeds)",
        "",
        "| quantity | relative bias | relative spread (1 sd) |",
        "| --- | --- | --- |",
        *[f"| {k} | {b:+.3f} | {s:.3f} |" for k, (b, s) in errors.items()],
        "",
    ]
    text = "\n".join(lines)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return text


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(main(args.repeats))
