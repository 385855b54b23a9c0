"""Malformed input, verb by verb and for the API: exit code 2, one line naming the bad value, no
traceback, and nothing answered as if valid. Plus torn-row repair on resume and the output lock.

Everything runs in-process and fails before any model is fitted or anything is measured.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

import chronos_core.profiling.sweep as sweep_mod
from chronos_core import validation as v
from chronos_core.cli import main
from chronos_core.errors import ChronosError

UNWRITABLE = "/sys/chronos-out.csv"  # EACCES even for root


def _unwritable(path: str) -> bool:
    try:
        with open(path, "a"):
            pass
    except OSError:
        return True
    os.unlink(path)
    return False


CAN_TEST_UNWRITABLE = _unwritable(UNWRITABLE)
EPOCHS_ROW = {"param_count": 11_000_000, "learning_rate": 0.01, "batch_size": 128, "optimizer": "SGD",
              "dataset_size": 50_000, "num_classes": 10, "patience": 5, "min_delta": 1e-4,
              "max_epochs": 100}  # fmt: skip
TIME_ROW = {"model": "resnet18", "dataset": "CIFAR10", "batch_size": 64, "precision": 32, "amp": False,
            "optimizer": "SGD", "learning_rate": 0.01, "param_count": 11_000_000,
            "flops_train_per_batch": 3.6e11, "device": "Mystery-9000", "gpu_fp32_tflops": 10.0,
            "gpu_mem_bandwidth_gbs": 500.0}  # fmt: skip
CANDIDATES = "epoch_time_s,acc,thr,price_per_hr\n10,0.7,100,1.0\n20,0.8,50,2.0\n"
SWEEP_FIXED = ("{dataset: Digits, repeats: 1, warmup: 0, iters: 1, threads: 1, "
               "model_kwargs: {depth: 1, base_filters: 2}}")  # fmt: skip


def sweep_yaml(
    fixed: str = SWEEP_FIXED, grid: str = "{model: [SimpleCNN], batch_size: [2]}", extra: str = ""
) -> str:
    return f"kind: model\nfixed: {fixed}\ngrid: {grid}\n{extra}"


def csv_text(row: dict, **changes) -> str:
    frame = pd.DataFrame([{**row, **changes}])
    return frame.to_csv(index=False)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    """Every input the cases refer to, written into tmp_path; keys become {placeholders}."""
    made: dict[str, str] = {"tmp": str(tmp_path)}

    def put(name: str, content: str | bytes) -> None:
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        made[name.replace(".", "_")] = str(path)

    put("empty.csv", "")
    put("header_only.csv", "param_count,learning_rate,batch_size,optimizer\n")
    put("binary.csv", bytes(range(256)) * 4)
    put("not_sweep.csv", "a,b\n1,2\n")
    put("epochs_ok.csv", csv_text(EPOCHS_ROW))
    put("time_ok.csv", csv_text(TIME_ROW))
    put("cands_ok.csv", CANDIDATES)
    put("sweep_ok.yaml", sweep_yaml())
    (tmp_path / "adir").mkdir()
    made["adir"] = str(tmp_path / "adir")
    made["missing_dir_out"] = str(tmp_path / "no-such-folder" / "out.csv")
    made["out"] = str(tmp_path / "out.csv")
    made["file_as_dir_out"] = str(tmp_path / "cands_ok.csv" / "out.csv")
    for key, changes in EPOCHS_BAD.items():
        put(f"epochs_{key}.csv", csv_text(EPOCHS_ROW, **changes[0]))
    for key, changes in TIME_BAD.items():
        put(f"time_{key}.csv", csv_text(TIME_ROW, **changes[0]))
    for key, (text, _) in CANDIDATES_BAD.items():
        put(f"cands_{key}.csv", text)
    for key, (text, _) in SWEEP_BAD.items():
        put(f"sweep_{key}.yaml", text)
    return made


def run(argv: list[str], capsys) -> tuple[int, str]:
    """main() in-process: (exit code, stderr); argparse errors exit through SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, named: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert named in err, f"{named!r} not in {err!r}"


# ------------------------------------------------------------------------------------------ tables of cases

# predict-epochs: one bad cell (changes to a good row) -> the text the error must contain
EPOCHS_BAD = {
    "bs0": ({"batch_size": 0}, "batch_size"),
    "bsneg": ({"batch_size": -4}, "-4"),
    "bsfrac": ({"batch_size": 2.5}, "2.5"),
    "bstext": ({"batch_size": "many"}, "many"),
    "lr_inf": ({"learning_rate": "inf"}, "inf"),
    "lr_neg": ({"learning_rate": -0.1}, "-0.1"),
    "lr_zero": ({"learning_rate": 0}, "learning_rate"),
    "lr_nan_text": ({"learning_rate": "fast"}, "fast"),
    "params_neg": ({"param_count": -5}, "-5"),
    "params_empty": ({"param_count": ""}, "param_count"),
    "maxep0": ({"max_epochs": 0}, "max_epochs"),
    "maxepneg": ({"max_epochs": -10}, "-10"),
    "maxepfrac": ({"max_epochs": 7.5}, "7.5"),
    "maxeptext": ({"max_epochs": "lots"}, "lots"),
    "pat_neg": ({"patience": -1}, "-1"),
    "pat0": ({"patience": 0}, "patience"),
    "pat_frac": ({"patience": 1.5}, "1.5"),
    "mindelta_neg": ({"min_delta": -0.01}, "-0.01"),
    "mindelta_inf": ({"min_delta": "inf"}, "inf"),
    "opt_unknown": ({"optimizer": "adamax"}, "adamax"),
    "opt_empty": ({"optimizer": ""}, "optimizer"),
    "size_neg": ({"dataset_size": -100}, "-100"),
    "size_frac": ({"dataset_size": 10.5}, "10.5"),
    "classes0": ({"num_classes": 0}, "num_classes"),
    "gradnorm_inf": ({"gradient_norm_log10": "-inf"}, "-inf"),
    "initloss_text": ({"initial_loss_log10": "high"}, "high"),
    "prefix_bad": ({"val_loss_prefix": "[1.0, oops]"}, "val_loss_prefix"),
}

