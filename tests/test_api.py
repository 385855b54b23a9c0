"""TrainingTimePredictor: the CHRONOS example against its measured value, custom inputs, bad input, CLI."""

from __future__ import annotations

import json
import math

import pytest
from torch import nn

import chronos_core as chronos
from chronos_core.api import Estimate, TrainingTimePredictor, combine
from chronos_core.cli import main

# The seed's example as measured in the CHRONOS CNN epoch-time table (batch 32, fp16, SGD, lr 0.001):
# 73.75 ms per batch x ceil(50,000 / 32) = 1,563 steps.
MEASURED_T4_EPOCH_S = 73.751118 * 1563 / 1000


def _seed_example(**changes) -> TrainingTimePredictor:
    args = dict(model=chronos.Models.VGG16, dataset=chronos.Datasets.Cifar100,
                optimizer=chronos.Optimizers.SGD, batch_size=32, learning_rate=0.001, precision=16,
                gpu=chronos.Devices.T4)  # fmt: skip
    return chronos.TrainingTimePredictor(**{**args, **changes})


def test_seed_example_is_within_15_percent_of_the_chronos_measurement(mirror):
    p = _seed_example()
    epoch = p.predict_epoch_time()
    assert abs(epoch / MEASURED_T4_EPOCH_S - 1) < 0.15, (float(epoch), MEASURED_T4_EPOCH_S)
    assert epoch.lo < epoch < epoch.hi
    epochs = p.predict_number_of_epochs()
    assert 1 <= epochs.lo <= epochs <= epochs.hi <= 200
    total = p.predict_total_time()
    assert total == pytest.approx(float(epoch) * float(epochs))
    assert total.lo < total < total.hi
    assert total.cost_usd == pytest.approx(float(total) / 3600 * chronos.Devices.T4.price_per_hr_usd)
    why = p.explain()
    assert why["data"]["time"]["rows_this_config"] >= 1
    assert why["data"]["time"]["regime"].startswith("interpolation")
    assert why["data"]["time"]["interval_regime"] == "seen"  # VGG16 and the T4 are both in the tables
    assert why["physics"]["t_flop_ms"] > 0
    assert why["features"]["param_count"] == 134_678_692  # CHRONOS table's VGG16 for CIFAR-100
    assert set(why) >= {"configuration", "features", "physics", "data"}


def test_faster_gpu_is_predicted_faster_and_custom_gpu_specs_work(mirror):
    t4 = _seed_example().predict_epoch_time()
    h100 = _seed_example(gpu="NVIDIA H100 SXM").predict_epoch_time()
    assert h100 < t4
    custom = {"name": "my-test-gpu", "peak_fp32_tflops": 30.0, "peak_fp16_tensor_tflops": 120.0,
              "memory_bandwidth_gbs": 900.0, "sm_count": 80, "tensor_cores": 320}  # fmt: skip
    epoch = _seed_example(gpu=custom).predict_epoch_time()
    assert math.isfinite(epoch) and epoch.lo < epoch < epoch.hi
    assert math.isnan(_seed_example(gpu=custom).predict_total_time().cost_usd)  # no price given


def test_the_host_sets_the_loader_wait(mirror):
    gcp = _seed_example(host="gcp")
    assert gcp.row()["host_provider"] == "GCP" and _seed_example().row()["host_provider"] is None
    assert abs(gcp.predict_epoch_time() / MEASURED_T4_EPOCH_S - 1) < 0.15  # measured on a GCP host
    # TinyImageNet batches: the public tables' RunPod hosts wait ~130 ms for data (median), GCP's ~1 ms
    big = dict(model="ResNet50", dataset="TinyImageNet", batch_size=128)
    loader = [
        float(_seed_example(**big, host=h)._predicted()["pred_loader_ms"].iloc[0])  # noqa: SLF001
        for h in ("GCP", "RunPod")
    ]
    assert loader[1] > 5 * loader[0], loader


def test_user_module_and_custom_dataset(mirror):
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 64), nn.ReLU(), nn.Linear(64, 7))
    data = {"name": "tiny-images", "train_size": 1000, "input_shape": (3, 16, 16), "num_classes": 7}
    p = TrainingTimePredictor(model=net, dataset=data, optimizer="Adam", batch_size=50, gpu="A100")
    assert p.steps_per_epoch == 20
    assert p.row()["family"] == "MLP"
    epoch = p.predict_epoch_time()
    assert 0 < epoch < 60
    assert p.predict_number_of_epochs() >= 1


