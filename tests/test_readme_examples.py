"""The README's Python example prints what the README says it prints; impossible runs are refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import chronos_core as chronos

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _comment(call: str) -> str:
    """The comment after `call` in the README's Python block."""
    match = re.search(rf"^{re.escape(call)}\s+# (.+)$", README, flags=re.MULTILINE)
    assert match, call
    return match.group(1)


def test_readme_python_example_matches(mirror):
    p = chronos.TrainingTimePredictor(
        model=chronos.Models.VGG16,
        dataset=chronos.Datasets.Cifar100,
        optimizer=chronos.Optimizers.SGD,
        batch_size=32,
        learning_rate=0.001,
        precision=16,
        gpu=chronos.Devices.T4,
    )
    epoch = p.predict_epoch_time()
    assert _comment("p.predict_epoch_time()").startswith(
        f"{float(epoch):.1f} s/epoch (80%: {epoch.lo:.1f}..{epoch.hi:.1f})"
    )
    epochs = p.predict_number_of_epochs()
    assert _comment("p.predict_number_of_epochs()").startswith(
        f"{float(epochs):.1f} epochs (80%: {epochs.lo:.1f}..{epochs.hi:.1f})"
    )
    total = p.predict_total_time()
    assert _comment("p.predict_total_time()").startswith(f"{float(total) / 3600:.3f} h")
    assert f"${total.cost_usd:.2f}" in _comment("p.predict_total_time()")


def test_a_run_that_cannot_fit_is_refused():
    p = chronos.TrainingTimePredictor(model="ResNet50", dataset="ImageNet", batch_size=1_048_576, gpu="T4")
    with pytest.raises(ValueError, match=r"batch_size 1048576 .* does not fit on T4: needs ~[\d,.]+ GB"):
        p.predict_epoch_time()
