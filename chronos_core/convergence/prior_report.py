"""Held-out results of the curve-prior predictor (issue 14), written to results/convergence/.

    python -m chronos_core.convergence.prior_report        # ~40 min on one core
    python -m chronos_core.convergence.prior_report --part cape-lomo   # one part (cached; run parts in
    python -m chronos_core.convergence.prior_report --resume           # parallel, then assemble them)

Writes prior_metrics.csv (table x split x model x k x rows), prior_predictions.csv.gz,
zero_shot_ablation.csv (censoring, feature sets, CAPE's probe-batch runs as a transfer feature),
sources.csv (why our runs and the public ones differ) and prior_summary.md. The pretrained PFN's
provenance (training time, config) is read from the weights' metadata.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from chronos_core.convergence import curve_prior as cpr
from chronos_core.convergence import data
from chronos_core.convergence import evaluate as ev
from chronos_core.convergence import models as cm
from chronos_core.convergence import pfn as pf
from chronos_core.convergence.report import RESULTS_DIR, _cached

log = logging.getLogger(__name__)

PRIOR_KS = (1, 2, 3, 5, 7, 10)
TARGETS = {0: 6.5, 3: 5.0, 5: 4.0, 10: 3.0}  # issue 14: MAE (epochs) on unseen models, rows open at k
TABLES = {"public: CAPE_Dataset": "cape", "ours": "ours"}


def factories(
    seed: int = 0, pfn: pf.CurvePFN | None = None, variants: bool = False
) -> dict[str, ev.ModelFactory]:
    """The default predictor and the pretrained prior alone; with `variants`, the direct model alone and
    the nested choice without the ensemble default (the lowest inner MAE wins, as before model version 4)."""
    base = pfn or pf.CurvePFN.load()
    out = {
        "curve_prior": lambda: cpr.CurvePriorPredictor(seed=seed, pfn=base),
        "curve_prior_pretrained_only": lambda: cpr.CurvePriorPredictor(
            seed=seed, pfn=base, finetune_steps=0, direct=False
        ),
    }
    if variants:  # a-priori designs instead of the nested choice (LOMO only: each costs a fit per fold)
        out["curve_prior_direct_only"] = lambda: cpr.CurvePriorPredictor(seed=seed, pfn=base, fixed="direct")
        out["curve_prior_lowest_inner"] = lambda: cpr.CurvePriorPredictor(seed=seed, pfn=base, ensemble=False)
    return out


PARTS = (
    "cape-lomo",
    "ours-lomo",
    "cape-cv",
    "ours-cv",
    "cape-lodo",
    "ours-lodo",
    "cape-lomo-plus",
    "ours-lomo-plus",
)


def compute_part(
    part: str, seed: int = 0, ours_path: Path = data.OURS_PATH, force: bool = True
) -> pd.DataFrame:
    """One cached part of the report ("cape-lomo", "ours-cv", "cape-lomo-plus", ...); parts run in parallel.

    `-plus` trains the default predictor on each fold's training rows plus every row of the other table.
    """
    cape, ours = data.cape_table(), data.ours_table(ours_path)
    short, scheme, *plus = part.split("-")
    frame, other = (cape, ours) if short == "cape" else (ours, cape)
    extra_name = "plus_ours" if short == "cape" else "plus_public"
    tag = f"prior-s{seed}-{len(cape)}-{len(ours)}-v{cpr.MODEL_VERSION}"
    if plus:
        base = pf.CurvePFN.load()
        models = {f"curve_prior_{extra_name}": lambda: cpr.CurvePriorPredictor(seed=seed, pfn=base)}
        compute = lambda: ev.cross_predict(  # noqa: E731
            frame, scheme, models, ks=PRIOR_KS, seed=seed, extra_train=other, extra_name=extra_name
        )
    else:
        models = factories(seed, variants=scheme == "lomo")
        compute = lambda: ev.cross_predict(frame, scheme, models, ks=PRIOR_KS, seed=seed)  # noqa: E731
    out = _cached(f"{part}-{tag}", compute, force)
    out["table"] = "public: CAPE_Dataset" if short == "cape" else "ours"
    return out


# ----------------------------------------------------------------------------- zero-shot ablation
PROBE_BATCH_INPUTS = ("logP", "logB", "logG2", "logTau", "logLR", "logN", "epsilon", "logInitLoss")


def probe_batch_transfer(frame: pd.DataFrame, seed: int = 0) -> np.ndarray:
    """log T_star predicted for each row by XGBoost trained on CAPE's 34,560 probe-batch runs.

    The rows' own configuration and probes in CAPE's units: natural logs, logG2 = log squared gradient
    norm (the NTK proxy in CAPE_Dataset is the same quantity), epsilon 0.1.
    """
    pb = data.probe_batch_table()
    model = ev.probe_batch_regressor(seed)
    model.fit(pb[list(PROBE_BATCH_INPUTS)], np.log(pb["T_star"]))
    ln10 = np.log(10.0)
    g2 = ln10 * 2 * cm._col(frame, "gradient_norm_log10")
    x = pd.DataFrame(
        {
            "logP": np.log(cm._col(frame, "param_count")),
            "logB": np.log(cm._col(frame, "batch_size")),
            "logG2": g2,
            "logTau": g2,
            "logLR": np.log(cm._col(frame, "learning_rate")),
            "logN": np.log(cm._col(frame, "dataset_size")),
            "epsilon": 0.1,
            "logInitLoss": ln10 * cm._col(frame, "initial_loss_log10"),
        }
    )
    return model.predict(x[list(PROBE_BATCH_INPUTS)])


def zero_shot_ablation(tables: dict[str, pd.DataFrame], seed: int = 0) -> pd.DataFrame:
    """Zero-shot MAE of min(T, max_epochs) per feature set, censoring on/off, +/- the probe-batch feature."""
    pb_cols = cm.CONFIG_FEATURES + ["probe_batch_pred_log"]
    variants = {
        "config, censored (AFT) [default]": lambda: cpr.CensoredMetaRegressor(seed, cm.CONFIG_FEATURES),
        "config, censored as converged": lambda: cm.MetaRegressor(seed, features=cm.CONFIG_FEATURES),
        "config + CHRONOS probes, AFT": lambda: cpr.CensoredMetaRegressor(
            seed, cm.CONFIG_FEATURES + cm.CHRONOS_PROBE_FEATURES
        ),
        "all probes, censored as converged (old chronos)": lambda: cm.MetaRegressor(seed),
        "config + probe-batch transfer, AFT": lambda: cpr.CensoredMetaRegressor(seed, pb_cols),
    }
    rows = []
    for table, frame in tables.items():
        frame = frame.reset_index(drop=True).copy()
        frame["probe_batch_pred_log"] = probe_batch_transfer(frame, seed)
        y = frame["T_conv"].to_numpy(dtype=float)
        cap = frame["max_epochs"].to_numpy(dtype=float)
        for scheme in ("lomo", "lodo"):
            splits = ev.outer_splits(frame, scheme, seed)
            ref = None
            for name, make in variants.items():
                p = np.full(len(frame), np.nan)
                for tr, te in splits:
                    p[te] = make().fit(frame.iloc[tr]).predict(frame.iloc[te])["pred"].to_numpy()
                p = np.minimum(p, cap)
                err = np.abs(p - y)
                ref = err if ref is None else ref
                lo, hi = ev._paired_ci(err, ref, seed)
                rows.append(
                    {"table": table, "scheme": scheme, "split": ev.SPLIT_KIND[scheme], "zero_shot": name}
                    | ev.metrics(y, p)
                    | {"dMAE_vs_default_lo90": lo, "dMAE_vs_default_hi90": hi}
                )
    return pd.DataFrame(rows)


def sources(cape: pd.DataFrame, ours: pd.DataFrame) -> pd.DataFrame:
    """What differs between the public runs and ours: budget caps, censoring, data size, the rule."""
    rows = []
    for name, frame in (("public: CAPE_Dataset", cape), ("ours", ours)):
        steps = np.ceil(frame["dataset_size"].astype(float) / frame["batch_size"].astype(float))
        rows.append(
            {
                "table": name,
                "runs": len(frame),
                "max_epochs": "/".join(map(str, sorted(frame.max_epochs.unique()))),
                "censored_at_max_epochs": float(cpr.censored(frame).mean()),
                "patience": "/".join(str(int(v)) for v in sorted(frame.patience.unique())),
                "min_delta": "/".join(f"{v:g}" for v in sorted(frame.min_delta.unique())),
                "dataset_size_min": int(frame.dataset_size.min()),
                "dataset_size_max": int(frame.dataset_size.max()),
                "steps_per_epoch_median": float(np.median(steps)),
                "steps_per_epoch_max": float(steps.max()),
                "T_conv_median": float(frame.T_conv.median()),
                "log10_params_min": float(np.log10(frame.param_count.min())),
                "log10_params_max": float(np.log10(frame.param_count.max())),
            }
        )
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the report
def run_prior_report(
    out_dir: Path = RESULTS_DIR,
    ours_path: Path = data.OURS_PATH,
    seed: int = 0,
    force: bool = True,
    schemes: Sequence[str] = ev.SCHEMES,
    parts: Sequence[str] = PARTS,
) -> dict[str, pd.DataFrame]:
    """Every held-out number of the curve prior; returns the tables by name and writes them.

    `parts`: the parts to include (all by default; leave out the "-plus" ones for a shorter run).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cape, ours = data.cape_table(), data.ours_table(ours_path)
    tag = f"prior-s{seed}-{len(cape)}-{len(ours)}"
    preds, summaries, seconds = [], [], {}
    for part in parts:
        if part.split("-")[1] not in schemes:
            continue
        t0 = time.perf_counter()
        frame = compute_part(part, seed, ours_path, force)
        seconds[part] = time.perf_counter() - t0
        summary = ev.summarize(frame, ks=PRIOR_KS)
        summary.insert(0, "table", frame["table"].iloc[0])
        preds.append(frame)
        summaries.append(summary)
        log.info("%s: %.0f s", part, seconds[part])
    metrics = pd.concat(summaries, ignore_index=True)
    metrics.to_csv(out_dir / "prior_metrics.csv", index=False)
    all_preds = pd.concat(preds, ignore_index=True)
    keep = all_preds.model == "curve_prior"
    cols = ["table", "scheme", "fold", "row", "model", "k", "y", "pred", "lo", "hi"]
    stored = all_preds.loc[keep, cols].round(2)
    stored.to_csv(out_dir / "prior_predictions.csv.gz", index=False)
    ablation = _cached(
        f"zs-ablation-{tag}",
        lambda: zero_shot_ablation({"public: CAPE_Dataset": cape, "ours": ours}, seed),
        force,
    )
    ablation.to_csv(out_dir / "zero_shot_ablation.csv", index=False)
    src = sources(cape, ours)
    src.to_csv(out_dir / "sources.csv", index=False)
    same = same_rows(all_preds)
    same.to_csv(out_dir / "prior_same_rows.csv", index=False)
    floor = seed_floor(ours)
    floor.to_csv(out_dir / "prior_noise_floor.csv", index=False)
    ceiling = model_ceiling(stored, {"public: CAPE_Dataset": cape, "ours": ours})
    ceiling.to_csv(out_dir / "prior_model_ceiling.csv", index=False)
    coverage = coverage_intervals(stored, {"public: CAPE_Dataset": cape, "ours": ours}, seed=seed)
    coverage.to_csv(out_dir / "prior_coverage.csv", index=False)
    tables = {"metrics": metrics, "ablation": ablation, "sources": src, "same_rows": same, "floor": floor,
              "ceiling": ceiling, "coverage": coverage}  # fmt: skip
    (out_dir / "prior_summary.md").write_text(prior_markdown(tables, out_dir))
    return tables


