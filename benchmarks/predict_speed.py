"""Prediction speed of the default time model: 10,000 rows in one call, and one row warm.

Targets (issue 4): 10,000 rows in under 5 s after the first fit; one prediction from Python in
under 10 ms warm. Writes results/time/predict_speed.md. Run: python benchmarks/predict_speed.py
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

from chronos_core.predict.predict_time_cli import predict_rows
from chronos_core.predict.time_models import default_model, predict_time, training_table

OUT = Path(__file__).resolve().parents[1] / "results" / "time" / "predict_speed.md"
MEASURED = ["compute_ms", "loader_wait_ms", "batch_time_ms"]


def main(n_rows: int = 10_000, single_calls: int = 200) -> str:
    t0 = time.perf_counter()
    table = training_table()
    model = default_model(table)
    first_s = time.perf_counter() - t0

    rows = table.drop(columns=MEASURED).sample(n_rows, replace=True, random_state=0).reset_index(drop=True)
    predict_rows(rows.head(10), model)  # warm caches (catalog lookups, imports)
    t0 = time.perf_counter()
    out = predict_rows(rows, model)
    batch_s = time.perf_counter() - t0
    assert len(out) == n_rows and (out["error"] == "").all()

    one = rows.iloc[0].to_dict()
    predict_time(one, model)
    times = []
    for _ in range(single_calls):
        t0 = time.perf_counter()
        predict_time(one, model)
        times.append(1000 * (time.perf_counter() - t0))
    single_ms = statistics.median(times)
    single_p10 = statistics.quantiles(times, n=10)[0]

    text = "\n".join(
        [
            "# Time-model prediction speed",
            "",
            f"Machine: {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
            f"model `{type(model).__name__}` fitted on {len(table)} rows; "
            f"load average at the end {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (shared machine).",
            "",
            "| what | measured | target |",
            "| --- | --- | --- |",
            f"| load (or first fit) of the default model | {first_s:.1f} s | - |",
            f"| {n_rows:,} rows through `predict_rows` (the CLI path) | {batch_s:.2f} s | < 5 s |",
            f"| one row through `predict_time` (median of {single_calls}, warm) "
            f"| {single_ms:.1f} ms (p10 {single_p10:.1f} ms) | < 10 ms |",
            "",
        ]
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    return text


if __name__ == "__main__":
    print(main())