def test_cpu_measures_on_the_spot():
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    p = TrainingTimePredictor(model=net, dataset="Digits", batch_size=64, gpu="cpu")
    it = p.predict_iteration_time()
    assert p._measured is not None  # noqa: SLF001 - it was timed, not predicted
    assert 0 < it.lo < it < it.hi
    assert p.predict_epoch_time() == pytest.approx(float(it) * p.steps_per_epoch / 1000)
    assert p.summary()["time_source"] == "measured here"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"gpu": "T5"}, ["'T5'", "T4", "H100-SXM"]),
        ({"precision": 8}, ["8", "bf16"]),
        ({"batch_size": 0}, ["batch_size", "0"]),
        ({"batch_size": 2.5}, ["batch_size", "2.5"]),
        ({"learning_rate": -1}, ["learning_rate", "-1"]),
        ({"model": "vgg"}, ["'vgg'", "VGG16"]),
        ({"dataset": "cifar1000"}, ["'cifar1000'", "CIFAR100"]),
        ({"optimizer": "lion"}, ["'lion'", "AdamW"]),
        ({"momentum": 1.5}, ["momentum", "1.5"]),
        ({"host": "aws"}, ["'aws'", "RunPod", "GCP"]),
        ({"dataset": {"train_size": 10}}, ["input_shape", "num_classes"]),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_choices(changes, words):
    with pytest.raises(ValueError) as info:
        _seed_example(**changes).predict_epoch_time()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_model_that_does_not_fit_the_dataset_is_one_line():
    net = nn.Sequential(nn.Flatten(), nn.Linear(5, 2))
    with pytest.raises(ValueError, match="failed on inputs") as info:
        TrainingTimePredictor(model=net, dataset="CIFAR10", gpu="T4").features()
    assert "\n" not in str(info.value)


def test_combine_adds_log_widths_in_quadrature():
    a = Estimate(10.0, 5.0, 20.0)
    b = Estimate(3.0, 3.0, 3.0)
    out = combine(a, b, "s")
    assert float(out) == 30.0 and out.lo == pytest.approx(15.0) and out.hi == pytest.approx(60.0)
    c = combine(a, a, "s")
    assert c.hi / float(c) == pytest.approx(2 ** math.sqrt(2))