def same_rows(preds: pd.DataFrame, model: str = "curve_prior", at: int = 10) -> pd.DataFrame:
    """MAE at every k on one set of rows (LOMO, open at `at`): is k=10 worse than k=5, or are its rows?"""
    sub = preds[(preds.model == model) & (preds.scheme == "lomo") & preds[f"open_{at}"]]
    rows = []
    for (table, k), grp in sub.groupby(["table", "k"]):
        mae = float((grp.pred - grp.y).abs().mean())
        rows.append(
            {"table": table, "rows": f"open@{at}", "k": k, "n": len(grp), "MAE": mae,
             "median_y": float(grp.y.median()), "max_y": float(grp.y.max())}
        )  # fmt: skip
    return pd.DataFrame(rows)


def seed_floor(ours: pd.DataFrame, ks: Sequence[int] = (0, 3, 5, 10)) -> pd.DataFrame:
    """Noise floor from repeated seeds: MAE of a run's min(T, max_epochs) from the mean of its other seeds.

    At k > 0 only runs open at k whose other seeds are also open at k count (same configuration, same
    rule): what is left to predict once the configuration is known exactly and the prefix says nothing.
    """
    frame = ours.reset_index(drop=True)
    y = np.minimum(frame["T_conv"].to_numpy(float), frame["max_epochs"].to_numpy(float))
    rows = []
    for k in ks:
        open_k = ev._open_at(frame, k) if k else np.ones(len(frame), bool)
        errors = []
        for _, idx in frame[open_k].groupby("config").indices.items():
            pos = np.flatnonzero(open_k)[idx]
            if len(pos) < 2:
                continue
            for i in pos:
                errors.append(abs(y[i] - y[pos[pos != i]].mean()))
        rows.append(
            {"table": "ours", "k": k, "runs": len(errors), "leave_one_seed_out_MAE": float(np.mean(errors))}
        )
    return pd.DataFrame(rows)


