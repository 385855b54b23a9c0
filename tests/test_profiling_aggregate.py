"""Aggregation: the A100 project's runs_agg.csv reproduced exactly; repeats, throughput, features."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from chronos_core.data import registry
from chronos_core.errors import ChronosError
from chronos_core.profiling.aggregate import (
    A100_AGG_CUTOFF_UTC,
    add_features,
    aggregate_a100_runs,
    aggregate_repeats,
    derive_throughput,
    expand_repeats,
    median_cv,
)


def _a100_tables():
    if registry.mirror_dir() is None:
        pytest.skip("public data mirror not present")
    return registry.read("a100-runs"), registry.read("a100-runs-agg")


def test_a100_runs_agg_is_reproduced_exactly():
    runs, published = _a100_tables()
    ours = aggregate_a100_runs(runs, until_utc=A100_AGG_CUTOFF_UTC)
    pd.testing.assert_frame_equal(ours, published, check_exact=True, check_dtype=False)
    assert list(ours.columns) == list(published.columns)


def test_the_run_after_the_cutoff_is_the_only_difference():
    runs, published = _a100_tables()
    ours = aggregate_a100_runs(runs)  # every run, including the late repeat of (3, 32, 320)
    assert len(ours) == len(published) == 143
    key = ["depth", "base_filters", "batch_size"]
    diff = ours.merge(published, on=key, suffixes=("", "_pub"))
    changed = diff[diff["n"] != diff["n_pub"]]
    assert changed[key].values.tolist() == [[3, 32, 320]]
    assert changed["n"].item() == 2 and changed["n_pub"].item() == 1


def test_a100_aggregate_rejects_other_tables():
    with pytest.raises(ChronosError, match="Not an A100 runs table: missing"):
        aggregate_a100_runs(pd.DataFrame({"depth": [1]}))


def test_aggregate_repeats_and_derived_throughput():
    raw = pd.DataFrame(
        {"model": ["a", "a", "a", "b"], "batch_size": [8, 8, 8, 16], "batch_time_ms": [9.0, 10.0, 11.0, 40.0]}
    )
    agg = aggregate_repeats(raw, ["model", "batch_size"], ["batch_time_ms"])
    a, b = agg.iloc[0], agg.iloc[1]
    assert (a["n"], a["batch_time_ms_mean"], a["batch_time_ms_std"]) == (3, 10.0, 1.0)
    assert a["batch_time_ms_cv"] == pytest.approx(0.1)
    assert (b["n"], b["batch_time_ms_std"]) == (1, 0.0)
    table = pd.DataFrame(
        {"dataset_size": [50_000, 100], "batch_size": [128, 10], "batch_time_ms": [20.0, 5.0]}
    )
    out = derive_throughput(table)
    assert out["steps_per_epoch"].tolist() == [391, 10]
    assert out["epoch_time_s"].tolist() == pytest.approx([391 * 0.02, 0.05])
    assert out["samples_per_sec"].tolist() == pytest.approx([6400.0, 2000.0])
    with pytest.raises(ChronosError, match="missing column"):
        derive_throughput(table.drop(columns="dataset_size"))


def test_expand_repeats_and_median_cv():
    frame = pd.DataFrame(
        {
            "config_id": ["x", "y"],
            "compute_ms_repeats_json": [json.dumps([1.0, 2.0]), json.dumps([3.0, 3.0, 3.0])],
            "compute_ms_cv": [0.5, 0.1],
        }
    )
    raw = expand_repeats(frame)
    assert raw.groupby("config_id").size().to_dict() == {"x": 2, "y": 3}
    assert median_cv(frame, "compute_ms") == pytest.approx(0.3)


def test_add_features_fills_flops_from_the_configuration():
    rows = pd.DataFrame(
        {
            "model": ["SimpleCNN", "SimpleCNN"],
            "dataset": ["CIFAR10", "CIFAR10"],
            "input_shape": ["(3, 32, 32)", "(3, 32, 32)"],
            "batch_size": [4, 8],
            "amp": [False, True],
            "amp_dtype": ["", "bfloat16"],
            "optimizer": ["SGD", "Adam"],
            "model_kwargs": [json.dumps({"depth": 1, "base_filters": 4})] * 2,
        }
    )
    out = add_features(rows)
    assert out.loc[1, "flops_train_per_batch"] == pytest.approx(2 * out.loc[0, "flops_train_per_batch"])
    assert out.loc[1, "optimizer_state_bytes"] > out.loc[0, "optimizer_state_bytes"] == 0


def test_measured_folder_falls_back_to_the_committed_tables(tmp_path, monkeypatch):
    from chronos_core.profiling import aggregate, environment

    monkeypatch.setattr(aggregate, "META_DIR", tmp_path)
    monkeypatch.setattr(environment, "device_slug", lambda device: "cpu-this-machine")
    assert aggregate.measured_folder("cpu") == "cpu-this-machine"  # nothing committed anywhere
    (tmp_path / "cpu-measured-elsewhere").mkdir()
    (tmp_path / "cpu-measured-elsewhere" / "models.csv").write_text("config_id\n")
    assert aggregate.measured_folder("cpu") == "cpu-measured-elsewhere"
    assert aggregate.measured_folder("cpu", must_exist=False) == "cpu-this-machine"  # a sweep writes here
    (tmp_path / "cpu-this-machine").mkdir()
    (tmp_path / "cpu-this-machine" / "models.csv").write_text("config_id\n")
    assert aggregate.measured_folder("cpu") == "cpu-this-machine"
