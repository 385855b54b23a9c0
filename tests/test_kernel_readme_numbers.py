"""The kernel-model numbers quoted in the README are the ones notebook 08's result files hold."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "kernels"
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def test_op_level_table_in_readme():
    summary = pd.read_csv(RESULTS / "op_logo_summary.csv")
    test = summary[summary["split"] == "test"].set_index("group")
    for group in ("gemm_bmm", "gemm_linear", "elementwise", "softmax", "ln"):
        row = test.loc[group]
        line = (
            f"| {group} | {_pct(row['roofline'])} | {_pct(row['chronos'])} | "
            f"{_pct(row['chronos_calibrated'])} | {_pct(row['neusight_published_ood'])} |"
        )
        assert line in README, line


def test_precision_and_models_in_readme():
    precision = pd.read_csv(RESULTS / "precision_transfer.csv").set_index("dtype")
    for dtype in ("bf16", "tf32"):
        row = precision.loc[dtype]
        assert f"{dtype}: {_pct(row['chronos_calibrated'])} calibrated" in README
        assert f"{dtype} {_pct(row['chronos'])}" in README
    models = pd.read_csv(RESULTS / "neusight_models.csv")
    assert f"MAPE {_pct(models['ape'].mean())} over {len(models)} measured runs" in README
    for gpu, ape in models.groupby("gpu")["ape"].mean().items():
        assert f"{gpu} {_pct(ape)}" in README


def test_chronos_numbers_in_readme():
    chronos = pd.read_csv(RESULTS / "chronos_logo.csv").set_index("gpu").loc["mean over GPUs"]
    assert f"leave-one-GPU-out compute MAPE {_pct(chronos['kernel_logo_mape'])}" in README
    assert f"whole-model regressor's {_pct(chronos['whole_model_logo_mape'])}" in README
    assert f"unseen configs {_pct(chronos['kernel_unseen_config_mape'])}" in README


@pytest.mark.parametrize("name", ["opgraph_speed.md", "predict_step_speed.md"])
def test_speed_files_exist(name):
    assert (RESULTS / name).is_file()


def test_opgraph_speed_in_readme():
    text = (RESULTS / "opgraph_speed.md").read_text()
    cold = re.search(r"as a user sees it .*?\| ([0-9.]+) \| < 3 \| yes", text).group(1)
    saved = re.search(r"what the native build saves\) \| ([0-9.]+) \|", text).group(1)
    disk = re.search(r"new process \(disk cache\) \| ([0-9.]+) ms", text).group(1)
    assert "transformers imported by the native runs: no." in text
    others = re.findall(r"hf:(?:bert|opt|llama|t5)\S* .*?\| ([0-9.]+) \|", text)
    flat = " ".join(README.split())
    assert f"{cold} s cold (target 3 s: met;" in flat
    assert f"skips transformers' {saved} s import" in flat
    assert len(others) == 4
    names = "BERT-Large, OPT-1.3B, Llama-3.2-1B and T5-Base"
    assert f"{names} trace cold in {others[0]} s, {others[1]} s, {others[2]} s and {others[3]} s" in flat
    assert f"cache in {disk} ms;" in flat


def test_predict_step_speed_in_readme():
    text = (RESULTS / "predict_step_speed.md").read_text()
    repeated, distinct = re.findall(r"\*\*([0-9.]+) s\*\*", text)
    assert f"1,000 rows of 80 configurations in {repeated} s" in README
    assert f"(125 graphs on 8 GPUs) in {distinct} s" in README


def test_parallel_numbers_in_readme():
    par = pd.read_csv(RESULTS / "neusight_parallel.csv").set_index("parallel")
    dp = par.loc["dp4"]
    assert f"measured {dp['measured_ms']:.1f} ms with data parallel" in README
    assert f"predicted {dp['pred_ms_none']:.1f} ms ({_pct(dp['ape_none'])};" in README
    assert f"{dp['pred_ms_adamw']:.1f} ms with an AdamW step" in README
    for label, name in (("tp4", "tensor"), ("pp4_1", "pipeline")):
        row = par.loc[label]
        measured, predicted = f"{row['measured_ms']:.1f}", f"{row['pred_ms_none']:.1f}"
        text = f"with {name} parallel measured {measured} ms, predicted {predicted} ms"
        assert f"{text} ({_pct(row['ape_none'])})" in README


def test_cpu_numbers_in_readme():
    cpu = pd.read_csv(RESULTS / "cpu_steps.csv")
    assert f"{len(cpu)} fp32 training steps of {cpu['model'].nunique()} zoo models" in README.replace(
        "six zoo", "6 zoo"
    )
    assert f"CPU MAPE {_pct(cpu['ape_default'].mean())} with the default host" in README
    assert f"CPU MAPE {_pct(cpu['ape_lomo'].mean())} with a host fitted" in README
    ratio = (cpu["compute_ms"] / cpu["pred_default_ms"]).median()
    assert f"median {ratio:.2f}x the prediction" in README


def test_chronos_misses_in_readme():
    misses = pd.read_csv(RESULTS / "chronos_misses.csv").set_index(["gpu", "model"])
    summary = misses.loc["all GPUs"]
    share = summary.loc["all rows", "gpu_bound_share"] * 100
    flat = " ".join(README.split())
    bound = _pct(summary.loc["GPU-bound rows", "mape"])
    assert f"the {share:.0f}% of rows the model calls GPU-bound miss by {bound}" in flat
    assert f"the host-bound ones by {_pct(summary.loc['host-bound rows', 'mape'])}" in flat
    oracle = summary.loc["all rows, each GPU's median miss divided out", "mape"]
    assert f"an oracle) would still leave {_pct(oracle)}" in flat
    ratio = lambda gpu, model: f"{misses.loc[(gpu, model), 'median_ratio']:.2f}x"  # noqa: E731
    v100, p100 = ratio("V100-SXM2-16GB", "resnet50"), ratio("P100-PCIe-16GB", "resnet50")
    assert f"{v100} and {p100} the prediction" in flat
    assert f"same GPUs {ratio('V100-SXM2-16GB', 'vgg16')} and {ratio('P100-PCIe-16GB', 'vgg16')}" in flat


def test_ceilings_in_readme():
    flat = " ".join(README.split())
    ops = pd.read_csv(RESULTS / "op_in_fit_summary.csv")
    bmm = ops[(ops["split"] == "test") & (ops["group"] == "gemm_bmm")].iloc[0]
    per_gpu = pd.read_csv(RESULTS / "op_in_fit_per_gpu.csv").set_index("gpu")
    t4 = per_gpu.loc["T4", "chronos_calibrated:gemm_bmm"]
    assert f"calibrated bmm on the test shapes is {_pct(bmm['chronos_calibrated'])} (T4: {_pct(t4)})" in flat
    ceil = pd.read_csv(RESULTS / "chronos_ceilings.csv").set_index(["predictor", "factor"])["mape"]
    learned = "per model and precision, from the other GPUs"
    cell, batch = "oracle per GPU, model and precision", "oracle per GPU, model, precision and batch size"
    kernel, blend = _pct(ceil[("kernel model", learned)]), _pct(ceil[("blend", learned)])
    assert f"(kernel model {kernel}, blend {blend})" in flat
    assert (
        f"would leave the kernel model {_pct(ceil[('kernel model', cell)])} and the blend "
        f"{_pct(ceil[('blend', cell)])}, and for each model, precision and batch size "
        f"{ceil[('kernel model', batch)]:.1f}% and {_pct(ceil[('blend', batch)])}" in flat
    )
    floor = ceil[("the same step's other runs", "measurement floor")]
    assert f"the mean of the other two misses a run by {_pct(floor)}" in flat
    # the oracles are ordered: a finer cell never leaves more
    for name in ("kernel model", "whole-model regressor", "blend"):
        assert ceil[(name, "oracle per GPU")] >= ceil[(name, cell)] >= ceil[(name, batch)] > floor


def test_calibration_budget_in_readme():
    budget = pd.read_csv(RESULTS / "calibration_budget.csv")
    test = budget[budget["split"] == "test"].pivot(index="group", columns="budget", values="mape")
    flat = " ".join(README.split())
    for group, name in (("gemm_bmm", "bmm on the test shapes reads"), ("gemm_linear", "and linear")):
        values = " / ".join(f"{v:.1f}" for v in test.loc[group]) + "%"
        assert f"{name} {values}" in flat
    assert list(test.columns) == [4, 8, 16, 32, 64]
    # a bigger budget never makes the bmm error worse by more than draw-to-draw noise
    assert (test.loc["gemm_bmm"].diff().dropna() < 0.5).all()


def test_chronos_precision_in_readme():
    table = pd.read_csv(RESULTS / "chronos_precision.csv").set_index("precision")
    assert set(table.index) == {"fp32", "amp"}
    flat = " ".join(README.split())
    kernel, whole, blend = (
        (_pct(table.loc["fp32", col]), _pct(table.loc["amp", col]))
        for col in ("kernel_logo_mape", "whole_model_logo_mape", "ensemble_logo_mape")
    )
    assert f"Ampere and later) by {kernel[0]} and AMP steps by {kernel[1]}" in flat
    assert f"regressor by {whole[0]} and {whole[1]}, their blend by {blend[0]} and {blend[1]}" in flat
    gap = lambda col: table.loc["amp", col] - table.loc["fp32", col]  # noqa: E731
    assert f"AMP rows, loses {gap('whole_model_logo_mape'):.1f} points" in flat
    assert f"fp32 kernels alone, {gap('kernel_logo_mape'):.1f}." in flat


def test_sustained_rates_in_readme():
    table = pd.read_csv(RESULTS / "sustained_rates.csv").set_index("group")
    specs = pd.read_csv(RESULTS / "sustained_specs.csv").set_index("gpu")
    flat = " ".join(README.split())
    groups = ("elementwise", "gemm_bmm", "gemm_linear", "ln", "softmax")
    names = ("elementwise", "bmm", "linear", "ln", "softmax")
    pairs = zip(groups, names, strict=True)
    sustained = ", ".join(f"{n} {_pct(table.loc[g, 'sustained'])}" for g, n in pairs)
    datasheet = " / ".join(f"{table.loc[g, 'datasheet']:.1f}" for g in groups) + "%"
    assert f"{sustained}, against {datasheet} from the datasheet" in flat
    t4 = specs.loc["T4"]
    reach = f"{t4['sustained_fp32_tflops']:.1f} of {t4['datasheet_fp32_tflops']:.1f}"
    assert f"the T4 reaches {reach} TFLOP/s" in flat
    # two numbers per GPU help where the GPU's level was the miss; 16 kernels per group do better
    assert table.loc["gemm_linear", "sustained"] < table.loc["gemm_linear", "datasheet"]
    assert (table["calibrated"] <= table["sustained"]).all()


def test_chronos_calibration_in_readme():
    table = pd.read_csv(RESULTS / "chronos_calibration.csv").set_index("gpu")
    assert list(table.index[:-1]) == ["A100-PCIe-80GB", "P100-PCIe-16GB", "P4", "T4", "V100-SXM2-16GB"]
    mean = table.loc["mean over GPUs"]
    # the datasheet column is chronos_logo.csv's kernel model on the same GPUs
    logo = pd.read_csv(RESULTS / "chronos_logo.csv").set_index("gpu")["kernel_logo_mape"]
    assert table["datasheet"].iloc[:-1].to_numpy() == pytest.approx(logo.loc[table.index[:-1]].to_numpy())
    flat = " ".join(README.split())
    assert f"falls from {_pct(mean['datasheet'])} to {_pct(mean['calibrated_16'])}" in flat
    assert f"(64 kernels: {_pct(mean['calibrated_64'])})" in flat
    assert f"blend's from {_pct(mean['datasheet_blend'])} to {_pct(mean['calibrated_16_blend'])}" in flat
    assert f"kernel table in the fit it is {_pct(mean['in_fit'])}" in flat


def test_chronos_unseen_size_in_readme():
    table = pd.read_csv(RESULTS / "chronos_unseen_size.csv").set_index("gpu")
    mean = table.loc["mean over GPUs"]
    flat = " ".join(README.split())
    assert f"on the {int(mean['rows']):,} of them beyond the rest of the tables" in flat
    kernel, whole = _pct(mean["kernel_seen"]), _pct(mean["whole_seen"])
    assert f"misses by {kernel} against the regressor's {whole} on seen GPUs" in flat
    assert f"by {_pct(mean['kernel_logo'])} against {_pct(mean['whole_logo'])} on unseen GPUs" in flat
    assert f"(their blend: {_pct(mean['blend_logo'])})" in flat
    # the rule's premise: beyond the tables the kernel model beats the regressor, seen GPU or not
    assert mean["kernel_seen"] < mean["whole_seen"] and mean["kernel_logo"] < mean["whole_logo"]


def test_in_session_ceiling_in_readme():
    flat = " ".join(README.split())
    table = pd.read_csv(RESULTS / "op_in_session.csv").set_index(["group", "gpu"])
    bmm, linear = table.loc["gemm_bmm"], table.loc["gemm_linear"]
    corr = f"by at most {bmm['max_miss_corr'].max():.2f} (linear: up to {linear['max_miss_corr'].max():.2f})"
    assert corr in flat
    pooled, t4 = _pct(bmm.loc["all", "in_session_mape"]), _pct(bmm.loc["T4", "in_session_mape"])
    assert f"reaches {pooled} on bmm, and {t4} on the T4 alone" in flat
    gpus = bmm.drop(index="all")
    mixed = gpus["logo_calibrated_mape"].where(gpus.index != "T4", gpus["in_session_mape"])
    assert f"bmm would read {_pct(np.average(mixed, weights=gpus['rows']))}" in flat
    assert np.average(mixed, weights=gpus["rows"]) > 13.8  # even then NeuSight's figure is not reached
