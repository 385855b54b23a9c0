"""Which GPU to rent for one training job: the `chronos compare` table (time, cost, memory fit per GPU)
and a fine-tuning plan, a fixed number of epochs on the fastest GPU that fits the job, its dollar
budget and its deadline at the upper end of the 80% interval.

    table = compare_gpus(["--model", "hf:gpt2-medium", "--dataset", "wikitext-103", "--seq-len", "1024",
                          "--batch-size", "8", "--precision", "bf16", "--optimizer", "adamw"], gpus)
    ranked, best = plan_finetune(table, epochs=3, budget_usd=20)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from chronos_core import validation as v
from chronos_core.errors import ChronosError


def compare_gpus(arguments: Sequence[str], gpus: Sequence[str]) -> pd.DataFrame:
    """Exactly `chronos compare ARGUMENTS --gpu G1 --gpu G2 ...` as a DataFrame (same parser, checks and
    cache as the command line)."""
    from chronos_core.api_cli import compare_table
    from chronos_core.cli import build_parser

    if not gpus:
        raise ChronosError("gpus: give at least one GPU")
    argv = ["compare", *arguments, *[part for gpu in gpus for part in ("--gpu", str(gpu))]]
    return compare_table(build_parser().parse_args(argv))


def plan_finetune(
    table: pd.DataFrame,
    epochs: int,
    budget_usd: float,
    deadline_h: float | None = None,
    use_upper_bound: bool = True,
) -> tuple[pd.DataFrame, pd.Series | None]:
    """Rank the GPUs of a `compare_gpus` table for a job of `epochs` epochs: its hours and dollars (point
    and 80% upper end), whether it is feasible and why not (does not fit, not priced, over budget, past
    the deadline), fastest feasible first. Feasibility reads the upper ends unless `use_upper_bound` is
    False. Returns (ranked table, the chosen row or None when no GPU is feasible)."""
    epochs = v.positive_int("epochs", epochs)
    budget_usd = v.positive_float("budget_usd", budget_usd)
    if deadline_h is not None:
        deadline_h = v.positive_float("deadline_h", deadline_h)
    needed = {"gpu", "fits", "epoch_s", "epoch_s_hi", "price_per_hr_usd"}
    missing = sorted(needed - set(table.columns))
    if missing:
        raise ChronosError(f"table lacks columns {missing}: pass a compare_gpus() table")
    out = table.copy()
    price = pd.to_numeric(out["price_per_hr_usd"], errors="coerce")
    out["job_h"] = pd.to_numeric(out["epoch_s"], errors="coerce") * epochs / 3600
    out["job_h_hi"] = pd.to_numeric(out["epoch_s_hi"], errors="coerce") * epochs / 3600
    out["job_usd"] = out["job_h"] * price
    out["job_usd_hi"] = out["job_h_hi"] * price
    hours = out["job_h_hi"] if use_upper_bound else out["job_h"]
    dollars = out["job_usd_hi"] if use_upper_bound else out["job_usd"]
    out["why_not"] = [
        _why_not(bool(fits), h, d, p, budget_usd, deadline_h)
        for fits, h, d, p in zip(out["fits"], hours, dollars, price, strict=True)
    ]
    out["feasible"] = out["why_not"] == ""
    out = out.sort_values(["feasible", "job_h"], ascending=[False, True], na_position="last")
    out = out.reset_index(drop=True)
    best = out.iloc[0] if bool(out["feasible"].iloc[0]) else None
    return out, best


def _why_not(
    fits: bool, hours: float, dollars: float, price: float, budget: float, deadline: float | None
) -> str:
    if not fits:
        return "does not fit in memory"
    if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
        return "not priced"
    if dollars > budget:
        return f"over budget (${dollars:,.2f} > ${budget:,.2f})"
    if deadline is not None and hours > deadline:
        return f"past the deadline ({hours:,.2f} h > {deadline:g} h)"
    return ""


def compare_markdown(table: pd.DataFrame) -> str:
    """The README's table of a `compare_gpus` table: memory fit, tokens/s, hours and dollars per epoch."""
    lines = ["| GPU | fits (peak / GPU memory) | tokens/s (80%) | hours per epoch (80%) | $ per epoch |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    for r in table.itertuples():
        fit = f"{'yes' if r.fits else '**no**'} ({r.peak_memory_gb:.1f} / {r.gpu_memory_gb:g} GB)"
        if not r.fits:
            lines.append(f"| {r.gpu} | {fit} | - | - | - |")
            continue
        tokens = f"{r.tokens_per_s:,.0f} ({r.tokens_per_s_lo:,.0f}-{r.tokens_per_s_hi:,.0f})"
        hours = f"{r.epoch_s / 3600:.2f} ({r.epoch_s_lo / 3600:.2f}-{r.epoch_s_hi / 3600:.2f})"
        price = r.price_per_hr_usd
        dollars = f"{price * r.epoch_s / 3600:.2f}" if pd.notna(price) and price > 0 else "not priced"
        lines.append(f"| {r.gpu} | {fit} | {tokens} | {hours} | {dollars} |")
    return "\n".join(lines) + "\n"
