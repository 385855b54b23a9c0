"""Sweeps: files, expansion, resumable CSV, failures as rows, bad input, Ray fan-out."""

from __future__ import annotations

import csv
import json

import pytest

from chronos_core.cli import main as profiling_main
from chronos_core.errors import ChronosError
from chronos_core.profiling.sweep import (
    CsvSink,
    config_id,
    expand,
    load_sweep,
    read_sweep,
    run_sweep,
    sweep_from_dict,
)

TINY = {"model_kwargs": {"depth": 1, "base_filters": 2}, "dataset": "Digits", "repeats": 2, "warmup": 0}
TINY |= {"iters": 1, "threads": 1, "device": "cpu"}


def tiny_spec(**grid) -> dict:
    return {"kind": "model", "fixed": dict(TINY), "grid": {"model": ["SimpleCNN"], **grid}}


YAML = """
kind: model
fixed: {dataset: Digits, repeats: 2, warmup: 0, iters: 1, threads: 1,
        model_kwargs: {depth: 1, base_filters: 2}}
grid:
  - model: [SimpleCNN]
    batch_size: [2, 4]
    precision: ["32", bf16]
  - model: [SimpleCNN]
    batch_size: [4]
    precision: ["32"]
    optimizer: [Adam]
"""

TOML = """
kind = "layer"
samples = 3
seed = 1
[fixed]
repeats = 2
[grid]
layer_type = ["linear", "gru"]
precision = ["32", "bf16"]
"""


