"""Every held-out number of notebook 05, computed in one call and written to results/convergence/.

    python -m chronos_core.convergence.report            # all tables (tens of minutes on one core)

Writes metrics.csv (every table x split x model x k x row subset), predictions.csv.gz (held-out
predictions of chronos and the median baseline, for plots), probe_batch.csv (CAPE's probe-batch
meta-datasets), ablation.csv (which probes earn their place), probe_batch_relation.csv (CAPE's
T_star against real epochs on our runs) and summary.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from chronos_core.convergence import data
from chronos_core.convergence import evaluate as ev
from chronos_core.data import registry

log = logging.getLogger(__name__)

RESULTS_DIR = registry.REPO_ROOT / "results" / "convergence"
PLOT_MODELS = ("chronos", "constant_median")


def _parts_dir() -> Path:
    return registry.cache_dir().parent / "convergence_report_parts"


def _cached(name: str, compute: Callable[[], pd.DataFrame], force: bool) -> pd.DataFrame:
    """Each part of the report is cached (outside the repo) so an interrupted report resumes."""
    path = _parts_dir() / f"{name}.pkl"
    if path.is_file() and not force:
        return pd.read_pickle(path)
    t0 = time.perf_counter()
    frame = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_pickle(path)
    log.info("%s: %.0f s", name, time.perf_counter() - t0)
    return frame


def run_report(
    out_dir: Path = RESULTS_DIR, ours_path: Path = data.OURS_PATH, seed: int = 0, force: bool = True
) -> dict[str, pd.DataFrame]:
    """Compute every result table and write them under `out_dir`; returns them by name.

    force=False reuses parts computed earlier (cached per data fingerprint and seed).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    have_ours = Path(ours_path).is_file()
    cape = data.cape_table()
    ours = data.ours_table(ours_path) if have_ours else None
    tag = f"s{seed}-{len(cape)}-{0 if ours is None else len(ours)}"
    preds, summaries = [], []

    def record(p: pd.DataFrame, table: str) -> None:
        p = p.copy()
        p["table"] = table
        s = ev.summarize(p)
        s.insert(0, "table", table)
        preds.append(p)
        summaries.append(s)

    for scheme in ev.SCHEMES:
        part = _cached(
            f"cape-{scheme}-{tag}",
            lambda scheme=scheme: ev.cross_predict(
                cape, scheme, seed=seed, extra_train=ours, extra_name="plus_ours"
            ),
            force,
        )
        record(part, "public: CAPE_Dataset")
    chronos = data.chronos_table()
    for scheme in ev.SCHEMES:
        part = _cached(
            f"chronos-{scheme}-{tag}",
            lambda scheme=scheme: ev.cross_predict(chronos, scheme, seed=seed),
            force,
        )
        record(part, "public: CHRONOS")
    if ours is not None:
        for scheme in ev.SCHEMES:
            part = _cached(
                f"ours-{scheme}-{tag}",
                lambda scheme=scheme: ev.cross_predict(
                    ours, scheme, seed=seed, extra_train=cape, extra_name="plus_public"
                ),
                force,
            )
            record(part, "ours")
        record(
            _cached(
                f"p2o-{tag}", lambda: ev.transfer(cape, ours, "train public -> test ours", seed=seed), force
            ),
            "ours",
        )
        record(
            _cached(
                f"o2p-{tag}", lambda: ev.transfer(ours, cape, "train ours -> test public", seed=seed), force
            ),
            "public: CAPE_Dataset",
        )
    metrics = ev.with_cape_reported(pd.concat(summaries, ignore_index=True))
    metrics.loc[~metrics["table"].str.startswith("public"), "cape_reported_MAE"] = float("nan")
    metrics.loc[metrics["scheme"].str.startswith("train"), "cape_reported_MAE"] = float("nan")
    metrics.to_csv(out_dir / "metrics.csv", index=False)
    all_preds = pd.concat(preds, ignore_index=True)
    keep = all_preds.model.isin(PLOT_MODELS)
    all_preds[keep].drop(columns=["lo", "hi"]).round(2).to_csv(out_dir / "predictions.csv.gz", index=False)

    tables = {"metrics": metrics}
    probe_batch = _cached(
        f"probe-batch-s{seed}", lambda: ev.evaluate_probe_batch(data.probe_batch_table(), seed=seed), force
    )
    probe_batch.to_csv(out_dir / "probe_batch.csv", index=False)
    tables["probe_batch"] = probe_batch
    if ours is not None:
        tables["ablation"] = _cached(
            f"ablation-{tag}",
            lambda: pd.concat(
                [ev.probe_ablation(ours, seed=seed).assign(table="ours"),
                 ev.probe_ablation(cape, seed=seed).assign(table="public: CAPE_Dataset")],
                ignore_index=True,
            ),
            force,
        )  # fmt: skip
        tables["ablation"].to_csv(out_dir / "ablation.csv", index=False)
        tables["probe_batch_relation"] = ev.probe_batch_relation(ours)
        tables["probe_batch_relation"].to_csv(out_dir / "probe_batch_relation.csv", index=False)
    (out_dir / "summary.md").write_text(report_markdown(tables))
    return tables


def report_markdown(tables: dict[str, pd.DataFrame]) -> str:
    """summary.md: headline metrics, probe-batch comparison, ablation, T_star relation."""
    parts = [ev.markdown_summary(tables["metrics"])]
    pb = tables["probe_batch"]
    parts += ["## CAPE probe-batch meta-datasets (target T_star, AdamW steps on one batch)", ""]
    parts.append(
        pb[["scheme", "split", "model", "n", "MAE", "MAPE", "Spearman"]].round(3).to_markdown(index=False)
    )
    if "ablation" in tables:
        ab = tables["ablation"]
        cols = [
            "table",
            "scheme",
            "features",
            "n",
            "MAE",
            "Spearman",
            "dMAE_vs_config_lo90",
            "dMAE_vs_config_hi90",
        ]
        parts += [
            "",
            "## Probe ablation (zero-shot XGBoost; dMAE: 90% bootstrap interval against configuration only)",
            "",
            ab[cols].round(3).to_markdown(index=False),
        ]
    if "probe_batch_relation" in tables:
        rel = tables["probe_batch_relation"].round(3)
        parts += [
            "",
            "## CAPE's probe-batch T_star against real epochs (our runs, Spearman)",
            "",
            rel.to_markdown(index=False),
        ]
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--ours", type=Path, default=data.OURS_PATH)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="reuse parts cached by an earlier run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    run_report(args.out, args.ours, args.seed, force=not args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