def test_cli_predict_and_compare(mirror, capsys):
    base = ["--model", "vgg16", "--dataset", "cifar100", "--batch-size", "32", "--precision", "16",
            "--optimizer", "sgd", "--lr", "0.001"]  # fmt: skip
    assert main(["predict", *base, "--gpu", "T4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert abs(out["epoch_time_s"]["value"] / MEASURED_T4_EPOCH_S - 1) < 0.15
    assert out["total_time_s"]["cost_usd"] > 0
    assert main(["predict", *base, "--gpu", "T4"]) == 0
    text = capsys.readouterr().out
    assert "epoch time" in text and "80%" in text and "$" in text
    assert main(["compare", *base, "--gpu", "T4", "--gpu", "A100", "--gpu", "H100", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["gpu"] for r in rows][0] == "T4" and len(rows) == 3
    assert rows[2]["epoch_s"] < rows[0]["epoch_s"]


def test_data_parallel_runs_each_gpus_share_and_adds_the_exposed_allreduce(mirror, capsys):
    one = _seed_example(gpu="A100-SXM4-80GB", batch_size=32)
    eight = _seed_example(gpu="A100-SXM4-80GB", batch_size=256, num_gpus=8)
    assert eight.per_gpu().batch_size == 32 and eight.steps_per_epoch == math.ceil(50_000 / 256)
    comm = eight._allreduce_ms()  # noqa: SLF001
    assert comm > 0
    it1, it8 = one.predict_iteration_time(), eight.predict_iteration_time()
    assert float(it8) == pytest.approx(float(it1) + comm) and it8.lo == pytest.approx(it1.lo + comm)
    epoch = eight.predict_epoch_time()
    assert float(epoch) == pytest.approx(float(it8) * eight.steps_per_epoch / 1000)
    total = eight.predict_total_time()
    price = chronos.Devices.get("A100-SXM4-80GB").price_per_hr_usd
    assert total.cost_usd == pytest.approx(float(total) / 3600 * price * 8)  # every GPU is paid for
    assert eight.summary()["num_gpus"] == 8 and "num_gpus=8" in repr(eight)
    assert eight.time_model == one.time_model
    assert main(["predict", "--model", "vgg16", "--dataset", "cifar100", "--batch-size", "256",
                 "--gpu", "A100-SXM4-80GB", "--num-gpus", "8", "--no-cache"]) == 0  # fmt: skip
    assert "8 x A100-SXM4-80GB" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("changes", "words"),
    [({"num_gpus": 3}, ("split", "3")), ({"num_gpus": 2, "gpu": "cpu"}, ("applies to GPUs",)),
     ({"num_gpus": 2, "gpu": "MI300X"}, ("MI300X", "not known")), ({"num_gpus": 9}, ("1 to 8",))],
)  # fmt: skip
def test_bad_gpu_counts_are_one_line(changes, words):
    with pytest.raises(chronos.ChronosError) as err:
        _seed_example(**changes)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_cli_bad_gpu_is_one_line(capsys):
    assert main(["predict", "--model", "vgg16", "--dataset", "cifar100", "--gpu", "T5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "T5" in err and "T4" in err


def test_keras_model_is_measured_on_the_cpu_without_touching_the_users_model():
    from chronos_core._env import tensorflow

    tf = tensorflow()
    layers = tf.keras.layers
    net = tf.keras.Sequential([tf.keras.Input((8, 8, 1)), layers.Conv2D(4, 3, activation="relu"),
                               layers.GlobalAveragePooling2D(), layers.Dense(10)])  # fmt: skip
    data = {"name": "tiny-gray", "train_size": 640, "input_shape": (1, 8, 8), "num_classes": 10}
    p = TrainingTimePredictor(model=net, dataset=data, optimizer="Adam", batch_size=32, gpu="cpu")
    epoch = p.predict_epoch_time()
    assert p.summary()["time_source"] == "measured here" and 0 < epoch.lo < epoch < epoch.hi
    assert p.row()["family"] == "CNN" and p.row()["param_count"] == net.count_params()
    assert getattr(net, "optimizer", None) is None  # timed on a clone


def test_custom_gpu_given_again_under_the_same_name_uses_the_new_specs():
    first = TrainingTimePredictor(
        model="VGG16",
        dataset="CIFAR100",
        gpu={"name": "twice-gpu", "peak_fp32_tflops": 10, "memory_bandwidth_gbs": 300},
    )
    again = TrainingTimePredictor(
        model="VGG16",
        dataset="CIFAR100",
        gpu={"name": "twice-gpu", "peak_fp32_tflops": 20, "memory_bandwidth_gbs": 300},
    )
    assert (first.gpu.peak_fp32_tflops, again.gpu.peak_fp32_tflops) == (10, 20)
    with pytest.raises(ValueError, match="already in the catalog"):
        TrainingTimePredictor(
            model="VGG16",
            dataset="CIFAR100",
            gpu={"name": "T4", "peak_fp32_tflops": 20, "memory_bandwidth_gbs": 300},
        )


def _gpt2(**changes):
    kw = dict(model="hf:gpt2", dataset="wikitext-103", seq_len=512, batch_size=32, precision="bf16",
              optimizer="adamw", gpu="H100-SXM")  # fmt: skip
    return TrainingTimePredictor(**{**kw, **changes})


def test_tensor_and_pipeline_parallel_scale_the_one_gpu_step(capsys):
    one, tp = _gpt2(), _gpt2(num_gpus=4, parallel="tp")
    ratio = tp._parallel_ratio()  # noqa: SLF001
    assert 0.25 < ratio < 1  # four GPUs help, but not four times (repeated layer norms, all-reduces)
    # a token corpus has no loader wait: the iteration is the one-GPU compute times the ratio
    assert float(tp.predict_iteration_time()) == pytest.approx(float(one.predict_iteration_time()) * ratio)
    assert tp.per_gpu().batch_size == 32 and tp.steps_per_epoch == one.steps_per_epoch
    assert tp.memory_estimate().peak_bytes < one.memory_estimate().peak_bytes
    assert tp.summary()["parallel"] == "tp" and "parallel='tp'" in repr(tp)
    total = tp.predict_total_time()
    price = chronos.Devices.get("H100-SXM").price_per_hr_usd
    assert total.cost_usd == pytest.approx(float(total) / 3600 * price * 4)
    assert tp.operators(3)["step_ms"]["pred_step_ms"] < one.operators(3)["step_ms"]["pred_step_ms"]
    pp = _gpt2(num_gpus=4, parallel="pp", microbatches=8)
    assert pp.per_gpu().batch_size == 4 and "microbatches=8" in repr(pp)
    # more micro-batches shrink GPipe's bubble: (m + n - 1) / (n m) of the one-micro-batch-per-GPU time
    assert float(pp.predict_iteration_time()) < float(
        _gpt2(num_gpus=4, parallel="pp").predict_iteration_time()
    )
    args = ["predict", "--model", "hf:gpt2", "--dataset", "wikitext-103", "--seq-len", "512", "--batch-size",
            "32", "--precision", "bf16", "--optimizer", "adamw", "--gpu", "H100-SXM", "--num-gpus", "4",
            "--parallel", "pp", "--microbatches", "8", "--no-cache"]  # fmt: skip
    assert main(args) == 0
    assert "4 x H100-SXM (pipeline parallel), 8 micro-batches" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("changes", "words"),
    [({"parallel": "zero"}, ("'zero'", "dp", "tp", "pp")),
     ({"num_gpus": 2, "microbatches": 4}, ("microbatches 4", "'pp' only")),
     ({"num_gpus": 2, "parallel": "pp", "microbatches": 5}, ("microbatches 5", "divides batch_size 32")),
     ({"parallel": "tp", "num_gpus": 2, "gpu": "cpu"}, ("applies to GPUs",))],
)  # fmt: skip
def test_bad_parallel_plans_are_one_line(changes, words):
    with pytest.raises(chronos.ChronosError) as err:
        _gpt2(**changes) if changes.get("gpu") != "cpu" else _seed_example(**changes)
    assert all(w in str(err.value) for w in words) and "\n" not in str(err.value)


def test_tensor_parallel_heads_that_do_not_split_are_one_line():
    with pytest.raises(chronos.ChronosError) as err:  # GPT-2 has 12 heads
        _gpt2(num_gpus=8, parallel="tp").predict_iteration_time()
    assert "12 attention heads" in str(err.value) and "\n" not in str(err.value)