# predict-time: one bad cell
TIME_BAD = {
    "prec_fp8": ({"precision": "fp8"}, "fp8"),
    "prec_8": ({"precision": 8}, "8"),
    "prec_64": ({"precision": 64}, "64"),
    "opt_unknown": ({"optimizer": "adamax"}, "adamax"),
    "amp_text": ({"amp": "maybe"}, "maybe"),
    "fp32_neg": ({"gpu_fp32_tflops": -10}, "-10"),
    "fp32_inf": ({"gpu_fp32_tflops": "inf"}, "inf"),
    "fp32_zero": ({"gpu_fp32_tflops": 0}, "gpu_fp32_tflops"),
    "bw_neg": ({"gpu_mem_bandwidth_gbs": -500}, "-500"),
    "bw_inf": ({"gpu_mem_bandwidth_gbs": "inf"}, "inf"),
    "bw_text": ({"gpu_mem_bandwidth_gbs": "fast"}, "fast"),
    "tpu_fp32_inf": ({"FP32": "inf", "SM": 40}, "inf"),
    "tpu_bw_neg": ({"GPU Memory Bandwidth (GB/s)": -1, "SM": 40}, "GPU Memory Bandwidth (GB/s)"),
    "tpu_sm_neg": ({"SM": -40}, "-40"),
    "price_neg": ({"gpu_price_per_hr": -1.5}, "-1.5"),
    "tensor_inf": ({"gpu_fp16_tensor_tflops": "inf"}, "inf"),
    "l2_neg": ({"gpu_l2_cache_mb": -6}, "-6"),
    "bs0": ({"batch_size": 0}, "batch_size"),
    "bsfrac": ({"batch_size": 2.5}, "2.5"),
    "bs_neg": ({"batch_size": -64}, "-64"),
    "flops_neg": ({"flops_train_per_batch": -1e9}, "flops_train_per_batch"),
    "flops_inf": ({"flops_train_per_batch": "inf"}, "inf"),
    "lr_inf": ({"learning_rate": "inf"}, "inf"),
    "params_text": ({"param_count": "big"}, "big"),
}

# plan --candidates: file text -> named text
CANDIDATES_BAD = {
    "time_text": ("epoch_time_s,acc\nten,0.7\n", "ten"),
    "time_neg": ("epoch_time_s,acc\n10,0.7\n-5,0.8\n", "-5"),
    "time_inf": ("epoch_time_s,acc\ninf,0.7\n", "inf"),
    "time_zero": ("epoch_time_s,acc\n0,0.7\n", "epoch_time_s"),
    "acc_text": ("epoch_time_s,acc\n10,good\n", "good"),
    "acc_inf": ("epoch_time_s,acc\n10,inf\n", "inf"),
    "no_time_col": ("seconds,acc\n10,0.7\n", "epoch_time_s"),
    "no_header_names": (",\n1,2\n", "column names"),
}

# sweep files: text -> named text
SWEEP_BAD = {
    "threads0": (sweep_yaml(SWEEP_FIXED.replace("threads: 1", "threads: 0")), "threads"),
    "threads_neg": (sweep_yaml(grid="{model: [SimpleCNN], threads: [-2]}"), "-2"),
    "threads_frac": (sweep_yaml(grid="{model: [SimpleCNN], threads: [1.5]}"), "1.5"),
    "threads_text": (sweep_yaml(grid="{model: [SimpleCNN], threads: [many]}"), "many"),
    "seed_text": (sweep_yaml(extra="seed: abc\n"), "abc"),
    "seed_frac": (sweep_yaml(extra="seed: 2.5\n"), "2.5"),
    "seed_neg": (sweep_yaml(extra="seed: -1\n"), "-1"),
    "samples0": (sweep_yaml(extra="mode: random\nsamples: 0\n"), "samples"),
    "samples_bool": (sweep_yaml(extra="mode: random\nsamples: true\n"), "True"),
    "bs0": (sweep_yaml(grid="{model: [SimpleCNN], batch_size: [0]}"), "batch_size"),
    "bsfrac": (sweep_yaml(grid="{model: [SimpleCNN], batch_size: [2.5]}"), "2.5"),
    "bs_bool": (sweep_yaml(grid="{model: [SimpleCNN], batch_size: [true]}"), "True"),
    "repeats0": (sweep_yaml(SWEEP_FIXED.replace("repeats: 1", "repeats: 0")), "repeats"),
    "iters_neg": (sweep_yaml(SWEEP_FIXED.replace("iters: 1", "iters: -3")), "-3"),
    "warmup_neg": (sweep_yaml(SWEEP_FIXED.replace("warmup: 0", "warmup: -1")), "warmup"),
    "workers_neg": (sweep_yaml(grid="{model: [SimpleCNN], num_workers: [-1]}"), "num_workers"),
    "lr_inf": (sweep_yaml(grid="{model: [SimpleCNN], learning_rate: [.inf]}"), "inf"),
    "precision": (sweep_yaml(grid="{model: [SimpleCNN], precision: [fp8]}"), "fp8"),
    "model": (sweep_yaml(grid="{model: [NoSuchNet]}"), "NoSuchNet"),
    "device": (sweep_yaml(grid="{model: [SimpleCNN], device: [tpu]}"), "tpu"),
    "optimizer": (sweep_yaml(grid="{model: [SimpleCNN], optimizer: [adamax]}"), "adamax"),
    "dataset": (sweep_yaml(grid="{model: [SimpleCNN], dataset: [NoSuchData]}"), "NoSuchData"),
    "unknown_key": (sweep_yaml(extra="colour: blue\n"), "colour"),
    "unknown_setting": (sweep_yaml(grid="{model: [SimpleCNN], speed: [fast]}"), "speed"),
    "empty_list": (sweep_yaml(grid="{model: []}"), "model"),
    "empty_file": ("", "mapping"),
    "not_mapping": ("- 1\n- 2\n", "mapping"),
    "bad_yaml": ("kind: [model\n", "malformed"),
    "layer_threads0": (
        "kind: layer\nsamples: 1\nfixed: {threads: 0}\ngrid: {layer_type: [linear]}\n",
        "threads",
    ),
    "layer_repeats_frac": (
        "kind: layer\nsamples: 1\nfixed: {repeats: 1.5}\ngrid: {layer_type: [linear]}\n",
        "1.5",
    ),
    "layer_max_flops": (
        "kind: layer\nsamples: 1\nfixed: {max_flops: -1}\ngrid: {layer_type: [linear]}\n",
        "max_flops",
    ),
    "layer_type": ("kind: layer\nsamples: 1\ngrid: {layer_type: [warp]}\n", "warp"),
}

