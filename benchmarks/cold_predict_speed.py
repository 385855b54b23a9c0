"""Benchmark: a cold `chronos predict` (new process) after one earlier run, against
`python -c "import torch, torchvision"` (issue 13: it must take no longer).

Each command runs in a fresh interpreter, `REPEATS` times, alternating, median reported; the first
`chronos predict` of each request (the earlier run that fills the caches) is timed apart. Also timed:
a request never made before (static features cached on disk, nothing else). Writes
results/cli/cold_predict_speed.csv and .md. Run: python benchmarks/cold_predict_speed.py
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "results" / "cli" / "cold_predict_speed"
REPEATS = 5
PREDICT = ["-m", "chronos_core", "predict", "--dataset", "cifar100", "--batch-size", "32", "--precision",
           "16", "--optimizer", "sgd", "--lr", "0.001"]  # fmt: skip
REQUESTS = {
    "vgg16 on T4": ["--model", "vgg16", "--gpu", "T4"],
    "resnet50 on H100-SXM": ["--model", "resnet50", "--gpu", "H100-SXM"],
}


def _run(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return elapsed


def main(repeats: int = REPEATS) -> pd.DataFrame:
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "CHRONOS_CACHE_DIR": cache}
        for label, request in REQUESTS.items():
            first = _run(PREDICT + request, env)
            rows.append({"what": f"chronos predict {label}, first run (fills the caches)", "median_s": first})
            torch_s, predict_s = [], []
            for _ in range(repeats):
                torch_s.append(_run(["-c", "import torch, torchvision"], env))
                predict_s.append(_run(PREDICT + request, env))
            torch_label = "python -c 'import torch, torchvision'"
            rows.append({"what": torch_label, "median_s": statistics.median(torch_s)})
            rows.append({"what": f"chronos predict {label}, after one earlier run",
                         "median_s": statistics.median(predict_s)})  # fmt: skip
        new = ["--model", "resnet18", "--gpu", "A100", "--batch-size", "64"]
        rows.append({"what": "chronos predict resnet18 on A100 (never asked; features on disk)",
                     "median_s": _run(PREDICT + new, env)})  # fmt: skip
    table = pd.DataFrame(rows).groupby("what", sort=False, as_index=False)["median_s"].median()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT.with_suffix(".csv"), index=False)
    lines = [
        "# Cold `chronos predict` against importing torch",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"median of {repeats} fresh processes each (alternating); load average at the end "
        f"{os.getloadavg()[0]:.1f}. Command: `python benchmarks/cold_predict_speed.py`.",
        "",
        "| what | seconds |",
        "| --- | ---: |",
        *[f"| {r.what} | {r.median_s:.2f} |" for r in table.itertuples()],
        "",
    ]
    OUT.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    return table


if __name__ == "__main__":
    print(main().to_string(index=False))
