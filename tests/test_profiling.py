"""The PyTorch training timer: warm-up excluded, sync around clock reads, loader vs compute, spread."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from torch import nn

from chronos_core.errors import ChronosError
from chronos_core.profiling import timers
from chronos_core.profiling.environment import (
    capture_environment,
    device_slug,
    resolve_device,
    write_provenance,
)
from chronos_core.profiling.timers import (
    TimingConfig,
    measure,
    parse_precision,
    summarize_repeats,
    time_training,
)


class CountingNet(nn.Module):
    """A tiny image classifier that counts its forward calls."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.calls = 0
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.body(x)


def _cfg(model: nn.Module | str, **kw) -> TimingConfig:
    base = dict(dataset="Digits", batch_size=8, repeats=3, warmup=2, iters=4, threads=1)
    base.update(kw)
    return TimingConfig(model, **base)


def test_parse_precision_spellings_and_bad_value():
    assert parse_precision(32) == parse_precision("fp32") == parse_precision("float32")
    fp16, bf16 = parse_precision("16"), parse_precision("bf16")
    assert (fp16.bits, fp16.amp, fp16.amp_dtype, fp16.label) == (16, True, "float16", "16")
    assert (bf16.bits, bf16.amp, bf16.amp_dtype, bf16.label) == (16, True, "bfloat16", "bf16")
    assert parse_precision("AMP").amp_dtype == "float16"
    with pytest.raises(ChronosError, match=r"Unknown precision '8'.*32.*16.*bf16"):
        parse_precision("8")