PREDICT = ["predict", "--model", "resnet18", "--dataset", "cifar10", "--gpu", "T4"]
MEASURE = ["measure", "--model", "SimpleCNN", "--dataset", "Digits", "--batch-size", "2"]
PLAN = ["plan", "--budget-sec", "100", "--candidates", "{cands_ok_csv}"]

# (argv with {placeholders}, text the error must name)
CLI_CASES: dict[str, tuple[list[str], str]] = {
    # predict / compare
    "predict_bs0": ([*PREDICT, "--batch-size", "0"], "'0'"),
    "predict_bs_neg": ([*PREDICT, "--batch-size", "-8"], "'-8'"),
    "predict_bs_frac": ([*PREDICT, "--batch-size", "2.5"], "'2.5'"),
    "predict_bs_text": ([*PREDICT, "--batch-size", "abc"], "'abc'"),
    "predict_bs_nan": ([*PREDICT, "--batch-size", "nan"], "'nan'"),
    "predict_lr0": ([*PREDICT, "--lr", "0"], "--lr"),
    "predict_lr_inf": ([*PREDICT, "--lr", "inf"], "'inf'"),
    "predict_lr_nan": ([*PREDICT, "--lr", "nan"], "'nan'"),
    "predict_lr_neg": ([*PREDICT, "--lr", "-0.1"], "'-0.1'"),
    "predict_patience0": ([*PREDICT, "--patience", "0"], "--patience"),
    "predict_patience_neg": ([*PREDICT, "--patience", "-2"], "'-2'"),
    "predict_maxep0": ([*PREDICT, "--max-epochs", "0"], "--max-epochs"),
    "predict_maxep_frac": ([*PREDICT, "--max-epochs", "9.5"], "'9.5'"),
    "predict_mindelta_neg": ([*PREDICT, "--min-delta", "-1"], "'-1'"),
    "predict_mindelta_inf": ([*PREDICT, "--min-delta", "inf"], "'inf'"),
    "predict_momentum_big": ([*PREDICT, "--momentum", "1.5"], "1.5"),
    "predict_momentum_inf": ([*PREDICT, "--momentum", "inf"], "'inf'"),
    "predict_precision": ([*PREDICT, "--precision", "fp8"], "fp8"),
    "predict_precision_num": ([*PREDICT, "--precision", "8"], "'8'"),
    "predict_optimizer": ([*PREDICT, "--optimizer", "adamax"], "adamax"),
    "predict_gpu": (["predict", "--model", "resnet18", "--dataset", "cifar10", "--gpu", "T5"], "T5"),
    "predict_model": (
        ["predict", "--model", "nosuchnet", "--dataset", "cifar10", "--gpu", "T4"],
        "nosuchnet",
    ),
    "predict_dataset": (
        ["predict", "--model", "resnet18", "--dataset", "nosuchdata", "--gpu", "T4"],
        "nosuchdata",
    ),
    "predict_host": ([*PREDICT, "--host", "aws"], "aws"),
    "predict_missing_model": (["predict", "--dataset", "cifar10"], "--model"),
    "compare_gpu": (["compare", "--model", "resnet18", "--dataset", "cifar10", "--gpu", "T5"], "T5"),
    "compare_bs0": (
        ["compare", "--model", "resnet18", "--dataset", "cifar10", "--gpu", "T4", "--batch-size", "0"],
        "'0'",
    ),  # fmt: skip
    "compare_no_gpu": (["compare", "--model", "resnet18", "--dataset", "cifar10"], "--gpu"),
    # features
    "features_bs0": (["features", "--model", "resnet18", "--dataset", "cifar10", "--batch-size", "0"], "'0'"),
    "features_bs_frac": (
        ["features", "--model", "resnet18", "--dataset", "cifar10", "--batch-size", "1.5"],
        "1.5",
    ),
    "features_model": (
        ["features", "--model", "nosuchnet", "--dataset", "cifar10", "--batch-size", "2"],
        "nosuchnet",
    ),
    "features_dataset": (
        ["features", "--model", "resnet18", "--dataset", "nosuch", "--batch-size", "2"],
        "nosuch",
    ),
    "features_precision": (
        [
            "features",
            "--model",
            "resnet18",
            "--dataset",
            "cifar10",
            "--batch-size",
            "2",
            "--precision",
            "fp8",
        ],
        "fp8",
    ),  # fmt: skip
    "features_optimizer": (
        [
            "features",
            "--model",
            "resnet18",
            "--dataset",
            "cifar10",
            "--batch-size",
            "2",
            "--optimizer",
            "adamax",
        ],
        "adamax",
    ),  # fmt: skip
    # devices / data
    "devices_unknown": (["devices", "NoSuchGPU"], "NoSuchGPU"),
    "devices_json_unknown": (["devices", "--json", "NoSuchGPU"], "NoSuchGPU"),
    "data_rows_neg": (["data", "show", "a100-runs-agg", "--rows", "-1"], "'-1'"),
    "data_rows0": (["data", "show", "a100-runs-agg", "--rows", "0"], "'0'"),
    "data_rows_text": (["data", "show", "a100-runs-agg", "--rows", "all"], "'all'"),
    "data_unknown": (["data", "show", "no-such-table"], "no-such-table"),
    "data_fetch_unknown": (["data", "fetch", "no-such-table"], "no-such-table"),
    "data_bad_verb": (["data", "frobnicate"], "frobnicate"),
    # plan: arguments
    "plan_budget_nan": (["plan", "--budget-sec", "nan"], "'nan'"),
    "plan_budget_inf": (["plan", "--budget-sec", "inf"], "'inf'"),
    "plan_budget0": (["plan", "--budget-sec", "0"], "'0'"),
    "plan_budget_neg": (["plan", "--budget-sec", "-60"], "'-60'"),
    "plan_budget_text": (["plan", "--budget-sec", "hour"], "'hour'"),
    "plan_usd_nan": ([*PLAN, "--budget-usd", "nan"], "'nan'"),
    "plan_usd_inf": ([*PLAN, "--budget-usd", "inf"], "'inf'"),
    "plan_usd_neg": ([*PLAN, "--budget-usd", "-1"], "'-1'"),
    "plan_epochs0": ([*PLAN, "--epochs", "0"], "'0'"),
    "plan_epochs_frac": ([*PLAN, "--epochs", "2.5"], "'2.5'"),
    "plan_minacc_big": ([*PLAN, "--min-acc", "1.5"], "'1.5'"),
    "plan_minacc_nan": ([*PLAN, "--min-acc", "nan"], "'nan'"),
    "plan_value": ([*PLAN, "--value", "speed"], "speed"),
    "plan_time_source": ([*PLAN, "--time-source", "guessed"], "guessed"),
    # plan: files
    "plan_cands_missing": (["plan", "--budget-sec", "100", "--candidates", "{tmp}/nope.csv"], "nope.csv"),
    "plan_cands_empty": (["plan", "--budget-sec", "100", "--candidates", "{empty_csv}"], "empty.csv"),
    "plan_cands_header": (["plan", "--budget-sec", "100", "--candidates", "{header_only_csv}"], "no rows"),
    "plan_cands_binary": (["plan", "--budget-sec", "100", "--candidates", "{binary_csv}"], "binary"),
    "plan_cands_dir": (["plan", "--budget-sec", "100", "--candidates", "{adir}"], "folder"),
    "plan_price_neg": (
        ["plan", "--budget-sec", "100", "--budget-usd", "5", "--candidates", "{cands_price_neg_csv}"],
        "-2",
    ),  # fmt: skip
    "plan_price_text": (
        ["plan", "--budget-sec", "100", "--budget-usd", "5", "--candidates", "{cands_price_text_csv}"],
        "cheap",
    ),  # fmt: skip
    "plan_out_missing_dir": ([*PLAN, "--output", "{missing_dir_out}"], "no-such-folder"),
    "plan_out_dir": ([*PLAN, "--output", "{adir}"], "adir"),
    "plan_out_file_as_dir": ([*PLAN, "--output", "{file_as_dir_out}"], "cands_ok.csv"),
    # predict-epochs / predict-time: files and outputs
    "epochs_missing": (["predict-epochs", "--input", "{tmp}/nope.csv", "--output", "{out}"], "nope.csv"),
    "epochs_empty": (["predict-epochs", "--input", "{empty_csv}", "--output", "{out}"], "empty"),
    "epochs_header": (["predict-epochs", "--input", "{header_only_csv}", "--output", "{out}"], "no rows"),
    "epochs_binary": (["predict-epochs", "--input", "{binary_csv}", "--output", "{out}"], "binary"),
    "epochs_in_dir": (["predict-epochs", "--input", "{adir}", "--output", "{out}"], "folder"),
    "epochs_lacks": (["predict-epochs", "--input", "{not_sweep_csv}", "--output", "{out}"], "param_count"),
    "epochs_out_missing_dir": (
        ["predict-epochs", "--input", "{epochs_ok_csv}", "--output", "{missing_dir_out}"],
        "no-such-folder",
    ),  # fmt: skip
    "epochs_out_dir": (["predict-epochs", "--input", "{epochs_ok_csv}", "--output", "{adir}"], "adir"),
    "epochs_out_file_as_dir": (
        ["predict-epochs", "--input", "{epochs_ok_csv}", "--output", "{file_as_dir_out}"],
        "cands_ok.csv",
    ),  # fmt: skip
    "epochs_model": (
        ["predict-epochs", "--input", "{epochs_ok_csv}", "--output", "{out}", "--model", "lstm"],
        "lstm",
    ),  # fmt: skip
    "time_missing": (["predict-time", "--input", "{tmp}/nope.csv", "--output", "{out}"], "nope.csv"),
    "time_empty": (["predict-time", "--input", "{empty_csv}", "--output", "{out}"], "empty"),
    "time_header": (["predict-time", "--input", "{header_only_csv}", "--output", "{out}"], "no rows"),
    "time_binary": (["predict-time", "--input", "{binary_csv}", "--output", "{out}"], "binary"),
    "time_out_missing_dir": (
        ["predict-time", "--input", "{time_ok_csv}", "--output", "{missing_dir_out}"],
        "no-such-folder",
    ),  # fmt: skip
    "time_out_dir": (["predict-time", "--input", "{time_ok_csv}", "--output", "{adir}"], "adir"),
    "time_out_file_as_dir": (
        ["predict-time", "--input", "{time_ok_csv}", "--output", "{file_as_dir_out}"],
        "cands_ok.csv",
    ),  # fmt: skip
    # measure: everything is refused before the model is built or timed
    "measure_bs0": (["measure", "--model", "SimpleCNN", "--batch-size", "0"], "'0'"),
    "measure_bs_frac": (["measure", "--model", "SimpleCNN", "--batch-size", "2.5"], "'2.5'"),
    "measure_threads0": ([*MEASURE, "--threads", "0"], "'0'"),
    "measure_threads_neg": ([*MEASURE, "--threads", "-2"], "'-2'"),
    "measure_threads_frac": ([*MEASURE, "--threads", "1.5"], "'1.5'"),
    "measure_repeats0": ([*MEASURE, "--repeats", "0"], "'0'"),
    "measure_iters0": ([*MEASURE, "--iters", "0"], "'0'"),
    "measure_warmup_neg": ([*MEASURE, "--warmup", "-1"], "'-1'"),
    "measure_workers_neg": ([*MEASURE, "--workers", "-1"], "'-1'"),
    "measure_lr_inf": ([*MEASURE, "--lr", "inf"], "'inf'"),
    "measure_epochs0": ([*MEASURE, "--epochs", "0"], "'0'"),
    "measure_train_size0": ([*MEASURE, "--train-size", "0"], "'0'"),
    "measure_shape0": ([*MEASURE, "--input-shape", "0,32"], "0,32"),
    "measure_precision": ([*MEASURE, "--precision", "fp8"], "fp8"),
    "measure_device": ([*MEASURE, "--device", "tpu"], "tpu"),
    "measure_model": (["measure", "--model", "NoSuchNet", "--batch-size", "2"], "NoSuchNet"),
    "measure_out_missing_dir": ([*MEASURE, "--output", "{missing_dir_out}"], "no-such-folder"),
    "measure_out_dir": ([*MEASURE, "--output", "{adir}"], "adir"),
    "measure_out_file_as_dir": ([*MEASURE, "--output", "{file_as_dir_out}"], "cands_ok.csv"),
    "measure_out_not_sweep": ([*MEASURE, "--output", "{not_sweep_csv}"], "not_sweep.csv"),
    # microbench
    "micro_samples0": (["microbench", "--layer", "linear", "--samples", "0"], "'0'"),
    "micro_samples_neg": (["microbench", "--layer", "linear", "--samples", "-3"], "'-3'"),
    "micro_repeats0": (["microbench", "--layer", "linear", "--repeats", "0"], "'0'"),
    "micro_threads0": (["microbench", "--layer", "linear", "--threads", "0"], "'0'"),
    "micro_threads_neg": (["microbench", "--layer", "linear", "--threads", "-1"], "'-1'"),
    "micro_seed_neg": (["microbench", "--layer", "linear", "--seed", "-1"], "'-1'"),
    "micro_layer": (["microbench", "--layer", "warp"], "warp"),
    "micro_precision": (["microbench", "--layer", "linear", "--precision", "fp8"], "fp8"),
    "micro_device": (["microbench", "--layer", "linear", "--device", "tpu"], "tpu"),
    # sweep: arguments and outputs
    "sweep_limit_neg": (["sweep", "{sweep_ok_yaml}", "--output", "{out}", "--limit", "-1"], "'-1'"),
    "sweep_limit_frac": (["sweep", "{sweep_ok_yaml}", "--output", "{out}", "--limit", "1.5"], "'1.5'"),
    "sweep_missing_file": (["sweep", "{tmp}/nope.yaml"], "nope.yaml"),
    "sweep_bad_suffix": (["sweep", "{cands_ok_csv}"], "cands_ok.csv"),
    "sweep_out_dir": (["sweep", "{sweep_ok_yaml}", "--output", "{adir}"], "adir"),
    "sweep_out_missing_dir": (
        ["sweep", "{sweep_ok_yaml}", "--output", "{missing_dir_out}"],
        "no-such-folder",
    ),
    "sweep_out_file_as_dir": (["sweep", "{sweep_ok_yaml}", "--output", "{file_as_dir_out}"], "cands_ok.csv"),
    "sweep_out_not_sweep": (["sweep", "{sweep_ok_yaml}", "--output", "{not_sweep_csv}"], "not_sweep.csv"),
    # the top level
    "unknown_verb": (["frobnicate"], "frobnicate"),
}
CANDIDATES_BAD["price_neg"] = ("epoch_time_s,acc,price_per_hr\n10,0.7,1\n20,0.8,-2\n", "-2")
CANDIDATES_BAD["price_text"] = ("epoch_time_s,acc,price_per_hr\n10,0.7,cheap\n", "cheap")
for _key, (_text, _named) in EPOCHS_BAD.items():
    CLI_CASES[f"epochs_{_key}"] = (
        ["predict-epochs", "--input", f"{{epochs_{_key}_csv}}", "--output", "{out}"],
        _named,
    )
