"""Layer microbenchmarks: reproducible random configs, analytic features that match torch, timings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from chronos_core.errors import ChronosError
from chronos_core.profiling.layers import (
    LAYER_TYPES,
    LayerTiming,
    benchmark_layer,
    build_layer,
    layer_features,
    sample_layer_config,
    sample_layer_configs,
    time_layer,
)


def test_sampling_is_reproducible_and_respects_the_flops_cap():
    a = sample_layer_configs(LAYER_TYPES, 6, seed=3, max_flops=5e7)
    b = sample_layer_configs(LAYER_TYPES, 6, seed=3, max_flops=5e7)
    assert a == b and len(a) == 6 * len(LAYER_TYPES)
    assert {c["layer_type"] for c in a} == set(LAYER_TYPES)
    assert all(layer_features(c)["flops_fwd"] <= 5e7 for c in a)
    assert sample_layer_configs(["conv2d"], 6, seed=4) != sample_layer_configs(["conv2d"], 6, seed=3)
    # the first draws of a longer sample are the shorter sample: sweeps can grow without re-running
    assert sample_layer_configs(["gru"], 8, seed=0)[:5] == sample_layer_configs(["gru"], 5, seed=0)


def test_unknown_layer_type_names_the_choices():
    with pytest.raises(ChronosError, match=r"Unknown layer type 'conv3d'. Known: attention, conv2d"):
        sample_layer_config("conv3d", np.random.default_rng(0))


@pytest.mark.parametrize("layer_type", LAYER_TYPES)
def test_analytic_param_count_matches_the_built_module(layer_type):
    for cfg in sample_layer_configs([layer_type], 4, seed=1, max_flops=2e7):
        module, x = build_layer(cfg)
        assert layer_features(cfg)["param_count"] == sum(p.numel() for p in module.parameters())
        out = module(x)
        assert out.numel() == layer_features(cfg)["output_elems"]


@pytest.mark.parametrize("layer_type", ["conv2d", "linear"])
def test_analytic_flops_match_torch_flop_counter(layer_type):
    for cfg in sample_layer_configs([layer_type], 4, seed=2, max_flops=2e7):
        module, x = build_layer(cfg)
        with FlopCounterMode(display=False) as counter:
            module(x)
        assert layer_features(cfg)["flops_fwd"] == counter.get_total_flops()


def test_attention_flops_are_projections_plus_score_and_mix():
    cfg = {
        "layer_type": "attention",
        "batch_size": 2,
        "seq_len": 10,
        "head_dim": 8,
        "num_heads": 4,
        "embed_dim": 32,
    }
    feats = layer_features(cfg)
    assert feats["flops_fwd"] == 8 * 2 * 10 * 32 * 32 + 4 * 2 * 10 * 10 * 32
    assert feats["flops_train"] == 3 * feats["flops_fwd"]
    assert feats["arithmetic_intensity_fwd"] == pytest.approx(feats["flops_fwd"] / feats["bytes_moved_fwd"])


def test_time_layer_reports_forward_and_training_step_with_spread():
    cfg = {"layer_type": "linear", "batch_size": 8, "in_features": 64, "out_features": 32, "bias": True}
    torch.set_num_threads(1)
    row = time_layer(cfg, timing=LayerTiming(repeats=3, warmup=1, iters=2, min_block_ms=2.0))
    assert row["fwd_ms"] > 0 and row["train_ms"] > 0
    assert row["n_repeats"] == 3 and row["fwd_ms_iters_per_repeat"] >= 2
    assert row["fwd_ms_cv"] == pytest.approx(row["fwd_ms_std"] / row["fwd_ms"])
    assert row["train_cpu_ms"] > 0 and len(json.loads(row["train_cpu_ms_repeats_json"])) == 3


def test_benchmark_layer_row_and_unsupported_precision():
    cfg = sample_layer_configs(["layernorm"], 1, seed=0, max_flops=1e6)[0]
    row = benchmark_layer(
        cfg, precision="bf16", timing=LayerTiming(repeats=2, warmup=1, iters=1, min_block_ms=1.0)
    )
    assert row["layer_type"] == "layernorm" and row["amp_dtype"] == "bfloat16" and row["precision"] == 16
    assert row["device"].startswith("cpu-") and row["threads"] >= 1 and row["flops_fwd"] > 0
    with pytest.raises(ChronosError, match="Unknown device"):
        benchmark_layer(cfg, device="gpu0")
