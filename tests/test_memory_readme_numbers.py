"""The README's memory claims are the committed results of benchmarks/memory_check.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results" / "memory"
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_cpu_check_matches_the_readme():
    cpu = pd.read_csv(RESULTS / "cpu_check.csv")
    exact = cpu[cpu["part"].isin(["parameters", "gradients", "optimizer_states"])]
    assert (exact["rel_error"].abs() == 0).all()
    activations = cpu[cpu["part"] == "activations"]
    worst = activations["rel_error"].abs().max()
    assert f"parameters, gradients and states exact; activations off by at most {100 * worst:.2f}%" in README


def test_bytes_per_parameter_and_korthikanti_ratio():
    per_param = pd.read_csv(RESULTS / "bytes_per_param.csv")
    mixed = per_param[(per_param["precision"] == "amp") & (per_param["optimizer"] == "adamw")]
    assert (mixed["states_B_per_param"] == 16.0).all() and len(mixed)
    assert "16 bytes/parameter for mixed-precision Adam" in README
    ratios = pd.read_csv(RESULTS / "korthikanti.csv")
    megatron = ratios[ratios["setup"].str.startswith("Megatron")]["ratio"]
    assert len(megatron) and (megatron.round(2) == 1.00).all()
    assert "(ratio 1.00;" in README


def test_fit_facts_all_agree():
    facts = pd.read_csv(RESULTS / "facts.csv")
    assert len(facts) >= 6 and facts["agrees"].all()
