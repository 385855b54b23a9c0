"""Several GPUs of one node: link rates from the catalog, the ring all-reduce, DDP's overlap with
backward, GPU counts, Megatron-LM's sharding of a transformer step and GPipe's schedule
(predict-step's num_gpus, parallel and microbatches columns are tested in test_step.py)."""

from __future__ import annotations

import numpy as np
import pytest

from chronos_core.errors import ChronosError
from chronos_core.features.opgraph import trace_step
from chronos_core.predict import parallel
from chronos_core.predict.parallel import allreduce_ms, check_gpus, data_parallel_ms, link_gbs


@pytest.mark.parametrize(
    ("gpu", "rate"),
    [("A100-SXM4-40GB", 300.0), ("H100 SXM", 450.0), ("B200", 900.0), ("V100-SXM2-16GB", 150.0),
     ("T4", 16.0), ("A100-PCIe-40GB", 32.0), ("H100-PCIe", 64.0), ("A2", 16.0)],
)  # fmt: skip
def test_link_rates_follow_interface_and_architecture(gpu, rate):
    assert link_gbs(gpu) == rate


def test_unknown_interconnect_names_the_gpu():
    with pytest.raises(ChronosError, match="MI300X"):
        link_gbs("MI300X")


def test_ring_allreduce_scales_with_bytes_and_gpus():
    one_gb = 2**30
    assert allreduce_ms(one_gb, 1, "A100-SXM4-40GB") == 0.0
    two, eight = allreduce_ms(one_gb, 2, "A100-SXM4-40GB"), allreduce_ms(one_gb, 8, "A100-SXM4-40GB")
    # 2 (n-1)/n of the bytes at 75% of 300 GB/s: 1x at n=2, 1.75x at n=8, plus per-step latency
    bandwidth_ms = one_gb / (300e9 * parallel.NCCL_BUS_EFFICIENCY) * 1e3
    assert two == pytest.approx(bandwidth_ms + 2 * parallel.NCCL_STEP_LATENCY_MS)
    assert eight == pytest.approx(1.75 * bandwidth_ms + 14 * parallel.NCCL_STEP_LATENCY_MS)
    assert allreduce_ms(one_gb, 4, "T4") > 10 * allreduce_ms(one_gb, 4, "A100-SXM4-40GB")  # PCIe 3 vs NVLink


def test_backward_hides_the_allreduce_but_not_its_last_bucket():
    params = 500_000_000  # 2 GB of fp32 gradients
    long = data_parallel_ms(params, 4, "A100-SXM4-40GB", backward_ms=1000.0)
    short = data_parallel_ms(params, 4, "A100-SXM4-40GB", backward_ms=1.0)
    last = allreduce_ms(parallel.DDP_BUCKET_BYTES, 4, "A100-SXM4-40GB")
    assert long["exposed_ms"] == pytest.approx(last)
    assert short["exposed_ms"] == pytest.approx(short["allreduce_ms"] - 1.0)
    assert data_parallel_ms(params, 1, "A100-SXM4-40GB", 1.0)["exposed_ms"] == 0.0


@pytest.mark.parametrize(
    ("value", "batch", "message"),
    [(0, 8, "1 to 8"), (16, 32, "one node"), ("two", 8, "not a number"), (2.5, 8, "1 to 8"), (3, 8, "split")],
)
def test_bad_gpu_counts_name_the_value(value, batch, message):
    with pytest.raises(ChronosError, match=message):
        check_gpus(value, batch)
    assert check_gpus("4", 8) == 4


@pytest.fixture(scope="module")
def gpt2_step():
    return trace_step("hf:gpt2", batch_size=2, seq_len=64, precision="fp32", optimizer="adam",
                      attn_implementation="eager")  # fmt: skip


def test_trace_carries_the_transformer_shape(gpt2_step):
    assert gpt2_step.attrs["hidden_size"] == 768 and gpt2_step.attrs["num_layers"] == 12
    assert gpt2_step.attrs["num_heads"] == 12
    assert "hidden_size" not in trace_step("ResNet18", batch_size=2, dataset="CIFAR10").attrs