def rows_of(path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_yaml_grid_union_and_toml_layer_sweep(tmp_path):
    (tmp_path / "s.yaml").write_text(YAML)
    spec = load_sweep(tmp_path / "s.yaml")
    configs = expand(spec)
    assert spec.name == "s" and len(configs) == 5  # 2 x 2 from the first grid, 1 from the second
    assert {c["optimizer"] for c in configs if "optimizer" in c} == {"Adam"}
    assert len({config_id(c) for c in configs}) == 5
    (tmp_path / "l.toml").write_text(TOML)
    layers = expand(load_sweep(tmp_path / "l.toml"))
    assert len(layers) == 2 * 2 * 3
    # the same random layer configurations are timed at every precision
    fp32 = [c["layer"] for c in layers if c["precision"] == "32"]
    bf16 = [c["layer"] for c in layers if c["precision"] == "bf16"]
    assert fp32 == bf16


def test_random_mode_draws_a_reproducible_subset():
    spec = sweep_from_dict(
        {**tiny_spec(batch_size=[1, 2, 3, 4, 5, 6]), "mode": "random", "samples": 3, "seed": 7}
    )
    first, second = expand(spec), expand(spec)
    assert len(first) == 3 and first == second


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: model\ngrid: [model: [a\n", "is malformed"),
        ("kind: model\ngrid: {model: [SimpleCNN]}\nrepeat: 3\n", "Unknown sweep key(s) 'repeat'"),
        ("kind: model\ngrid: {model: SimpleCNN}\n", "grid entry 'model' must be a non-empty list"),
        ("kind: model\ngrid: {modle: [SimpleCNN]}\n", "Unknown model sweep setting(s) 'modle'"),
        ("kind: timing\ngrid: {model: [SimpleCNN]}\n", "Unknown sweep kind 'timing'"),
        ("kind: layer\ngrid: {layer_type: [linear]}\n", "needs 'samples'"),
        ("- just a list\n", "must be a mapping"),
    ],
)
def test_malformed_sweep_files_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ChronosError) as info:
        load_sweep(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_sweep_writes_rows_resumes_and_skips_finished(tmp_path):
    out = tmp_path / "models.csv"
    spec = sweep_from_dict(tiny_spec(batch_size=[2, 4], precision=["32", "bf16"]), source="tiny")
    with pytest.raises(KeyboardInterrupt):

        def stop_after_first(row):
            raise KeyboardInterrupt

        run_sweep(spec, out, progress=False, on_row=stop_after_first)
    rows = rows_of(out)
    assert len(rows) == 1 and rows[0]["status"] == "ok"  # the interrupted sweep left a valid CSV
    report = run_sweep(spec, out, progress=False)
    assert (report.total, report.skipped, report.ran, report.failed) == (4, 1, 3, 0)
    again = run_sweep(spec, out, progress=False)
    assert again.ran == 0 and again.skipped == 4
    frame = read_sweep(out)
    assert len(frame) == 4 and frame["config_id"].is_unique
    assert set(frame["precision"]) == {32, 16} and (frame["compute_ms"] > 0).all()
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert len(sidecar["sessions"]) == 3 and sidecar["sweep"]["kind"] == "model"
    assert sidecar["threads"] == 1 and sidecar["git_revision"] and sidecar["cpu_model"]


def test_failures_are_recorded_as_rows_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "models.csv"
    spec = sweep_from_dict(tiny_spec(batch_size=[2, 50_000_000]))
    report = run_sweep(spec, out, progress=False)
    assert report.ran == 2 and report.failed == 1
    rows = {r["batch_size"]: r for r in rows_of(out)}
    assert rows["2"]["status"] == "ok" and rows["2"]["error"] == ""
    assert rows["50000000"]["status"] == "error" and rows["50000000"]["error_kind"] == "oom"
    assert "does not fit in memory" in rows["50000000"]["error"]
    assert run_sweep(spec, out, progress=False).ran == 0  # failures count as finished ...
    assert run_sweep(spec, out, progress=False, retry_failed=True).ran == 1  # ... unless retried
    assert len(read_sweep(out, ok_only=False)) == 2  # the retry's row supersedes the old one


def test_bad_names_fail_before_the_csv_is_touched(tmp_path):
    out = tmp_path / "models.csv"
    run_sweep(sweep_from_dict(tiny_spec(batch_size=[2])), out, progress=False)
    before = out.read_bytes()
    for grid, message in [
        ({"model": ["NoSuchNet"]}, "Unknown model 'NoSuchNet'"),
        ({"precision": ["fp8"]}, "Unknown precision 'fp8'"),
        ({"device": ["cuda:7"]}, "cuda:7"),
        ({"optimizer": ["Lion"]}, "Unknown optimizer 'Lion'"),
    ]:
        spec = sweep_from_dict(
            {"kind": "model", "fixed": dict(TINY), "grid": {"model": ["SimpleCNN"], **grid}}
        )
        with pytest.raises(ChronosError, match=message):
            run_sweep(spec, out, progress=False)
        assert out.read_bytes() == before


def test_a_csv_that_is_not_a_sweep_table_is_refused_and_kept(tmp_path):
    out = tmp_path / "precious.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(ChronosError, match="not a sweep table"):
        run_sweep(sweep_from_dict(tiny_spec(batch_size=[2])), out, progress=False)
    assert out.read_text() == "a,b\n1,2\n"


def test_csv_sink_widens_the_header_when_new_columns_appear(tmp_path):
    sink = CsvSink(tmp_path / "t.csv")
    sink.write({"config_id": "a", "status": "error", "error": "boom"})
    sink.write({"config_id": "b", "status": "ok", "compute_ms": 1.5, "shape": (1, 2)})
    rows = rows_of(tmp_path / "t.csv")
    assert list(rows[0]) == ["config_id", "status", "error", "compute_ms", "shape"]
    assert rows[0]["compute_ms"] == "" and rows[1]["compute_ms"] == "1.5" and rows[1]["shape"] == "[1, 2]"
    assert CsvSink(tmp_path / "t.csv").finished() == {"a", "b"}
    assert CsvSink(tmp_path / "t.csv").finished(include_errors=False) == {"b"}


def test_cli_sweep_and_bad_file(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text(YAML)
    out = tmp_path / "o.csv"
    assert (
        profiling_main(["sweep", str(tmp_path / "s.yaml"), "--output", str(out), "--quiet", "--limit", "2"])
        == 0
    )
    assert "2 run (0 failed), 0 already done, 5 in the sweep" in capsys.readouterr().out
    assert profiling_main(["sweep", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
