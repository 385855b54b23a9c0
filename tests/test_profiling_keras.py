"""The Keras epoch timer: the A100 project's protocol (epoch 1 dropped) and its runs.csv row schema."""

from __future__ import annotations

import json
import math

import pytest

from chronos_core.data import registry
from chronos_core.profiling.keras_timer import KerasTiming


def test_keras_timing_excludes_the_first_epoch():
    timing = KerasTiming([11.0, 1.2, 1.0], train_size=50_000, params=1)
    assert timing.avg_time_sec == pytest.approx(1.1)
    assert timing.images_per_sec == pytest.approx(50_000 / 1.1)
    assert KerasTiming([2.0], 10, 1).avg_time_sec == 2.0


def test_keras_a100_workload_row_matches_their_schema():
    pytest.importorskip("tensorflow")
    from chronos_core.catalog.models import Models
    from chronos_core.profiling.keras_timer import time_a100_cnn

    row = time_a100_cnn(depth=1, base_filters=2, batch_size=32, epochs=3, train_size=96, threads=1)
    if registry.mirror_dir() is not None:
        assert set(registry.read("a100-runs").columns) <= set(row)
    times = json.loads(row["epoch_times_json"])
    assert len(times) == 3 and row["avg_time_sec"] == pytest.approx(sum(times[1:]) / 2)
    assert row["images_per_sec"] == pytest.approx(96 / row["avg_time_sec"])
    twin = Models.get("SimpleCNN").build("CIFAR10", depth=1, base_filters=2)
    assert (
        row["params"]
        == sum(p.numel() for p in twin.parameters())
        == 56 + 38 + (16 * 16 * 2 * 128 + 128) + 1290
    )
    assert math.isnan(row["test_acc"]) and row["data"] == "synthetic"


def test_keras_zoo_timer_refuses_torch_models():
    from chronos_core.errors import ChronosError
    from chronos_core.profiling.keras_timer import time_keras_zoo_model

    with pytest.raises(ChronosError, match="ResNet18 is a torch model"):
        time_keras_zoo_model("ResNet18")