def test_tensor_parallel_splits_gemms_and_repeats_the_residual_stream(gpt2_step):
    n = 4
    shard = parallel.tensor_parallel_graph(gpt2_step, n)
    gemm = (gpt2_step["family"] == "gemm").to_numpy()
    flops = lambda f, mask: float((f["flops"] * f["count"])[mask].sum())  # noqa: E731
    assert flops(shard, gemm) == pytest.approx(flops(gpt2_step, gemm) / n, rel=0.01)
    norm = (gpt2_step["family"] == "norm").to_numpy()  # layer norms act on the whole residual stream
    assert shard.loc[norm, "elems"].tolist() == gpt2_step.loc[norm, "elems"].tolist()
    soft = (gpt2_step["family"] == "softmax").to_numpy() & (gpt2_step["phase"] == "forward").to_numpy()
    big = soft & (gpt2_step["elems"] > 2 * 64 * 768).to_numpy()  # attention scores: split by head
    assert (shard.loc[big, "elems"] * n == gpt2_step.loc[big, "elems"]).all()
    opt = (gpt2_step["phase"] == "optimizer").to_numpy()
    assert shard.loc[opt, "elems"].sum() == pytest.approx(gpt2_step.loc[opt, "elems"].sum() / n, rel=0.01)
    # linears: the token dimension (2 x 64) is never the one split
    tokens = 2 * 64
    dims = ["M", "N", "K"]
    lin = gemm & ~gpt2_step["aten"].str.contains("bmm").to_numpy()
    kept = (shard.loc[lin, dims] == gpt2_step.loc[lin, dims]) | (gpt2_step.loc[lin, dims] != tokens)
    assert kept.all().all()
    assert shard.attrs["tp_allreduces"] == 4 * 12 + 2
    assert shard.attrs["tp_allreduce_bytes"] == tokens * 768 * 4
    assert shard.attrs["parameters"] == int(np.ceil(gpt2_step.attrs["parameters"] / n))
    ms = parallel.tensor_parallel_ms(shard, n, "A100-SXM4-40GB")
    assert ms == pytest.approx(50 * allreduce_ms(tokens * 768 * 4, n, "A100-SXM4-40GB"))


def test_tensor_parallel_splits_fused_attention_by_head():
    ops = trace_step("hf:gpt2", batch_size=2, seq_len=64, precision="bf16", optimizer="adamw")  # sdpa
    shard = parallel.tensor_parallel_graph(ops, 4)
    fused = (ops["family"] == "attention").to_numpy()
    assert fused.any()
    assert (shard.loc[fused, "B"] * 4 == ops.loc[fused, "B"]).all()
    assert (shard.loc[fused, "flops"] * 4 == ops.loc[fused, "flops"]).all()


def test_tensor_parallel_needs_a_transformer_with_divisible_heads(gpt2_step):
    with pytest.raises(ChronosError, match="heads"):
        parallel.tensor_parallel_graph(gpt2_step, 5)
    with pytest.raises(ChronosError, match="Hugging Face"):
        parallel.tensor_parallel_graph(trace_step("ResNet18", batch_size=2, dataset="CIFAR10"), 2)


def test_pipeline_bubble_and_sends():
    parts = {"pred_forward_ms": 40.0, "pred_backward_ms": 80.0, "pred_optimizer_ms": 8.0,
             "pred_overhead_ms": 1.0, "pred_step_ms": 129.0,
             "pred_step_ms_lo": 100.0, "pred_step_ms_hi": 160.0}  # fmt: skip
    one = parallel.pipeline_parallel(parts, 4, 1, 2**20, "A100-SXM4-40GB")
    # one micro-batch: the stages run one after another, the whole step's work, plus 6 sends
    assert one["pred_forward_ms"] + one["pred_backward_ms"] == pytest.approx(120.0)
    assert one["pred_optimizer_ms"] == pytest.approx(2.0)
    assert one["pred_comm_ms"] == pytest.approx(6 * parallel.p2p_ms(2**20, "A100-SXM4-40GB"))
    four = parallel.pipeline_parallel(parts, 4, 4, 2**20, "A100-SXM4-40GB")  # (4 + 3) / 4 stage times
    assert four["pred_forward_ms"] == pytest.approx(40.0 * 7 / 4)
    assert four["pred_step_ms_lo"] / four["pred_step_ms"] == pytest.approx(100.0 / 129.0)
    alone = parallel.pipeline_parallel(parts, 1, 3, 2**20, "A100-SXM4-40GB")  # gradient accumulation
    assert alone["pred_forward_ms"] == pytest.approx(120.0) and alone["pred_comm_ms"] == 0.0


@pytest.mark.parametrize(("value", "message"), [("zp", "accepted: dp"), ("2", "accepted: dp")])
def test_bad_schemes_name_the_value(value, message):
    with pytest.raises(ChronosError, match=message):
        parallel.check_scheme(value)
    assert parallel.check_scheme(None) == "dp" and parallel.check_scheme(" TP ") == "tp"


def test_microbatches_divide_the_batch():
    assert parallel.check_microbatches(None, 8) == 1 and parallel.check_microbatches("4", 8) == 4
    for bad in (3, 0, "x", 2.5):
        with pytest.raises(ChronosError, match="microbatches"):
            parallel.check_microbatches(bad, 8)
    assert check_gpus(4, 2, "tp") == 4  # tensor and pipeline GPUs all see the whole batch
