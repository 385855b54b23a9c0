"""Answers already given: served from disk for the same request and code, recomputed otherwise."""

from __future__ import annotations

import json

import pytest

from chronos_core import prediction_cache as pc


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CHRONOS_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CHRONOS_PREDICTION_CACHE", "1")
    return tmp_path / "predictions"


def test_second_request_is_read_not_computed(cache):
    calls = []

    def compute():
        calls.append(1)
        return {"epoch_s": 1.5, "nan": float("nan")}

    first = pc.cached("predict", {"model": "vgg16", "gpu": "T4"}, compute)
    second = pc.cached("predict", {"gpu": "T4", "model": "vgg16"}, compute)
    assert len(calls) == 1 and first["epoch_s"] == second["epoch_s"] == 1.5
    assert len(list(cache.glob("*.json"))) == 1
    pc.cached("predict", {"model": "vgg16", "gpu": "A100"}, compute)
    pc.cached("predict", {"model": "vgg16", "gpu": "T4"}, compute, use=False)
    assert len(calls) == 3


def test_new_code_version_or_torn_entry_recomputes(cache, monkeypatch):
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    request = {"model": "resnet50"}
    pc.cached("predict", request, compute)
    (entry,) = cache.glob("*.json")
    entry.write_text('{"answer": ', encoding="utf-8")  # a torn write
    assert pc.cached("predict", request, compute) == {"value": 2}
    assert json.loads(entry.read_text(encoding="utf-8"))["answer"] == {"value": 2}
    monkeypatch.setattr(pc, "code_version", lambda: "another-version")
    assert pc.cached("predict", request, compute) == {"value": 3}


def test_switched_off_by_the_environment(cache, monkeypatch):
    monkeypatch.setenv("CHRONOS_PREDICTION_CACHE", "0")
    calls = []
    for _ in range(2):
        pc.cached("predict", {"a": 1}, lambda: calls.append(1) or {"ok": True})
    assert len(calls) == 2


def test_code_version_reads_the_package_and_the_environment(monkeypatch):
    pc.code_version.cache_clear()
    before = pc.code_version()
    monkeypatch.setenv("CHRONOS_DATA_MIRROR", "/somewhere/else")
    pc.code_version.cache_clear()
    assert pc.code_version() != before and len(before) == 16
    pc.code_version.cache_clear()


def test_cli_predict_answers_again_without_the_predictor(cache, monkeypatch, capsys):
    from chronos_core import api_cli
    from chronos_core.cli import main

    made = []

    class Fake:
        def summary(self):
            made.append(1)
            e = {"value": 10.0, "lo": 8.0, "hi": 12.0}
            t = {**e, "cost_usd": 1.0, "cost_usd_lo": 0.5, "cost_usd_hi": 2.0}
            return {"model": "VGG16", "dataset": "CIFAR100", "gpu": "T4", "batch_size": 32, "precision": 16,
                    "optimizer": "SGD", "learning_rate": 0.001, "steps_per_epoch": 1563,
                    "time_source": "predicted", "epoch_time_s": e, "epochs": e, "total_time_s": t,
                    "price_per_hr_usd": 0.28}  # fmt: skip

    monkeypatch.setattr(api_cli, "_predictor", lambda args, gpu: Fake())
    argv = ["predict", "--model", "vgg16", "--dataset", "cifar100", "--gpu", "T4", "--json"]
    assert main(argv) == 0 and main(argv) == 0
    out = capsys.readouterr().out
    assert len(made) == 1 and out.count('"epoch_time_s"') == 2
    assert main([*argv, "--no-cache"]) == 0 and len(made) == 2
    assert main(["predict", "--model", "vgg16", "--dataset", "cifar100", "--gpu", "cpu", "--json"]) == 0
    assert main(["predict", "--model", "vgg16", "--dataset", "cifar100", "--gpu", "cpu", "--json"]) == 0
    assert len(made) == 4  # measured here: never cached


def test_a_cached_answer_imports_neither_torch_nor_xgboost(cache, tmp_path):
    import os
    import subprocess
    import sys

    script = """
import sys
from chronos_core import api_cli
from chronos_core.cli import main

class Fake:
    def summary(self):
        e = {"value": 10.0, "lo": 8.0, "hi": 12.0}
        t = {**e, "cost_usd": 1.0, "cost_usd_lo": 0.5, "cost_usd_hi": 2.0}
        return {"model": "VGG16", "dataset": "CIFAR100", "gpu": "T4", "batch_size": 32,
                "precision": 16, "optimizer": "SGD", "learning_rate": 0.001, "steps_per_epoch": 1563,
                "time_source": "predicted", "epoch_time_s": e, "epochs": e, "total_time_s": t,
                "price_per_hr_usd": 0.28}

argv = ["predict", "--model", "vgg16", "--dataset", "cifar100", "--gpu", "T4"]
if sys.argv[1] == "fill":
    api_cli._predictor = lambda args, gpu: Fake()
main(argv)
print("IMPORTED", sorted(m for m in ("torch", "xgboost", "sklearn") if m in sys.modules))
"""
    env = {**os.environ, "CHRONOS_CACHE_DIR": str(tmp_path), "CHRONOS_PREDICTION_CACHE": "1"}
    for stage in ("fill", "read"):
        done = subprocess.run([sys.executable, "-c", script, stage], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert "epoch time" in done.stdout and "IMPORTED []" in done.stdout


def test_a_config_file_is_keyed_by_its_content(tmp_path):
    config = tmp_path / "model" / "config.json"
    config.parent.mkdir()
    config.write_text('{"model_type": "gpt2", "n_layer": 2}', encoding="utf-8")
    first = pc.file_digest(str(config.parent))
    assert first and first == pc.file_digest(str(config))
    config.write_text('{"model_type": "gpt2", "n_layer": 4}', encoding="utf-8")
    assert pc.file_digest(str(config)) not in ("", first)
    assert pc.file_digest("hf-gpt2-that-is-not-a-file") == ""


def test_code_version_follows_library_versions(monkeypatch):
    pc.code_version.cache_clear()
    before = pc.code_version()
    real = pc.metadata.version
    monkeypatch.setattr(pc.metadata, "version", lambda name: "0.0" if name == "xgboost" else real(name))
    pc.code_version.cache_clear()
    assert pc.code_version() != before
    pc.code_version.cache_clear()