for _key, (_text, _named) in TIME_BAD.items():
    CLI_CASES[f"time_{_key}"] = (
        ["predict-time", "--input", f"{{time_{_key}_csv}}", "--output", "{out}"],
        _named,
    )
for _key, (_text, _named) in CANDIDATES_BAD.items():
    CLI_CASES[f"plan_cands_{_key}"] = (
        ["plan", "--budget-sec", "100", "--candidates", f"{{cands_{_key}_csv}}"],
        _named,
    )
for _key, (_text, _named) in SWEEP_BAD.items():
    CLI_CASES[f"sweep_{_key}"] = (["sweep", f"{{sweep_{_key}_yaml}}", "--output", "{out}", "--quiet"], _named)
if CAN_TEST_UNWRITABLE:
    for _verb, _argv in {
        "plan": PLAN,
        "measure": MEASURE,
        "epochs": ["predict-epochs", "--input", "{epochs_ok_csv}"],
        "time": ["predict-time", "--input", "{time_ok_csv}"],
        "sweep": ["sweep", "{sweep_ok_yaml}"],
    }.items():
        CLI_CASES[f"{_verb}_out_unwritable"] = ([*_argv, "--output", UNWRITABLE], UNWRITABLE)


@pytest.fixture
def no_work(monkeypatch):
    """Fail loudly if a case reaches a model fit or a measurement: validation must come first."""
    import chronos_core.convergence.curve_prior as cp
    import chronos_core.convergence.models as cm
    import chronos_core.predict.time_models as tm
    import chronos_core.profiling.layers as layers
    import chronos_core.profiling.timers as timers

    def boom(*_a, **_k):
        raise AssertionError("work started before the input was validated")

    for module, name in ((tm, "default_model"), (tm, "predict_time"), (cp, "default_curve_prior"),
                         (cm, "default_predictor"), (timers, "measure"), (layers, "benchmark_layer"),
                         (sweep_mod, "run_config")):  # fmt: skip
        monkeypatch.setattr(module, name, boom)


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_malformed_command_line_is_one_line(case, files, capsys, no_work, tmp_path):
    argv, named = CLI_CASES[case]
    code, err = run([a.format(**files) for a in argv], capsys)
    assert_one_line(code, err, named.format(**files))
    assert not (tmp_path / "out.csv").exists(), "nothing may be written for a refused input"


