"""`chronos calibrate` and device profiles: real kernel timings, the kernel schema, safe storage."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from chronos_core.cli import main
from chronos_core.data import device_profiles as dp
from chronos_core.errors import ChronosError
from chronos_core.profiling import calibrate as cal
from chronos_core.profiling.calibrate import (
    Kernel,
    calibrate,
    contention_note,
    default_kernels,
    summary_table,
)

TINY = [
    Kernel("linear", "fp32", 1, 8, 8, 8),
    Kernel("linear", "fp32", 1, 384, 384, 384),
    Kernel("bmm", "fp32", 2, 16, 16, 16),
    Kernel("add", "fp32", 1, H=1),
    Kernel("addu", "fp32", 64, H=64),
    Kernel("gelu", "fp32", 64, H=64),
    Kernel("relu", "fp32", 64, H=64),
    Kernel("ln", "fp32", 8, H=32),
    Kernel("softmax", "fp32", 8, H=32),
    Kernel("conv", "fp32", 2, 4, 8, 3, 8),
]
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")


@pytest.fixture(scope="module")
def measured() -> pd.DataFrame:
    return calibrate("cpu", repeats=3, threads=1, progress=False, kernels=TINY)


@pytest.fixture
def profile_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(dp.PROFILE_DIR_ENV, str(tmp_path))
    return tmp_path


def test_calibrate_rows_follow_the_kernel_schema(measured):
    assert tuple(measured.columns) == dp.KERNEL_COLUMNS
    assert len(measured) == len(TINY)
    assert all(math.isfinite(v) and v > 0 for v in measured["latency_ms"])
    assert (measured["latency_ms_std"] >= 0).all() and (measured["repeats"] == 3).all()
    gemm = measured[measured["family"] == "gemm"]
    assert set(gemm["op"]) == {"linear", "bmm"} and gemm["H"].isna().all() and gemm["K"].notna().all()
    rest = measured[~measured["family"].isin(["gemm", "conv"])]
    assert rest[["M", "N", "K"]].isna().all().all() and rest["H"].notna().all()
    assert set(rest["family"]) == {"elementwise", "ln", "softmax"}
    conv_cols = ["in_channels", "out_channels", "kernel_size", "input_size", "stride", "padding"]
    assert measured.loc[measured["family"] != "conv", conv_cols].isna().all().all()
    conv = measured[measured["family"] == "conv"]  # NeuSight's conv columns, the GEMM ones empty
    assert conv[conv_cols].values.tolist() == [[4, 8, 3, 8, 1, 1]]
    assert conv[["M", "N", "K", "H"]].isna().all().all()
    assert set(measured["source"]) == {"chronos-calibrate"} and set(measured["split"]) == {"calibration"}
    from chronos_core.catalog.devices import local_cpu

    assert set(measured["device"]) == {local_cpu().name} and measured["device_name"].str.len().min() > 0


def test_larger_gemm_takes_longer(measured):
    linear = measured[measured["op"] == "linear"].set_index("M")["latency_ms"]
    assert linear[384] > 5 * linear[8]


def test_calibrate_records_provenance_and_restores_threads(measured):
    prov = measured.attrs["provenance"]
    assert prov["threads"] == 1 and prov["device"] == "cpu" and prov["git_revision"]
    assert prov["calibration"]["kernels"] == len(TINY)
    before = torch.get_num_threads()
    calibrate("cpu", repeats=1, threads=before + 1, progress=False, kernels=TINY[3:4])
    assert torch.get_num_threads() == before


def test_summary_table_gives_throughput(measured):
    table = summary_table(measured)
    assert list(table.columns) == ["op", "dtype", "shape", "latency_ms", "achieved"]
    assert table["achieved"].iloc[1].endswith("GFLOP/s") and table["achieved"].iloc[3].endswith("GB/s")
    assert table["shape"].iloc[1] == "1x384x384x384" and table["shape"].iloc[3] == "1x1"


def test_contention_note_only_when_the_cpu_was_busy(measured):
    frame = measured.copy()
    frame.attrs = copy.deepcopy(measured.attrs)
    info = frame.attrs["provenance"]["calibration"]
    info.update(cpu_busy_before=0.9, load_average_1m_before=0.2, cpu_count=2)
    assert "90% of the 2 CPUs were busy" in contention_note(frame)
    info.update(cpu_busy_before=0.05, load_average_1m_before=3.5)  # the load average lags: trust the sample
    assert contention_note(frame) is None
    info.update(cpu_busy_before=None)  # no /proc/stat: fall back on the load average
    assert "load average 3.5 on 2 CPUs" in contention_note(frame)
    info.update(load_average_1m_before=0.2)
    assert contention_note(frame) is None


def test_default_kernel_sets():
    cpu, quick = default_kernels("cpu"), default_kernels("cpu", quick=True)
    assert 24 <= len(cpu) <= 60 and len(quick) < len(cpu) / 2
    assert {k.op for k in cpu} == set(cal.FAMILIES) and {k.dtype for k in cpu} == {"fp32", "bf16"}
    assert max(k.M for k in cpu if k.family == "gemm") <= 4096
    assert any(k.op == "add" and k.B == 1 and k.H <= 32 for k in cpu)  # launch floor
    gpu = default_kernels("cuda:0")
    assert {"fp32", "tf32", "fp16", "bf16"} <= {k.dtype for k in gpu if k.family == "gemm"}
    assert max(max(k.M, k.N, k.K) for k in gpu if k.family == "gemm") == 8192
    # what notebook 08 simulates: 16 kernels per op group and dtype (bmm and linear apart)
    for dtype in ("fp32", "tf32", "fp16", "bf16"):
        assert sum(k.op == "linear" and k.dtype == dtype for k in gpu) == 16
        assert sum(k.op == "bmm" and k.dtype == dtype for k in gpu) == 16
    for family in ("ln", "softmax", "elementwise"):
        assert sum(k.family == family and k.dtype == "fp32" for k in gpu) >= 16
    assert len(default_kernels("cuda", quick=True)) < len(gpu) / 3
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"time {len(cpu)} kernels (CPU) or {len(gpu)} (GPU)" in readme


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"threads": 0}, "threads must be a positive integer, got 0"),
        ({"threads": True}, "got True"),
        ({"repeats": -2}, "repeats must be a positive integer, got -2"),
        ({"device": "tpu"}, "Unknown calibration device 'tpu'"),
        ({"kernels": [Kernel("linear", "tf32", 1, 8, 8, 8)]}, "tf32"),
        ({"kernels": [Kernel("matmul", "fp32", 1, H=8)]}, "Unknown kernel op 'matmul'"),
        ({"kernels": [Kernel("conv", "fp32", 1, 3, 8, 3)]}, "positive integer sizes"),
        ({"kernels": [Kernel("ln", "fp32", 8)]}, "positive integer sizes"),
    ],
)
def test_calibrate_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ChronosError, match=match):
        calibrate(progress=False, **kwargs)


@no_cuda
def test_calibrate_on_cuda_without_a_gpu_says_so():
    with pytest.raises(ChronosError, match="no CUDA device.*use --device cpu"):
        calibrate("cuda", progress=False)


def test_profile_path_slugs(profile_dir):
    assert dp.profile_path("H100-SXM") == profile_dir / "h100-sxm" / "device_profile.csv"
    assert dp.profile_path("NVIDIA H100 80GB HBM3").parent.name == "h100-sxm"
    assert dp.profile_path("cpu-intel-xeon").parent.name == "cpu-intel-xeon"
    assert dp.profile_path("Some GPU (rev 2)").parent.name == "some-gpu-rev-2"
    with pytest.raises(ChronosError, match="no letters or digits"):
        dp.profile_path("--")


def test_write_load_roundtrip(measured, profile_dir):
    assert dp.load_profile("cpu-test-box") is None and dp.available_profiles() == []
    path = dp.write_profile(measured, "cpu-test-box", {"command": "chronos calibrate", "torch": "x"})
    assert path == profile_dir / "cpu-test-box" / "device_profile.csv"
    loaded = dp.load_profile("cpu-test-box")
    pd.testing.assert_frame_equal(loaded, measured, check_dtype=False)
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["device_key"] == "cpu-test-box" and sidecar["rows"] == len(measured)
    assert sidecar["command"] == "chronos calibrate"
    assert dp.available_profiles() == ["cpu-test-box"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["device_profile.csv", "device_profile.json"]


def test_failed_write_keeps_the_previous_profile(measured, profile_dir, monkeypatch):
    path = dp.write_profile(measured, "cpu-test-box", {"run": 1})
    before, sidecar = path.read_bytes(), path.with_suffix(".json").read_text()

    def torn_to_csv(self, target, *args, **kwargs):
        with open(target, "w") as handle:
            handle.write("op,family,B\nlinear,gemm,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", torn_to_csv)
    with pytest.raises(ChronosError, match="No space left"):
        dp.write_profile(measured.head(2), "cpu-test-box", {"run": 2})
    assert path.read_bytes() == before and path.with_suffix(".json").read_text() == sidecar
    assert sorted(p.name for p in path.parent.iterdir()) == ["device_profile.csv", "device_profile.json"]
    assert len(dp.load_profile("cpu-test-box")) == len(measured)


def test_write_refuses_a_frame_outside_the_schema(measured, profile_dir):
    with pytest.raises(ChronosError, match="missing latency_ms"):
        dp.write_profile(measured.drop(columns="latency_ms"), "cpu-x", {})
    with pytest.raises(ChronosError, match="unexpected extra"):
        dp.write_profile(measured.assign(extra=1), "cpu-x", {})


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda f: f.drop(columns="H"), "missing H"),
        (lambda f: f.assign(latency_ms=-1.0), "positive and finite"),
        (lambda f: f.assign(B="many"), "non-numeric values in 'B'"),
        (lambda f: f.iloc[0:0], "positive and finite"),
    ],
)
def test_malformed_profile_is_an_error(measured, profile_dir, mutate, match):
    path = dp.profile_path("cpu-bad")
    path.parent.mkdir(parents=True)
    mutate(measured).to_csv(path, index=False)
    with pytest.raises(ChronosError, match=match):
        dp.load_profile("cpu-bad")


def test_garbage_profile_is_an_error(profile_dir):
    path = dp.profile_path("cpu-bad")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    with pytest.raises(ChronosError, match="malformed"):
        dp.load_profile("cpu-bad")
    path.write_bytes(b'op,family\n"unterminated,x\n')
    with pytest.raises(ChronosError):
        dp.load_profile("cpu-bad")


def test_device_profiles_imports_neither_torch_nor_profiling():
    code = (
        "import sys, chronos_core.data.device_profiles as d; d.load_profile('cpu'); d.available_profiles();"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('chronos_core.profiling')];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_cli_calibrate_writes_the_profile(profile_dir, monkeypatch, capsys):
    monkeypatch.setattr(cal, "default_kernels", lambda device, quick=False: TINY[:4])
    assert main(["calibrate", "--quick", "--repeats", "2", "--threads", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    path = dp.profile_path("cpu")
    assert out[-1].startswith("calibrated cpu-") and " 4 kernels in " in out[-1]
    assert out[-1].endswith(f"-> {path}") and "GFLOP/s" in "\n".join(out)
    loaded = dp.load_profile("cpu")
    assert len(loaded) == 4 and (loaded["repeats"] == 2).all()
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert sidecar["command"].startswith("chronos") and sidecar["threads"] == 1


def test_cli_calibrate_output_option(profile_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cal, "default_kernels", lambda device, quick=False: TINY[3:4])
    target = tmp_path / "elsewhere" / "mine.csv"
    assert main(["calibrate", "--output", str(target), "--repeats", "1"]) == 0
    assert target.is_file() and target.with_suffix(".json").is_file()
    assert capsys.readouterr().out.strip().endswith(f"-> {target}")


@no_cuda
def test_cli_calibrate_cuda_without_gpu_is_one_line(capsys):
    assert main(["calibrate", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no CUDA device" in err and "use --device cpu" in err


@pytest.mark.parametrize("flag", ["--threads", "--repeats"])
def test_cli_calibrate_rejects_non_positive_counts(flag, capsys):
    assert main(["calibrate", flag, "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{flag[2:]} must be a positive integer, got 0" in err


def test_profile_rows_fit_the_public_kernel_tables(measured):
    from chronos_core.data import kernels

    assert set(kernels.KERNEL_COLUMNS) <= set(dp.KERNEL_COLUMNS)
    assert all(kernels.op_family(op) == family for op, family in cal.FAMILIES.items())
    conformed = kernels.conform_kernels(measured)
    assert list(conformed.columns) == list(kernels.KERNEL_COLUMNS) and len(conformed) == len(measured)
