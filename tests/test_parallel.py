"""Data parallel on one node: link rates from the catalog, the ring all-reduce, DDP's overlap with
backward, and GPU counts (predict-step's num_gpus column is tested in test_step.py)."""

from __future__ import annotations

import pytest

from chronos_core.errors import ChronosError
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
