"""Adapters: the public tables' quirks, reconciled into one canonical schema without leaks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chronos_core.data import adapters, registry
from chronos_core.data.schema import (
    CONVERGENCE_COLUMNS,
    LEAKY_COLUMNS,
    TIME_COLUMNS,
    conform,
    feature_columns,
)


def test_mlp_table_uses_other_names_for_loader_and_compute(mirror):
    mlp = registry.read("chronos-time-mlp")
    assert {"avg_loader_ms", "avg_compute_ms"} <= set(mlp.columns)
    assert "compute_ms" not in mlp.columns
    canon = adapters.adapt_chronos_time(mlp, "chronos-time-mlp")
    assert np.allclose(canon["compute_ms"], mlp["avg_compute_ms"])
    assert np.allclose(canon["loader_wait_ms"], mlp["avg_loader_ms"])


def test_time_table_is_canonical_and_has_no_leaky_columns(mirror):
    table = adapters.load_time_table()
    assert list(table.columns[: len(TIME_COLUMNS)]) == TIME_COLUMNS
    assert not LEAKY_COLUMNS & set(table.columns)
    assert set(table["family"]) == {"CNN", "MLP", "Transformer"}
    assert table["batch_time_ms"].gt(0).all() and table["compute_ms"].gt(0).all()
    # batch time is loader wait + compute in every source
    assert np.allclose(table["batch_time_ms"], table["loader_wait_ms"] + table["compute_ms"], rtol=0.02)
    feats = feature_columns(table)
    assert not {"batch_time_ms", "compute_ms", "loader_wait_ms"} & set(feats)


def test_loader_ratio_is_derived_from_the_target(mirror):
    """The reason it is dropped: it is loader_wait / batch_time, i.e. the answer."""
    cnn = registry.read("chronos-time-cnn")
    assert np.allclose(cnn["loader_ratio"], cnn["loader_wait_ms"] / cnn["avg_batch_time_ms"], rtol=1e-3)


def test_transformer_flops_are_per_sample(mirror):
    raw = registry.read("chronos-time-transformer")
    canon = adapters.adapt_chronos_time(raw, "chronos-time-transformer")
    assert np.allclose(canon["flops_fwd_per_sample"], raw["flops_fwd_per_token"] * raw["seq_len"])
    assert canon["amp"].all() and (canon["precision"] == 16).all()


def test_spec_columns_get_units(mirror):
    canon = adapters.adapt_chronos_time(registry.read("chronos-time-cnn"), "chronos-time-cnn")
    t4 = canon[canon["gpu_name"] == "Tesla T4"].iloc[0]
    assert t4["gpu_fp32_tflops"] == pytest.approx(8.141)
    assert t4["gpu_mem_bandwidth_gbs"] == 320 and t4["gpu_sm_count"] == 40
    assert t4["host_provider"] == "GCP" and "Provisioning" not in canon  # the host, kept for the loader model


def test_convergence_tables_drop_ceil_derived_targets(mirror):
    raw = registry.read("chronos-conv-cnn")
    assert (raw["T_80close"] == np.ceil(0.8 * raw["T_conv"])).all()
    assert np.allclose(raw["ntk_trace_proxy_log10"], 2 * raw["gradient_norm_log10"], atol=1e-6)
    table = adapters.load_convergence_table()
    assert list(table.columns[: len(CONVERGENCE_COLUMNS)]) == CONVERGENCE_COLUMNS
    assert "T_80close" not in table and "T_90close" not in table
    cape = adapters.adapt_convergence(registry.read("cape-dataset"), "cape-dataset")
    assert "RNN" in set(cape["family"]) and cape["val_loss_prefix"].notna().all()


def test_a100_agg_to_canonical(mirror):
    canon = adapters.adapt_a100_agg(registry.read("a100-runs-agg"))
    assert len(canon) == 143
    row = canon.iloc[0]
    assert row["batch_time_ms"] == pytest.approx(1000 * row["epoch_time_s"] / row["steps_per_epoch"])
    assert (canon["dataset"] == "CIFAR10").all() and (canon["precision"] == 32).all()


def test_conform_fills_missing_and_drops_leaks():
    frame = pd.DataFrame({"model": ["m"], "loader_ratio": [0.5], "extra": [1]})
    out = conform(frame, ["source", "model"])
    assert list(out.columns) == ["source", "model", "extra"]
    assert pd.isna(out.loc[0, "source"])
