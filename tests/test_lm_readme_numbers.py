"""The README's language-model comparison is the committed notebook-06 results, not typed numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from chronos_core.gpu_choice import compare_markdown

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "planner"


def test_readme_table_is_the_compare_results():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert compare_markdown(pd.read_csv(RESULTS / "lm_compare.csv")) in readme


def test_readme_names_the_plans_choice():
    plan = pd.read_csv(RESULTS / "finetune_plan.csv")
    chosen = plan[plan["feasible"]].sort_values("job_h").iloc[0]["gpu"]
    assert chosen == "H100-SXM"
    assert "the fastest feasible GPU is the H100 SXM" in (REPO / "README.md").read_text(encoding="utf-8")
    compare = pd.read_csv(RESULTS / "lm_compare.csv")
    assert compare["fits"].sum() >= 6 and (~compare["fits"]).sum() >= 1