def headline(metrics: pd.DataFrame, model: str = "curve_prior") -> pd.DataFrame:
    """MAE and coverage per table x split x k: k=0 on all rows, k>0 on rows open at k."""
    zero = metrics[(metrics.model == model) & (metrics.k == 0) & (metrics.rows == "all")]
    later = metrics[
        (metrics.model == model) & (metrics.k > 0) & (metrics.rows == metrics.k.map("open@{}".format))
    ]
    out = pd.concat([zero, later])[["table", "scheme", "model", "k", "n", "MAE", "coverage80", "width_ratio"]]
    return out.sort_values(["table", "scheme", "k"]).reset_index(drop=True)


def _open_by_k(preds: pd.DataFrame, frame: pd.DataFrame) -> Iterator[tuple[int, pd.DataFrame]]:
    """(k, the stored predictions at k): every row at k = 0, the runs still open at k after it."""
    for k, grp in preds.groupby("k"):
        yield int(k), grp[ev._open_at(frame, int(k))[grp.row.to_numpy()]] if k else grp


def model_ceiling(preds: pd.DataFrame, frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """How much of the leave-one-model-out error is each unseen model's own bias (stored predictions).

    Per table and k (rows still open at k): the MAE once every held-out model's median log
    miss is divided out (an oracle: a perfect factor per unseen architecture, which no predictor has),
    capped at max_epochs like the predictions. What the oracle leaves is scatter within an architecture.
    """
    records = []
    for table, frame in frames.items():
        sub = preds[(preds.table == table) & (preds.scheme == "lomo") & (preds.model == "curve_prior")]
        arch = frame["model"].to_numpy()
        cap = frame["max_epochs"].to_numpy(float)
        for k, grp in _open_by_k(sub, frame):
            miss = pd.Series(np.log(grp.y / grp.pred).to_numpy(), index=grp.index)
            factor = np.exp(miss.groupby(arch[grp.row.to_numpy()]).transform("median"))
            oracle = np.minimum(grp.pred * factor, cap[grp.row.to_numpy()])
            records.append(
                {"table": table, "k": int(k), "n": len(grp),
                 "MAE_model_oracle": float((oracle - grp.y).abs().mean()), "target": TARGETS.get(int(k))}
            )  # fmt: skip
    return pd.DataFrame(records)


def coverage_intervals(
    preds: pd.DataFrame, frames: dict[str, pd.DataFrame], draws: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """80%-interval coverage per table, split and k (rows open at k) with a 90% bootstrap interval.

    Leave-one-model-out and leave-one-dataset-out resample whole held-out groups (their folds): rows of
    one unseen architecture or dataset share its miss, so a handful of groups decides how far the
    coverage strays from 80% by chance. Random CV resamples rows. `inside` says whether the nominal
    0.80 lies within the bootstrap interval.
    """
    rng = np.random.default_rng(seed)
    records = []
    for (table, scheme), sub in preds[preds.model == "curve_prior"].groupby(["table", "scheme"], sort=False):
        frame = frames[table]
        for k, grp in _open_by_k(sub, frame):
            hit = ((grp.y >= grp.lo - 1e-9) & (grp.y <= grp.hi + 1e-9)).to_numpy(float)
            cluster = grp.fold.to_numpy() if scheme != "cv" else np.arange(len(grp))
            ids, inverse = np.unique(cluster, return_inverse=True)
            hits, sizes = np.bincount(inverse, weights=hit), np.bincount(inverse).astype(float)
            pick = rng.integers(0, len(ids), size=(draws, len(ids)))
            boot = hits[pick].sum(axis=1) / sizes[pick].sum(axis=1)
            lo, hi = np.quantile(boot, [0.05, 0.95])
            records.append(
                {"table": table, "scheme": scheme, "k": int(k), "n": len(grp), "groups": len(ids),
                 "coverage80": float(hit.mean()), "lo90": float(lo), "hi90": float(hi),
                 "inside": bool(lo <= 1 - cm.ALPHA <= hi)}
            )  # fmt: skip
    return pd.DataFrame(records)


def prior_markdown(tables: dict[str, pd.DataFrame], out_dir: Path = RESULTS_DIR) -> str:
    """prior_summary.md: headline MAE vs k per split beside the old chronos model, targets, ablations."""
    metrics = tables["metrics"]
    meta = pf.CurvePFN.load().meta
    lines = ["# Curve prior (PFN) for epochs to convergence: held-out results", ""]
    lines += [
        f"Pretraining: {meta['train_config']['curves']:,} prior curves, {meta['train_config']['steps']:,} "
        f"steps, {meta['seconds_total']:.0f} s on one CPU thread (torch {meta['torch']}).",
        "",
    ]
    head = headline(metrics)
    old = _old_chronos(out_dir)
    lines += ["## MAE (epochs) vs epochs seen: k=0 on all rows, k>0 on the rows still open at k", ""]
    for table in head.table.unique():
        part = head[head.table == table]
        wide = part.pivot_table(index="scheme", columns="k", values="MAE").round(2)
        cov = part.pivot_table(index="scheme", columns="k", values="coverage80").round(2)
        lines += [
            f"### {table}",
            "",
            "curve_prior MAE:",
            "",
            wide.to_markdown(),
            "",
            "80% interval coverage:",
            "",
            cov.to_markdown(),
            "",
        ]
        if old is not None:
            o = old[old.table == table].pivot_table(index="scheme", columns="k", values="MAE").round(2)
            lines += [
                "previous chronos model (results/convergence/metrics.csv), same rows:",
                "",
                o.to_markdown(),
                "",
            ]
    lines += [
        "## Targets (leave-one-model-out)",
        "",
        "| table | k | MAE | target | met |",
        "| --- | --- | --- | --- | --- |",
    ]
    for _, r in head[head.scheme == "lomo"].iterrows():
        if r.k in TARGETS:
            met = "yes" if r.MAE <= TARGETS[r.k] else "no"
            lines.append(f"| {r.table} | {r.k} | {r.MAE:.2f} | {TARGETS[r.k]} | {met} |")
    extra = pd.concat([headline(metrics, m) for m in metrics.model.unique() if m.startswith("curve_prior")])
    extra = extra[extra.scheme == "lomo"]
    lines += [
        "",
        "## Variants (LOMO): pretrained PFN only, the direct model at every k, the lowest inner MAE winning "
        "outright, trained with the other source",
        "",
        extra.pivot_table(index=["table", "model"], columns="k", values="MAE").round(2).to_markdown(),
        "",
    ]
    ab = tables["ablation"][
        ["table", "scheme", "zero_shot", "n", "MAE", "dMAE_vs_default_lo90", "dMAE_vs_default_hi90"]
    ].round(2)
    lines += [
        "## Zero-shot ablation (MAE of min(T, max_epochs); dMAE: 90% bootstrap vs the default)",
        "",
        ab.to_markdown(index=False),
        "",
        "## Is k=10 worse than k=5? The same rows (LOMO, open at 10) at every k",
        "",
        tables["same_rows"].round(2).to_markdown(index=False),
        "",
        "## Noise floor from repeated seeds (ours: 3 seeds per configuration)",
        "",
        tables["floor"].round(2).to_markdown(index=False),
        "",
        "## How much is each unseen model's own bias? (LOMO, rows open at k; the oracle divides out each "
        "held-out model's median miss)",
        "",
        tables["ceiling"].round(2).to_markdown(index=False),
        "",
        "## Is the coverage off 80% by more than chance? (90% bootstrap over held-out models / datasets)",
        "",
        tables["coverage"].round(3).to_markdown(index=False),
        "",
        "## Public runs vs ours",
        "",
        tables["sources"].round(3).to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


def _old_chronos(out_dir: Path) -> pd.DataFrame | None:
    path = out_dir / "metrics.csv"
    if not path.is_file():
        return None
    m = pd.read_csv(path)
    m = m[(m.model == "chronos") & m.scheme.isin(ev.SCHEMES)]
    keep = ((m.k == 0) & (m.rows == "all")) | ((m.k > 0) & (m.rows == m.k.map("open@{}".format)))
    return m[keep]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="reuse parts cached by an earlier run")
    parser.add_argument("--part", choices=PARTS, action="append", help="compute (and cache) only these parts")
    parser.add_argument("--no-plus", action="store_true", help="leave out the parts trained on both sources")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)
    if args.part:
        for part in args.part:
            compute_part(part, args.seed, force=not args.resume)
        return 0
    parts = [p for p in PARTS if not (args.no_plus and p.endswith("-plus"))]
    run_prior_report(args.out, seed=args.seed, force=not args.resume, parts=parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
