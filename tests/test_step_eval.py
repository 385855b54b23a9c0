"""CHRONOS-side helpers of the kernel model's evaluation (`chronos_core.predict.step_eval`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from chronos_core.errors import ChronosError
from chronos_core.predict.step import HostOverhead, host_step_ms
from chronos_core.predict.step_eval import (
    chronos_ceilings,
    chronos_logo,
    chronos_misses,
    fit_host,
    held_out_calibration,
    median_host,
)


def _rows() -> pd.DataFrame:
    """Two GPUs, two models; GPU 'a' runs model 'slow' 3x the prediction, everything else as predicted."""
    records = []
    for gpu in ("a", "b"):
        for model, gpu_ms in (("slow", 40.0), ("host", 2.0)):
            for i in range(4):
                pred = 50.0 + i
                factor = 3.0 if (gpu, model) == ("a", "slow") else 1.0
                records.append(
                    {
                        "gpu": gpu,
                        "model": model,
                        "pred_logo_ms": pred,
                        "pred_logo_gpu_ms": gpu_ms,
                        "compute_ms": pred * factor,
                    }  # fmt: skip
                )
    return pd.DataFrame(records)


def test_chronos_misses_locates_the_miss():
    misses = chronos_misses(_rows()).set_index(["gpu", "model"])
    assert misses.loc[("a", "slow"), "median_ratio"] == pytest.approx(3.0)
    assert misses.loc[("a", "slow"), "gpu_bound_share"] == 1.0
    assert misses.loc[("a", "host"), "gpu_bound_share"] == 0.0
    assert misses.loc[("b", "slow"), "mape"] == pytest.approx(0.0)
    summary = misses.loc["all GPUs"]
    # GPU-bound rows: gpu a misses by |1/3 - 1| = 66.7%, gpu b by 0: mean over GPUs 33.3%
    assert summary.loc["GPU-bound rows", "mape"] == pytest.approx(100 / 3)
    assert summary.loc["host-bound rows", "mape"] == pytest.approx(0.0)
    assert summary.loc["all rows", "rows"] == 16
    # one factor per GPU cannot fix a miss only one of its models has: gpu a's median ratio is 2, so
    # its rows end 1.5x and 0.5x off (33.3% and 100%), gpu b's stay exact
    oracle = summary.loc["all rows, each GPU's median miss divided out", "mape"]
    assert oracle == pytest.approx(100 / 3)


def test_chronos_ceilings_separate_what_is_learnable_from_oracles_and_noise():
    rows = _rows()
    rows["precision"], rows["batch_size"] = 32, 64
    rows["config"] = rows["model"] + rows["pred_logo_ms"].astype(str)
    rows = pd.concat([rows, rows], ignore_index=True)  # each step measured twice ...
    rows.loc[len(rows) // 2 :, "compute_ms"] *= 1.1  # ... the second run 10% slower
    rows["pred_whole_ms"] = rows["compute_ms"] / 1.2  # a whole-model prediction 20% fast everywhere
    table = chronos_ceilings(rows).set_index(["predictor", "factor"])["mape"]
    # the whole-model miss is one factor everywhere: learned from the other GPUs, the repeat noise is left
    learned = "per model and precision, from the other GPUs"
    whole = table["whole-model regressor"]
    assert whole[learned] < 5.0 < whole["none (held out as is)"]
    # the kernel model's miss is gpu a's alone: the other GPU teaches nothing, the cell oracle removes it
    kernel = table["kernel model"]
    assert kernel[learned] >= kernel["none (held out as is)"]
    assert kernel["oracle per GPU, model and precision"] < 5.0 < kernel["oracle per GPU"]
    assert table[("blend", "none (held out as is)")] > 0
    # the two runs of a step differ by 10%: each misses the other by 10% or 9.1%
    floor = table[("the same step's other runs", "measurement floor")]
    assert floor == pytest.approx((10 + 100 * (1 - 1 / 1.1)) / 2)


def test_fit_host_recovers_what_the_rows_show_and_median_host():
    rng = np.random.default_rng(0)
    truth = HostOverhead(0.002, 0.016, 1.0)
    # GPU-bound steps show the per-kernel gap and the per-step cost
    gpu_ms, kernels = rng.uniform(40, 80, 60), rng.integers(200, 1000, 60).astype(float)
    host = fit_host(gpu_ms, kernels, host_step_ms(gpu_ms, kernels, truth))
    assert (host.gap_ms, host.fixed_ms) == (0.002, 1.0)
    # host-bound steps show the per-op dispatch and the per-step cost
    gpu_ms, kernels = rng.uniform(0.1, 1.0, 60), rng.integers(1000, 2000, 60).astype(float)
    host = fit_host(gpu_ms, kernels, host_step_ms(gpu_ms, kernels, truth))
    assert (host.dispatch_ms, host.fixed_ms) == (0.016, 1.0)
    mid = median_host([HostOverhead(0, 0.008, 0.5), truth, HostOverhead(0.004, 0.032, 2.0)])
    assert (mid.gap_ms, mid.dispatch_ms, mid.fixed_ms) == (0.002, 0.016, 1.0)


def test_same_chip_pairs_boards_of_one_die():
    from chronos_core.predict.step_eval import same_chip

    assert same_chip("V100-SXM2-16GB", "V100-PCIe-32GB")
    assert same_chip("A100-PCIe-80GB", "A100-PCIe-40GB")
    assert not same_chip("A100-PCIe-80GB", "A40")  # Ampere, another die
    assert not same_chip("T4", "P4")


def test_held_out_calibration_counts_a_sibling_boards_kernels_as_the_gpus():
    """The V100 PCIe's kernels calibrate the V100 SXM2: the corrections land on the SXM2, whose
    predictions move toward the slow board's times, and the fitted model is left alone."""
    from test_kernels import _gemm_model, _synthetic

    model = _gemm_model()
    kernels = _synthetic("P100-PCIe-16GB", slowdown=1.8, seed=5).assign(device="V100-PCIe-32GB")
    tuned = held_out_calibration(model, kernels, "V100-SXM2-16GB", ("V100-PCIe-32GB",), budget=16)
    assert {device for device, *_ in tuned.corrections_} == {"V100-SXM2-16GB"}
    assert not model.corrections_
    sxm = kernels.assign(device="V100-SXM2-16GB")
    err = lambda m: np.mean(np.abs(m.predict(sxm) - sxm["latency_ms"]) / sxm["latency_ms"])  # noqa: E731
    assert err(tuned) < err(model) / 2
    with pytest.raises(ChronosError, match="no kernels of T4's chip"):
        held_out_calibration(model, kernels, "T4", ("T4",), budget=16)


def test_chronos_logo_names_the_regimes():
    message = "unknown regime 'oracle'; use one of datasheet, calibrated, in_fit"
    with pytest.raises(ChronosError, match=message):
        chronos_logo(_rows(), regime="oracle")