# ------------------------------------------------------------------------------------------ API

GOOD = {"model": "resnet18", "dataset": "CIFAR10", "gpu": "T4", "measure": False}
GOOD_GPU = {"name": "Mystery-GPU", "peak_fp32_tflops": 10.0, "memory_bandwidth_gbs": 500.0}
GOOD_DATA = {"name": "my-data", "train_size": 1000, "input_shape": [3, 32, 32], "num_classes": 10}

API_CASES: dict[str, tuple[dict, str]] = {
    "bs_true": ({"batch_size": True}, "batch_size"),
    "bs_false": ({"batch_size": False}, "batch_size"),
    "bs0": ({"batch_size": 0}, "batch_size"),
    "bs_neg": ({"batch_size": -32}, "-32"),
    "bs_frac": ({"batch_size": 2.5}, "2.5"),
    "bs_text": ({"batch_size": "abc"}, "abc"),
    "bs_nan": ({"batch_size": math.nan}, "nan"),
    "bs_inf": ({"batch_size": math.inf}, "inf"),
    "bs_none": ({"batch_size": None}, "batch_size"),
    "lr_inf": ({"learning_rate": math.inf}, "inf"),
    "lr_nan": ({"learning_rate": math.nan}, "nan"),
    "lr0": ({"learning_rate": 0}, "learning_rate"),
    "lr_true": ({"learning_rate": True}, "learning_rate"),
    "lr_text": ({"learning_rate": "fast"}, "fast"),
    "patience_neg": ({"patience": -1}, "patience"),
    "patience_true": ({"patience": True}, "patience"),
    "patience_frac": ({"patience": 2.5}, "2.5"),
    "maxep0": ({"max_epochs": 0}, "max_epochs"),
    "maxep_frac": ({"max_epochs": 10.5}, "10.5"),
    "mindelta_neg": ({"min_delta": -1e-3}, "min_delta"),
    "mindelta_inf": ({"min_delta": math.inf}, "inf"),
    "mindelta_false": ({"min_delta": False}, "min_delta"),
    "momentum_big": ({"momentum": 1.5}, "1.5"),
    "momentum_text": ({"momentum": "high"}, "high"),
    "momentum_inf": ({"momentum": math.inf}, "inf"),
    "precision": ({"precision": "fp8"}, "fp8"),
    "precision_true": ({"precision": True}, "True"),
    "optimizer": ({"optimizer": "adamax"}, "adamax"),
    "optimizer_int": ({"optimizer": 3}, "3"),
    "gpu_unknown": ({"gpu": "T5"}, "T5"),
    "gpu_int": ({"gpu": 4}, "4"),
    "gpu_dict_unknown_field": ({"gpu": {**GOOD_GPU, "speed": 3}}, "speed"),
    "gpu_dict_missing": ({"gpu": {"name": "X1", "peak_fp32_tflops": 10.0}}, "memory_bandwidth_gbs"),
    "gpu_dict_neg_bw": ({"gpu": {**GOOD_GPU, "memory_bandwidth_gbs": -5}}, "-5"),
    "gpu_dict_inf_tflops": ({"gpu": {**GOOD_GPU, "peak_fp32_tflops": math.inf}}, "inf"),
    "gpu_dict_bool": ({"gpu": {**GOOD_GPU, "peak_fp32_tflops": True}}, "True"),
    "gpu_dict_text": ({"gpu": {**GOOD_GPU, "peak_fp32_tflops": "fast"}}, "fast"),
    "gpu_dict_kind": ({"gpu": {**GOOD_GPU, "kind": "tpu"}}, "tpu"),
    "gpu_dict_catalog_name": ({"gpu": {**GOOD_GPU, "name": "T4"}}, "T4"),
    "gpu_dict_name_int": ({"gpu": {**GOOD_GPU, "name": 7}}, "7"),
    "data_catalog_name": ({"dataset": {**GOOD_DATA, "name": "CIFAR10"}}, "CIFAR10"),
    "data_catalog_spelling": ({"dataset": {**GOOD_DATA, "name": "cifar-10"}}, "cifar-10"),
    "data_size_frac": ({"dataset": {**GOOD_DATA, "train_size": 2.5}}, "2.5"),
    "data_size_neg": ({"dataset": {**GOOD_DATA, "train_size": -1}}, "train_size"),
    "data_size_true": ({"dataset": {**GOOD_DATA, "train_size": True}}, "train_size"),
    "data_size_text": ({"dataset": {**GOOD_DATA, "train_size": "many"}}, "many"),
    "data_shape_text": ({"dataset": {**GOOD_DATA, "input_shape": "3x32x32"}}, "3x32x32"),
    "data_shape_zero": ({"dataset": {**GOOD_DATA, "input_shape": [3, 0, 32]}}, "input_shape"),
    "data_shape_empty": ({"dataset": {**GOOD_DATA, "input_shape": []}}, "input_shape"),
    "data_shape_int": ({"dataset": {**GOOD_DATA, "input_shape": 32}}, "input_shape"),
    "data_classes0": ({"dataset": {**GOOD_DATA, "num_classes": 0}}, "num_classes"),
    "data_missing": ({"dataset": {"name": "d", "train_size": 10}}, "input_shape"),
    "data_unknown_field": ({"dataset": {**GOOD_DATA, "colour": "red"}}, "colour"),
    "data_modality": ({"dataset": {**GOOD_DATA, "modality": "video"}}, "video"),
    "data_vocab": ({"dataset": {**GOOD_DATA, "vocab_size": -3}}, "vocab_size"),
    "data_int": ({"dataset": 5}, "5"),
    "data_unknown": ({"dataset": "nosuchdata"}, "nosuchdata"),
    "model_unknown": ({"model": "nosuchnet"}, "nosuchnet"),
    "measure_text": ({"measure": "yes"}, "yes"),
    "model_kwargs_list": ({"model_kwargs": [1]}, "model_kwargs"),
    "host": ({"host": "aws"}, "aws"),
}


