"""The README's cold-start figures are the benchmark's results; the cached run beats the torch import."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_readme_cold_predict_numbers_match_the_benchmark():
    table = pd.read_csv(REPO / "results" / "cli" / "cold_predict_speed.csv").set_index("what")["median_s"]
    cached = table["chronos predict vgg16 on T4, after one earlier run"]
    torch_import = table["python -c 'import torch, torchvision'"]
    assert cached < torch_import  # the target
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"takes {cached:.2f} s against {torch_import:.2f} s" in readme
