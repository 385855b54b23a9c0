"""The curve-prior numbers quoted in the README are the ones the notebook's result files hold."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from chronos_core.convergence.prior_report import headline

RESULTS = Path(__file__).resolve().parents[1] / "results" / "convergence"
CAPE, OURS = "public: CAPE_Dataset", "ours"

# (table, scheme, k) -> MAE in epochs as written in the README (k=0: all rows; k>0: rows open at k)
README_MAE = {
    (CAPE, "lomo", 0): 7.40, (CAPE, "lomo", 3): 7.16, (CAPE, "lomo", 5): 6.68, (CAPE, "lomo", 10): 7.21,
    (CAPE, "cv", 0): 4.30, (CAPE, "cv", 5): 3.65, (CAPE, "lodo", 0): 7.04, (CAPE, "lodo", 5): 5.66,
    (OURS, "lomo", 0): 8.09, (OURS, "lomo", 3): 7.97, (OURS, "lomo", 5): 7.62, (OURS, "lomo", 10): 7.20,
}  # fmt: skip
README_ALWAYS_FINETUNE = {3: 6.46, 5: 5.59}  # CAPE LOMO, fine-tuned in every fold
README_COVERAGE = (0.76, 0.88)  # min and max over tables, splits and k
README_ZERO_SHOT = {
    (CAPE, "config, censored (AFT) [default]"): 7.22,
    (CAPE, "config + CHRONOS probes, AFT"): 7.93,
    (CAPE, "config + probe-batch transfer, AFT"): 8.27,
    (OURS, "config, censored as converged"): 9.37,
    (OURS, "config, censored (AFT) [default]"): 8.25,
}


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return pd.read_csv(RESULTS / "prior_metrics.csv")


def test_readme_mae_and_coverage(metrics):
    head = headline(metrics)
    for (table, scheme, k), value in README_MAE.items():
        row = head[(head.table == table) & (head.scheme == scheme) & (head.k == k)]
        assert round(float(row.MAE.iloc[0]), 2) == value, (table, scheme, k)
    always = headline(metrics, "curve_prior_always_finetune")
    for k, value in README_ALWAYS_FINETUNE.items():
        row = always[(always.table == CAPE) & (always.k == k)]
        assert round(float(row.MAE.iloc[0]), 2) == value
    assert (round(head.coverage80.min(), 2), round(head.coverage80.max(), 2)) == README_COVERAGE


def test_readme_zero_shot_ablation_and_sources():
    ablation = pd.read_csv(RESULTS / "zero_shot_ablation.csv")
    lomo = ablation[ablation.scheme == "lomo"]
    for (table, name), value in README_ZERO_SHOT.items():
        row = lomo[(lomo.table == table) & (lomo.zero_shot == name)]
        assert round(float(row.MAE.iloc[0]), 2) == value, (table, name)
    sources = pd.read_csv(RESULTS / "sources.csv").set_index("table")
    assert round(sources.loc[OURS, "censored_at_max_epochs"], 2) == 0.31
    assert (
        sources.loc[OURS, "steps_per_epoch_median"] == 12
        and sources.loc[CAPE, "steps_per_epoch_median"] == 782
    )


def test_readme_speed_and_training_time():
    text = (RESULTS / "curve_prior_speed.md").read_text()
    one = float(re.search(r"10-epoch prefix .*?\| ([\d.]+) ms", text).group(1))
    train = float(re.search(r"pretraining the PFN .*?\| (\d+) s", text).group(1))
    assert one < 50 and train < 15 * 60
