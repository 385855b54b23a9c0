"""How long one epochs-to-convergence prediction from a prefix takes (target: under 50 ms).

    taskset -c 1 .venv/bin/python benchmarks/curve_prior_speed.py

Times the default curve-prior predictor (zero-shot XGBoost + PFN + direct model + the rule's state) on
one row with 10 observed validation losses, the PFN forward pass alone, and fitting the default
predictor (refit, on `DEFAULT_SOURCES`: the public runs); writes results/convergence/curve_prior_speed.md.
The pretraining time comes from the weights' metadata.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from chronos_core.convergence import curve_prior as cpr
from chronos_core.convergence import data
from chronos_core.convergence import pfn as pf

OUT = Path(__file__).resolve().parents[1] / "results" / "convergence" / "curve_prior_speed.md"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def main() -> None:
    t0 = time.perf_counter()
    model = cpr.default_curve_prior(refit=True)
    fit_s = time.perf_counter() - t0
    row = data.cape_table().iloc[[40]].copy()
    row["val_loss_prefix"] = [row["val_loss_prefix"].iloc[0][:10]]
    one_ms = _median_ms(lambda: model.predict(row, k=None), 200)
    many = pd.concat([data.cape_table()] * 4, ignore_index=True)
    batch_ms = _median_ms(lambda: model.predict(many, k=10), 5)
    x = np.zeros((1, pf.N_INPUTS), dtype=np.float32)
    forward_ms = _median_ms(lambda: model.nets_["pretrained"].probs(x), 1000)
    meta = pf.CurvePFN.load().meta
    lines = [
        "# Curve-prior speed",
        "",
        f"Machine: {platform.processor() or platform.machine()}, one thread. Median of repeats.",
        "",
        "| what | time |",
        "| --- | --- |",
        "| one prediction from a 10-epoch prefix (zero-shot + PFN + direct model + rule state) | "
        f"{one_ms:.2f} ms |",
        f"| {len(many)} predictions at k=10 in one call | {batch_ms:.0f} ms "
        f"({batch_ms / len(many):.2f} ms each) |",
        f"| PFN forward pass, one row | {forward_ms:.3f} ms |",
        f"| pretraining the PFN ({meta['train_config']['curves']:,} curves, "
        f"{meta['train_config']['steps']:,} steps) | {meta['seconds_total']:.0f} s |",
        f"| fitting the default predictor on {model.n_rows_} runs (nested choices, fine-tuning, direct "
        f"model) | {fit_s:.0f} s |",
        f"| training in all (pretraining + fitting) | {meta['seconds_total'] + fit_s:.0f} s |",
        "",
    ]
    OUT.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    main()
