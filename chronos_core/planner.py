"""Budgeted run selection: exact 0/1 knapsack over candidate runs (the A100 project's phase 8).

cost = seconds per epoch x epochs (optionally the p80 upper bound of a predicted time), value =
accuracy or throughput; a second, dollar budget makes it a two-constraint knapsack (which GPU and
config to rent). Costs are discretised to `resolution_s` (rounded up, so a plan never overruns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from chronos_core import validation as v
from chronos_core.errors import ChronosError

VALUES = ("acc", "thr")
TIME_SOURCES = ("measured", "predicted")


@dataclass(frozen=True)
class PlanRequest:
    """What to optimise and under which budgets."""

    budget_sec: float
    epochs: int = 50
    value: str = "acc"
    min_acc: float | None = None
    time_source: str = "measured"
    budget_usd: float | None = None
    resolution_s: float | None = None  # default: budget / 4000, at least 1 s
    use_upper_bound: bool = False  # plan with the interval's upper time (p80/p90) instead of the point

    def __post_init__(self) -> None:
        v.positive_float("budget_sec", self.budget_sec)
        v.positive_int("epochs", self.epochs)
        if self.value not in VALUES:
            raise ChronosError(f"Unknown value {self.value!r}. Known: {', '.join(VALUES)}")
        if self.time_source not in TIME_SOURCES:
            raise ChronosError(f"Unknown time source {self.time_source!r}. Known: {', '.join(TIME_SOURCES)}")
        if self.min_acc is not None:
            v.fraction("min_acc", self.min_acc)
        if self.budget_usd is not None:
            v.positive_float("budget_usd", self.budget_usd)
        if self.resolution_s is not None:
            v.positive_float("resolution_s", self.resolution_s)

    @property
    def step_s(self) -> float:
        return self.resolution_s or max(1.0, self.budget_sec / 4000.0)


@dataclass
class Plan:
    """The chosen runs and how they were chosen."""

    request: PlanRequest
    candidates: pd.DataFrame  # with cost_s, value (and cost_usd) columns
    chosen: pd.DataFrame
    total_value: float
    total_cost_s: float
    total_cost_usd: float | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. candidates dropped for missing values

    def explain(self) -> str:
        """A report in the spirit of the A100 project's dp_plan_*.txt files."""
        r = self.request
        lines = [
            "DP TIME-BUDGET PLANNER (exact 0/1 knapsack)",
            f"Budget: {r.budget_sec:g} s (~{r.budget_sec / 60:.2f} min)"
            + (f" and ${r.budget_usd:g}" if r.budget_usd else ""),
            f"Epochs per run: {r.epochs}   value: {r.value}   time source: {r.time_source}"
            + ("   (planned at the interval's upper bound)" if r.use_upper_bound else ""),
            f"min_acc filter: {r.min_acc}   candidates: {len(self.candidates)}   "
            f"time resolution: {r.step_s:g} s",
            "",
            f"Chosen runs: {len(self.chosen)}   total value: {self.total_value:.6g}",
            f"Total time: {self.total_cost_s:.0f} s ({100 * self.total_cost_s / r.budget_sec:.1f}% of budget)"
            + (f"   total cost: ${self.total_cost_usd:.2f}" if self.total_cost_usd is not None else ""),
        ]
        if len(self.chosen):
            lines += ["", self.chosen.to_string(index=False, float_format=lambda v: f"{v:.4g}")]
        lines += [""] + [f"- {n}" for n in self.notes] + [f"- warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def knapsack(costs: np.ndarray, values: np.ndarray, capacity: int) -> list[int]:
    """Exact 0/1 knapsack with integer costs: indices of the best subset (dp over capacity)."""
    costs = np.asarray(costs, dtype=np.int64)
    values = np.asarray(values, dtype=float)
    if (costs < 0).any():
        raise ChronosError("knapsack costs must be non-negative")
    n = len(costs)
    best = np.zeros(capacity + 1)
    take = np.zeros((n, capacity + 1), dtype=bool)
    for i in range(n):
        c = costs[i]
        if c > capacity:
            continue
        shifted = np.full(capacity + 1, -np.inf)
        shifted[c:] = best[: capacity + 1 - c] + values[i]
        better = shifted > best + 1e-12
        take[i] = better
        best = np.where(better, shifted, best)
    chosen, t = [], capacity
    for i in range(n - 1, -1, -1):
        if take[i, t]:
            chosen.append(i)
            t -= costs[i]
    return sorted(chosen)


def knapsack_2d(
    costs_a: np.ndarray, costs_b: np.ndarray, values: np.ndarray, cap_a: int, cap_b: int
) -> list[int]:
    """Exact 0/1 knapsack under two budgets (e.g. seconds and cents)."""
    costs_a = np.asarray(costs_a, dtype=np.int64)
    costs_b = np.asarray(costs_b, dtype=np.int64)
    n = len(values)
    best = np.zeros((cap_a + 1, cap_b + 1))
    take = np.zeros((n, cap_a + 1, cap_b + 1), dtype=bool)
    for i in range(n):
        a, b = costs_a[i], costs_b[i]
        if a > cap_a or b > cap_b:
            continue
        shifted = np.full_like(best, -np.inf)
        shifted[a:, b:] = best[: cap_a + 1 - a, : cap_b + 1 - b] + values[i]
        better = shifted > best + 1e-12
        take[i] = better
        best = np.where(better, shifted, best)
    chosen, ta, tb = [], cap_a, cap_b
    for i in range(n - 1, -1, -1):
        if take[i, ta, tb]:
            chosen.append(i)
            ta, tb = ta - costs_a[i], tb - costs_b[i]
    return sorted(chosen)


def plan_runs(
    candidates: pd.DataFrame,
    request: PlanRequest,
    time_col: str = "epoch_time_s",
    upper_col: str = "epoch_time_s_hi",
    acc_col: str = "acc",
    thr_col: str = "thr",
    price_col: str = "price_per_hr",
) -> Plan:
    """Choose the subset of candidate runs with the largest total value within the budget(s)."""
    need = [time_col, acc_col if request.value == "acc" or request.min_acc is not None else thr_col]
    if request.use_upper_bound:
        need.append(upper_col)
    if request.budget_usd is not None:
        need.append(price_col)
    missing = [c for c in need if c not in candidates.columns]
    if missing:
        raise ChronosError(f"Candidate table lacks columns {missing}; it has {list(candidates.columns)}")
    table = candidates.reset_index(drop=True).copy()
    notes: list[str] = []
    warnings: list[str] = []
    time_used = upper_col if request.use_upper_bound else time_col
    value_col = acc_col if request.value == "acc" else thr_col
    checks = {time_used: v.positive_float, value_col: v.finite_float}
    if request.min_acc is not None:
        checks[acc_col] = v.finite_float
    if request.budget_usd is not None:
        checks[price_col] = v.non_negative_float
    if price_col in table and price_col not in checks:  # a negative price is wrong even when unused
        checks_all = {**checks, price_col: v.non_negative_float}
    else:
        checks_all = checks
    for col, check in checks_all.items():  # bad cells name their row (1 = first data row); empty are NaN
        table[col] = v.numeric_column(table, col, check)
    missing = table[list(checks)].isna().any(axis=1)
    if missing.any():
        rows = [str(i + 1) for i in np.flatnonzero(missing.to_numpy())]
        shown = ", ".join(rows[:10]) + (f", ... ({len(rows)} in all)" if len(rows) > 10 else "")
        warnings.append(
            f"{len(rows)} candidate(s) without a value in {', '.join(checks)} were left out (rows {shown})"
        )
        table = table[~missing]
    if request.min_acc is not None:
        table = table[table[acc_col] >= request.min_acc]
    table["cost_s"] = table[time_used].astype(float) * request.epochs
    table["value"] = table[value_col].astype(float)
    table = table.reset_index(drop=True)
    step = request.step_s
    cap = int(math.floor(request.budget_sec / step))
    units = np.ceil(table["cost_s"].to_numpy() / step - 1e-9).astype(np.int64)
    if request.budget_usd is not None:
        table["cost_usd"] = table["cost_s"] / 3600.0 * table[price_col].astype(float)
        cents_step = max(1.0, request.budget_usd * 100 / 400)
        cap_b = int(math.floor(request.budget_usd * 100 / cents_step))
        cents = np.ceil(table["cost_usd"].to_numpy() * 100 / cents_step - 1e-9).astype(np.int64)
        idx = knapsack_2d(units, cents, table["value"].to_numpy(), cap, cap_b)
        notes.append(
            f"two budgets: time in {step:g} s units, money in {cents_step:g}-cent units (rounded up)"
        )
    else:
        idx = knapsack(units, table["value"].to_numpy(), cap)
    chosen = table.iloc[idx]
    notes += [
        "0/1 knapsack: each candidate run at most once; dp[t] = best value within t time units",
        f"cost = time per epoch x {request.epochs} epochs, rounded up to {step:g} s: plans never overrun",
        f"complexity O(N x B) with N={len(table)}, B={cap}",
    ]
    return Plan(
        request,
        table,
        chosen,
        float(chosen["value"].sum()),
        float(chosen["cost_s"].sum()),
        float(chosen["cost_usd"].sum()) if "cost_usd" in chosen else None,
        notes,
        warnings,
    )


def _no_fit_warning(gpu: str, row: dict) -> str:
    config = ", ".join(f"{k} {row[k]}" for k in ("depth", "base_filters", "batch_size") if k in row)
    return f"dropped on {gpu}{f' ({config})' if config else ''}: {row.get('memory_note') or 'does not fit'}"


def a100_candidates() -> pd.DataFrame:
    """The A100 project's runs_agg.csv as planner candidates (measured s/epoch, accuracy, throughput)."""
    from chronos_core.data import registry

    agg = registry.read("a100-runs-agg")
    return pd.DataFrame(
        {
            "depth": agg["depth"],
            "base_filters": agg["base_filters"],
            "batch_size": agg["batch_size"],
            "params": agg["params"],
            "acc": agg["acc_mean"],
            "thr": agg["thr_mean"],
            "epoch_time_s": agg["avg_time_mean"],
        }
    )


def candidates_for(request: PlanRequest, path: str | None = None) -> pd.DataFrame:
    """Candidates from a CSV (columns epoch_time_s, acc/thr, optional epoch_time_s_hi, price_per_hr) or
    the A100 project's table; with time_source='predicted', epoch times come from the time model."""
    if path is None:
        table = a100_candidates()
    else:
        table = v.read_csv(path, name="--candidates", as_text=False)
    if request.time_source == "predicted":
        from chronos_core.predict.ann_logspace import predict_a100_epoch_time

        if path is not None:  # the ANN reads these as integers: check them before any fit
            for col in ("depth", "base_filters", "batch_size"):
                if col in table:
                    table[col] = v.numeric_column(table, col, v.positive_int, missing_ok=False)

        table = table.assign(measured_epoch_time_s=table.get("epoch_time_s"))
        table["epoch_time_s"], table["epoch_time_s_hi"] = predict_a100_epoch_time(table)
    return table


def parse_published_plan(text: str) -> dict:
    """The A100 project's dp_plan_*.txt: chosen rows and totals, to compare with our plan."""
    lines = text.splitlines()
    totals = {}
    for line in lines:
        if line.startswith("Total time used:"):
            totals["total_cost_s"] = float(line.split(":")[1].split()[0])
        elif line.startswith("Total value:"):
            totals["total_value"] = float(line.split(":")[1])
        elif line.startswith("Candidates available:"):
            totals["candidates"] = int(line.split(":")[1])
    rows = []
    if "Chosen list:" in lines:
        start = lines.index("Chosen list:") + 2
        for line in lines[start:]:
            parts = line.split()
            if len(parts) != 9:
                break
            depth, filters, batch, params, acc, thr, tpe, epochs, cost = parts
            rows.append(
                {
                    "depth": int(depth),
                    "base_filters": int(filters),
                    "batch_size": int(batch),
                    "params": int(params),
                    "acc": float(acc),
                    "thr": float(thr),
                    "epoch_time_s": float(tpe),
                    "epochs": int(epochs),
                    "cost_s": float(cost),
                }
            )
    return {**totals, "chosen": pd.DataFrame(rows)}


def gpu_candidates(
    configs: pd.DataFrame, gpus: list[str], epochs_train_n: int = 50_000, check_memory: bool = True
) -> pd.DataFrame:
    """The A100 project's CNN configs on each GPU: predicted s/epoch with its 80% interval, and $/hr.

    `configs` has depth, base_filters, batch_size and acc (e.g. `a100_candidates()`); each config is
    the torch twin of their Keras CNN (SimpleCNN, Adam, fp32) and its epoch time comes from the
    default time model. `epoch_time_s_hi` is the upper end of the 80% interval (its p90).

    With `check_memory` every config also gets its predicted peak training memory
    (`chronos_core.features.memory`, fp32 Adam as above) and, per GPU, `gpu_memory_gb`,
    `fits_memory` and `memory_note` ("does not fit: needs X GB, GPU has Y GB", else empty);
    `plan_across_gpus` drops the rows that do not fit and reports them.
    """
    from chronos_core.api import TrainingTimePredictor, device_row
    from chronos_core.catalog.devices import Devices
    from chronos_core.predict.time_models import predict_time

    specs = [Devices.get(g) for g in gpus]
    rows = []
    for cfg in configs.itertuples(index=False):
        base = TrainingTimePredictor(
            model="SimpleCNN", dataset="CIFAR10", optimizer="Adam", batch_size=int(cfg.batch_size),
            precision=32, gpu=specs[0], measure=False,
            model_kwargs={"depth": int(cfg.depth), "base_filters": int(cfg.base_filters)},
        ).row()  # fmt: skip
        for spec in specs:
            extra = {"depth": int(cfg.depth), "base_filters": int(cfg.base_filters), "acc": cfg.acc}
            rows.append({**base, **device_row(spec), **extra, "thr": getattr(cfg, "thr", np.nan)})
    table = pd.DataFrame(rows)
    pred = predict_time(table)
    steps = np.ceil(epochs_train_n / table["batch_size"].astype(float))
    out = table[["device", "depth", "base_filters", "batch_size", "param_count", "acc", "thr"]].copy()
    out = out.rename(columns={"device": "gpu"})
    out["epoch_time_s"] = pred["pred_batch_time_ms"].to_numpy() * steps / 1000.0
    out["epoch_time_s_lo"] = pred["pred_batch_time_ms_lo"].to_numpy() * steps / 1000.0
    out["epoch_time_s_hi"] = pred["pred_batch_time_ms_hi"].to_numpy() * steps / 1000.0
    out["price_per_hr"] = table["gpu_price_per_hr"].to_numpy()
    if check_memory:
        memory = {spec.name: float(spec.memory_gb) for spec in specs}
        peaks = [
            candidate_peak_gb(int(d), int(f), int(b))
            for d, f, b in zip(out["depth"], out["base_filters"], out["batch_size"], strict=True)
        ]
        out = with_memory_check(out, peaks, out["gpu"].map(memory).to_numpy(dtype=float))
    return out.reset_index(drop=True)


def candidate_peak_gb(depth: int, base_filters: int, batch_size: int) -> float:
    """Predicted peak training memory (GB = GiB) of the A100 project's CNN config: the torch twin
    (SimpleCNN on CIFAR10, Adam, fp32), simulated on the meta device; NaN when it cannot be estimated."""
    from chronos_core.features.memory import estimate_training_memory

    try:
        estimate = estimate_training_memory(
            "SimpleCNN", batch_size=batch_size, dataset="CIFAR10", precision="fp32", optimizer="adam",
            model_kwargs={"depth": depth, "base_filters": base_filters},
        )  # fmt: skip
    except ChronosError:
        return float("nan")
    return estimate.peak_gb


def with_memory_check(table: pd.DataFrame, peak_gb, gpu_memory_gb) -> pd.DataFrame:  # noqa: ANN001
    """`table` with peak_memory_gb, gpu_memory_gb, fits_memory and memory_note columns. A candidate
    fits when its peak is at most USABLE_FRACTION of the GPU's memory (an unknown peak or GPU memory
    counts as fitting, with a note)."""
    from chronos_core.features.memory import USABLE_FRACTION

    out = table.copy()
    peak = np.asarray(peak_gb, dtype=float)
    have = np.asarray(gpu_memory_gb, dtype=float)
    known = np.isfinite(peak) & np.isfinite(have) & (have > 0)
    fits = ~known | (peak <= have * USABLE_FRACTION)
    notes = []
    for p, h, k, f in zip(peak, have, known, fits, strict=True):
        if not k:
            notes.append("memory not checked (no estimate or no GPU memory)")
        elif f:
            notes.append("")
        else:
            notes.append(f"does not fit: needs {p:.1f} GB, GPU has {h:g} GB")
    out["peak_memory_gb"] = peak
    out["gpu_memory_gb"] = have
    out["fits_memory"] = fits
    out["memory_note"] = notes
    return out


def plan_across_gpus(candidates: pd.DataFrame, request: PlanRequest) -> tuple[pd.DataFrame, Plan]:
    """Which single GPU to rent: the best plan on each GPU (time and, optionally, dollar budget).

    Returns one row per GPU (runs, value, time, cost; GPUs without a price are skipped under a dollar
    budget) sorted best first, and the winning GPU's plan. Candidates whose `fits_memory` is False
    (see `gpu_candidates`) are dropped first: `dropped_no_fit` counts them per GPU and the GPU's plan
    warns with their `memory_note` ("does not fit: needs X GB, GPU has Y GB"); a GPU on which nothing
    fits is left out of the ranking (ChronosError, with the reasons, when no GPU is left).
    """
    rows, plans = [], {}
    no_fit: list[str] = []
    for gpu, sub in candidates.groupby("gpu", sort=False):
        if request.budget_usd is not None and not (sub["price_per_hr"].astype(float) > 0).all():
            continue
        dropped = sub.iloc[0:0]
        if "fits_memory" in sub:
            fits = sub["fits_memory"].astype(bool)
            dropped, sub = sub[~fits], sub[fits]
        warnings = [_no_fit_warning(gpu, row) for row in dropped.to_dict("records")]
        if sub.empty:
            no_fit.extend(warnings)
            continue
        plan = plan_runs(sub.reset_index(drop=True), request)
        plan.warnings.extend(warnings)
        plans[gpu] = plan
        rows.append({
            "gpu": gpu, "runs": len(plan.chosen), "total_value": plan.total_value,
            "planned_time_s": plan.total_cost_s, "cost_usd": plan.total_cost_usd,
            "price_per_hr": float(sub["price_per_hr"].iloc[0]), "dropped_no_fit": len(dropped),
        })  # fmt: skip
    if not rows:
        if no_fit:
            shown = "; ".join(no_fit[:5]) + (f"; ... ({len(no_fit)} in all)" if len(no_fit) > 5 else "")
            raise ChronosError(f"No candidate fits in any GPU's memory: {shown}")
        raise ChronosError("No GPU has a price for the dollar budget; give price_per_hr or drop --budget-usd")
    table = pd.DataFrame(rows).sort_values(["total_value", "planned_time_s"], ascending=[False, True])
    return table.reset_index(drop=True), plans[table["gpu"].iloc[0]]