@pytest.mark.parametrize("case", sorted(API_CASES))
def test_malformed_api_argument_is_a_value_error_naming_it(case):
    from chronos_core.api import TrainingTimePredictor

    changes, named = API_CASES[case]
    with pytest.raises(ValueError) as exc:
        TrainingTimePredictor(**{**GOOD, **changes})
    message = str(exc.value)
    assert "\n" not in message and named in message, message


def test_a_dict_dataset_never_replaces_a_catalog_dataset():
    from chronos_core.api import TrainingTimePredictor
    from chronos_core.catalog.datasets import Datasets

    before = Datasets.get("CIFAR10")
    with pytest.raises(ValueError, match="catalog"):
        TrainingTimePredictor(**{**GOOD, "dataset": {**GOOD_DATA, "name": "CIFAR10", "train_size": 10}})
    assert Datasets.get("CIFAR10") is before and before.train_size == 50_000
    mine = TrainingTimePredictor(**{**GOOD, "dataset": GOOD_DATA})
    assert mine.dataset.name == "my-data" and Datasets.get("CIFAR10") is before


def test_a_dict_cpu_is_predicted_from_its_specs_not_timed_here():
    from chronos_core.api import TrainingTimePredictor

    p = TrainingTimePredictor(
        **{**GOOD, "measure": True, "gpu": {**GOOD_GPU, "name": "Other-CPU", "kind": "cpu"}}
    )
    assert p.on_cpu and not p.measures_here
    here = TrainingTimePredictor(**{**GOOD, "measure": True, "gpu": "cpu"})
    assert here.measures_here