def test_device_not_present_and_unknown_device():
    assert resolve_device("CPU") == "cpu"
    with pytest.raises(ChronosError, match="Unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ChronosError, match="'cuda' is not present"):
            time_training(_cfg(CountingNet(), device="cuda"))


def test_warmup_is_excluded_and_every_timed_iteration_is_recorded():
    net = CountingNet()
    result = time_training(_cfg(net), capture_env=False)
    assert net.calls == 2 + 3 * 4  # warm-up ran, but only repeats x iters are recorded
    assert [len(r) for r in result.compute_ms] == [4, 4, 4]
    assert [len(r) for r in result.loader_wait_ms] == [4, 4, 4]
    assert all(v > 0 for r in result.compute_ms + result.loader_wait_ms for v in r)
    summary = result.summary()
    assert summary["n_repeats"] == 3
    assert summary["batch_time_ms"] == pytest.approx(summary["compute_ms"] + summary["loader_wait_ms"])
    assert summary["batch_time_ms_p10"] <= summary["batch_time_ms_p50"] <= summary["batch_time_ms_p90"]
    # the same intervals on the process CPU-time clock, kept apart from wall time
    assert [len(r) for r in result.compute_cpu_ms] == [4, 4, 4]
    assert summary["compute_cpu_ms"] > 0 and "batch_time_cpu_ms_cv" in summary
    assert summary["batch_time_cpu_ms"] == pytest.approx(
        summary["compute_cpu_ms"] + summary["loader_wait_cpu_ms"]
    )


def test_device_is_synchronized_before_every_clock_read(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(timers, "synchronize", lambda device: calls.append(device))
    time_training(_cfg(CountingNet(), warmup=1, repeats=2, iters=3), capture_env=False)
    assert len(calls) == 3 * (1 + 2 * 3)  # before the batch, after the copy, after the step


def test_loader_wait_is_measured_apart_from_compute(monkeypatch):
    """A slow collate shows up in loader_wait_ms, not in compute_ms."""
    import time as _time

    from torch.utils.data import DataLoader

    real_init = DataLoader.__init__

    def slow_init(self, *args, **kwargs):
        def collate(batch):
            _time.sleep(0.02)
            return torch.utils.data.default_collate(batch)

        kwargs["collate_fn"] = collate
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(DataLoader, "__init__", slow_init)
    summary = time_training(_cfg(CountingNet(), repeats=2, iters=3), capture_env=False).summary()
    assert summary["loader_wait_ms"] >= 19.0
    assert summary["compute_ms"] < summary["loader_wait_ms"]


def test_dataloader_workers_and_bf16_autocast_run():
    net = CountingNet()
    result = time_training(_cfg(net, num_workers=1, precision="bf16", repeats=2, iters=2), capture_env=False)
    assert result.summary()["compute_ms"] > 0
    assert result.as_row()["amp_dtype"] == "bfloat16" and result.as_row()["precision"] == 16


def test_allocator_failure_becomes_one_line_out_of_memory_error():
    class Exploding(CountingNet):
        def forward(self, x):
            raise RuntimeError("CUDA out of memory. Tried to allocate 9.00 GiB\nmore detail")

    with pytest.raises(
        ChronosError, match=r"batch_size 8 of Exploding does not fit in memory on cpu"
    ) as info:
        time_training(_cfg(Exploding()), capture_env=False)
    assert "\n" not in str(info.value)


def test_batch_far_beyond_memory_is_refused_before_allocating():
    with pytest.raises(
        ChronosError, match=r"batch_size 2000000 of VGG16 does not fit in memory on cpu: needs ~"
    ):
        time_training(TimingConfig("VGG16", "CIFAR10", 2_000_000, repeats=1, iters=1), capture_env=False)


def test_bad_config_values_are_one_line_errors():
    with pytest.raises(ChronosError, match="batch_size must be a positive integer"):
        TimingConfig(CountingNet(), batch_size=0)
    with pytest.raises(ChronosError, match="Unknown model 'NoSuchNet'"):
        time_training(TimingConfig("NoSuchNet", "CIFAR10", 4), capture_env=False)


def test_summarize_repeats_uses_repeat_means_for_spread():
    out = summarize_repeats([[1.0, 3.0], [2.0, 4.0], [3.0, 5.0]], "x")
    assert out["x"] == pytest.approx(3.0)
    assert out["x_std"] == pytest.approx(1.0)  # std of repeat means 2, 3, 4
    assert out["x_cv"] == pytest.approx(1.0 / 3.0)
    assert out["x_p50"] == pytest.approx(np.percentile([1, 3, 2, 4, 3, 5], 50))


def test_measure_zoo_model_row_has_features_device_and_provenance_fields():
    cfg = TimingConfig(
        "SimpleCNN",
        "CIFAR10",
        4,
        repeats=3,
        warmup=1,
        iters=1,
        threads=1,
        optimizer="Adam",
        model_kwargs={"depth": 1, "base_filters": 4},
    )
    row = measure(cfg)
    assert row["model"] == "SimpleCNN" and row["family"] == "CNN"
    assert row["param_count"] == sum(
        p.numel()
        for p in timers.build_model(
            "SimpleCNN", timers.dataset_spec("CIFAR10"), depth=1, base_filters=4
        ).parameters()
    )
    assert row["flops_train_per_batch"] > row["flops_fwd_per_batch"] > 0
    assert row["steps_per_epoch"] == 12_500 and row["input_shape"] == "(3, 32, 32)"
    assert row["threads"] == 1 and row["device"].startswith("cpu-")
    assert row["torch_version"] == torch.__version__ and row["git_revision"]
    assert len(json.loads(row["compute_ms_repeats_json"])) == 3
    assert json.loads(row["model_kwargs"]) == {"base_filters": 4, "depth": 1}


def test_zoo_model_input_shape_follows_the_model():
    spec = timers.dataset_spec("CIFAR10", None, "ViT", image_size=32, patch_size=8)
    assert spec.input_shape == (3, 32, 32)
    assert timers.dataset_spec("SST2", (16,)).input_shape == (16,)
    x, y = timers.synthetic_tensors(timers.dataset_spec("SST2", (16,)), 5, vocab_size=100)
    assert x.dtype == torch.long and x.shape == (5, 16) and int(x.max()) < 100 and int(y.max()) < 2


def test_environment_and_provenance_sidecar(tmp_path):
    torch.set_num_threads(1)
    env = capture_environment("cpu", command="chronos measure --model x", note="test")
    assert env.threads == 1 and env.device_spec["kind"] == "cpu"
    assert env.torch_version == torch.__version__ and env.date_utc.endswith("+00:00")
    assert re.fullmatch(r"cpu-[a-z0-9-]+", device_slug("cpu"))
    path = write_provenance(tmp_path / "models.csv", env, rows=3)
    record = json.loads(path.read_text())
    assert path.name == "models.json" and record["command"] == "chronos measure --model x"
    assert record["rows"] == 3 and record["extra"] == {"note": "test"} and record["cpu_model"]


def test_cli_measure_prints_a_summary_and_bad_device_is_one_line(capsys):
    from chronos_core.cli import main

    args = ["measure", "--model", "SimpleCNN", "--dataset", "digits", "--batch-size", "4", "--repeats", "3"]
    args += ["--iters", "1", "--warmup", "0", "--threads", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SimpleCNN on Digits (1, 8, 8), batch 4" in out and "compute_ms" in out and "over 3 repeats" in out
    if not torch.cuda.is_available():
        assert main([*args, "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "not present" in err
    assert main([*args[:-2], "--precision", "fp8"]) == 2
    assert "Unknown precision 'fp8'" in capsys.readouterr().err


def test_text_model_with_its_own_vocabulary_gets_token_ids_it_can_embed():
    cfg = TimingConfig(
        "DistilBERT",
        "SST2",
        2,
        input_shape=(8,),
        model_kwargs={"vocab_size": 50, "depth": 1},
        repeats=1,
        iters=1,
    )
    assert time_training(cfg, capture_env=False).summary()["compute_ms"] > 0  # ids >= 50 would raise
