"""The fine-tuning plan across GPUs: feasibility reasons, the fastest feasible choice, bad input."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from chronos_core.errors import ChronosError
from chronos_core.gpu_choice import plan_finetune

NAN = math.nan


def table() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"gpu": "T4", "fits": False, "epoch_s": NAN, "epoch_s_hi": NAN, "price_per_hr_usd": 0.35},
            {"gpu": "A100", "fits": True, "epoch_s": 3600.0, "epoch_s_hi": 5400.0, "price_per_hr_usd": 1.3},
            {"gpu": "H100", "fits": True, "epoch_s": 1800.0, "epoch_s_hi": 2700.0, "price_per_hr_usd": 3.0},
            {"gpu": "B200", "fits": True, "epoch_s": 900.0, "epoch_s_hi": 1300.0, "price_per_hr_usd": NAN},
            {"gpu": "L4", "fits": True, "epoch_s": 14400.0, "epoch_s_hi": 20000.0, "price_per_hr_usd": 0.8},
        ]
    )


def test_fastest_gpu_within_budget_at_the_upper_end():
    ranked, best = plan_finetune(table(), epochs=2, budget_usd=5.0)
    # H100: 2 x 2700 s = 1.5 h -> $4.50 at the upper end; A100 3 h -> $3.90; L4 11.1 h -> $8.89
    assert best is not None and best["gpu"] == "H100"
    assert list(ranked["gpu"][ranked["feasible"]]) == ["H100", "A100"]
    why = dict(zip(ranked["gpu"], ranked["why_not"], strict=True))
    assert why["T4"] == "does not fit in memory"
    assert why["B200"] == "not priced"
    assert why["L4"].startswith("over budget ($8.89")
    assert ranked.set_index("gpu").loc["H100", "job_usd_hi"] == pytest.approx(4.5)


def test_point_estimates_and_deadline():
    ranked, best = plan_finetune(table(), epochs=2, budget_usd=4.0, use_upper_bound=False)
    assert best["gpu"] == "H100"  # $3.00 at the point estimate
    ranked, best = plan_finetune(table(), epochs=2, budget_usd=4.0, deadline_h=1.0)
    why = ranked.set_index("gpu")["why_not"]
    assert best is None and why["H100"] == "over budget ($4.50 > $4.00)"
    assert why["A100"] == "past the deadline (3.00 h > 1 h)"
    ranked, best = plan_finetune(table(), epochs=2, budget_usd=100.0, deadline_h=2.0)
    assert best["gpu"] == "H100" and ranked.set_index("gpu").loc["A100", "why_not"].startswith("past the")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0, "budget_usd": 1.0}, "epochs"),
        ({"epochs": 1, "budget_usd": -1.0}, "budget_usd"),
        ({"epochs": 1, "budget_usd": 1.0, "deadline_h": 0}, "deadline_h"),
    ],
)
def test_bad_input_is_one_line(kwargs, match):
    with pytest.raises(ChronosError, match=match) as err:
        plan_finetune(table(), **kwargs)
    assert "\n" not in str(err.value)


def test_a_table_without_the_compare_columns_is_refused():
    with pytest.raises(ChronosError, match="lacks columns"):
        plan_finetune(pd.DataFrame({"gpu": ["T4"]}), epochs=1, budget_usd=1.0)