# ------------------------------------------------------------------------------------------ the checks


@pytest.mark.parametrize(
    ("check", "value"),
    [(v.positive_int, x) for x in (True, 0, -1, 2.5, math.nan, math.inf, "x", None, "")]
    + [(v.non_negative_int, x) for x in (-1, 0.5, False)]
    + [(v.positive_float, x) for x in (0, -1e-9, math.nan, math.inf, -math.inf, True, "x")]
    + [(v.non_negative_float, x) for x in (-1, math.nan, math.inf)]
    + [(v.finite_float, x) for x in (math.nan, math.inf, "abc")]
    + [(v.fraction, x) for x in (-0.1, 1.1, math.nan)],
)
def test_scalar_checks_refuse_and_name_the_value(check, value):
    with pytest.raises(ChronosError) as exc:
        check("knob", value)
    assert "knob" in str(exc.value) and repr(value) in str(exc.value)


def test_scalar_checks_accept_and_convert():
    assert v.positive_int("n", "3") == 3 and v.positive_int("n", 4.0) == 4
    assert v.non_negative_int("n", 0) == 0 and v.positive_float("x", "1e-3") == 1e-3
    assert v.choice("kind", "ADAM", ["SGD", "Adam"]) == "Adam"
    with pytest.raises(ChronosError, match=r"Unknown kind 'adamax'\. Accepted: SGD, Adam"):
        v.choice("kind", "adamax", ["SGD", "Adam"])


def test_output_path_probe_leaves_no_file(tmp_path):
    out = v.output_path(tmp_path / "new.csv")
    assert out == tmp_path / "new.csv" and not out.exists()
    made = v.output_path(tmp_path / "a" / "b" / "new.csv", create_parent=True)
    assert made.parent.is_dir() and not made.exists()


# ------------------------------------------------------------------------------------------ batch verbs


def test_plan_says_which_candidates_it_left_out(tmp_path, capsys):
    cands = tmp_path / "c.csv"
    cands.write_text("epoch_time_s,acc\n10,0.7\n,0.8\n20,nan\n5,0.6\n")
    out = tmp_path / "chosen.csv"
    code, err = run(["plan", "--budget-sec", "1000", "--epochs", "2", "--candidates", str(cands),
                     "--output", str(out)], capsys)  # fmt: skip
    assert code == 0 and err.count("\n") == 1 and "2 candidate(s)" in err and "rows 2, 3" in err
    assert len(pd.read_csv(out)) == 2


def test_batch_verbs_end_with_a_summary_and_keep_integer_cells(tmp_path, capsys, monkeypatch):
    import chronos_core.convergence.cli as conv_cli
    import chronos_core.predict.predict_time_cli as time_cli

    preds = {"pred_T_conv": 12.0, "pred_T_conv_lo": 8.0, "pred_T_conv_hi": 20.0}
    monkeypatch.setattr(conv_cli, "predict_epochs_frame", lambda raw, **_: raw.assign(**preds))
    rows = tmp_path / "in.csv"
    rows.write_text(
        csv_text(EPOCHS_ROW).rstrip("\n") + "\n" + csv_text(EPOCHS_ROW, dataset_size="").split("\n")[1]
    )
    out = tmp_path / "out.csv"
    assert main(["predict-epochs", "--input", str(rows), "--output", str(out)]) == 0
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said == f"predict-epochs: 2 rows read, 2 predicted, 0 failed -> {out}"
    with out.open() as fh:
        first = next(csv.DictReader(fh))
    assert first["dataset_size"] == "50000" and first["batch_size"] == "128"

    def fake_rows(frame, model=None):
        result = frame.copy()
        for col in ("pred_batch_time_ms", "pred_compute_ms", "pred_loader_ms", "pred_batch_time_ms_lo",
                    "pred_batch_time_ms_hi"):  # fmt: skip
            result[col] = 1.0
        result["error"] = ["", "GPU not in the catalog"]
        return result

    monkeypatch.setattr(time_cli, "predict_rows", fake_rows)
    rows.write_text(
        csv_text(TIME_ROW).rstrip("\n") + "\n" + csv_text(TIME_ROW, gpu_fp32_tflops="").split("\n")[1]
    )
    assert main(["predict-time", "--input", str(rows), "--output", str(out)]) == 0
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said.startswith(f"predict-time: 2 rows read, 1 predicted, 1 failed -> {out}")
    assert "row 2" in said
    with out.open() as fh:
        first = next(csv.DictReader(fh))
    assert first["batch_size"] == "64" and first["param_count"] == "11000000"


# ------------------------------------------------------------------------------------------ sweeps


def fake_run_config(kind, cfg):
    return {"config_id": sweep_mod.config_id(cfg), "config_json": json.dumps(cfg, sort_keys=True),
            "status": "ok", "error_kind": "", "error": "", **sweep_mod._config_columns(kind, cfg),
            "batch_time_ms": 1.5, "elapsed_s": 0.0}  # fmt: skip


@pytest.fixture
def grid_yaml(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(sweep_mod, "run_config", fake_run_config)
    path = tmp_path / "grid.yaml"
    path.write_text(sweep_yaml(grid="{model: [SimpleCNN], batch_size: [2, 4, 8, 16]}"))
    return path


def test_a_torn_last_row_is_cut_and_run_again(tmp_path, grid_yaml, capsys):
    out = tmp_path / "sweep.csv"
    assert main(["sweep", str(grid_yaml), "--output", str(out), "--quiet", "--limit", "2"]) == 0
    capsys.readouterr()
    whole = out.read_bytes()
    lines = whole.splitlines(keepends=True)
    third = fake_run_config("model", sweep_mod.expand(sweep_mod.load_sweep(grid_yaml))[2])
    with out.open("a", newline="") as fh:  # a crash mid-write: half a row, no newline
        csv.DictWriter(fh, next(csv.reader([lines[0].decode()])), restval="").writerow(third)
    out.write_bytes(out.read_bytes()[: len(whole) + 25])
    assert main(["sweep", str(grid_yaml), "--output", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "torn last row" in captured.err
    table = pd.read_csv(out)
    assert len(table) == 4 and table["config_id"].is_unique and out.read_bytes().endswith(b"\n")
    assert (table["batch_size"].astype(str) == ["2", "4", "8", "16"]).all()


def test_a_complete_line_with_missing_fields_is_torn_too(tmp_path):
    out = tmp_path / "t.csv"
    out.write_text("config_id,status,x\nabc,ok,1\ndef,o\n")
    sink = sweep_mod.CsvSink(out)
    assert sink.n_rows == 1 and out.read_text() == "config_id,status,x\nabc,ok,1\n"


def test_a_broken_row_mid_table_is_refused_not_rewritten(tmp_path):
    out = tmp_path / "t.csv"
    text = "config_id,status,x\nabc,ok\ndef,ok,2\n"
    out.write_text(text)
    with pytest.raises(ChronosError, match="line 2 has 2 fields"):
        sweep_mod.CsvSink(out)
    assert out.read_text() == text


def test_a_torn_sidecar_is_kept_aside_not_silently_reset(tmp_path, grid_yaml, capsys):
    out = tmp_path / "sweep.csv"
    out.with_suffix(".json").write_text('{"sessions": [{"date_utc": "x"')
    assert main(["sweep", str(grid_yaml), "--output", str(out), "--quiet", "--limit", "1"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unreadable" in err
    kept = list(tmp_path.glob("sweep.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text().startswith('{"sessions"')
    record = json.loads(out.with_suffix(".json").read_text())
    assert len(record["sessions"]) == 1
    assert not list(tmp_path.glob(".sweep.json.*.tmp"))


def test_a_second_run_on_a_locked_output_is_refused(tmp_path, grid_yaml, capsys):
    out = tmp_path / "sweep.csv"
    with sweep_mod.output_lock(out) as lock:
        assert lock.exists()
        code, err = run(["sweep", str(grid_yaml), "--output", str(out), "--quiet"], capsys)
        assert_one_line(code, err, "being written by another run")
        assert not out.exists()
    assert not lock.exists()
    assert main(["sweep", str(grid_yaml), "--output", str(out), "--quiet"]) == 0
    assert len(pd.read_csv(out)) == 4 and not Path(f"{out}.lock").exists()


def test_case_count():
    assert len(CLI_CASES) + len(API_CASES) >= 150
