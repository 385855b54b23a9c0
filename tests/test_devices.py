"""Hardware catalog: datasheet table, forgiving names, precision peaks, CPU detection, custom devices."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from chronos_core.catalog import devices
from chronos_core.catalog.devices import (
    COLUMNS,
    Devices,
    DeviceSpec,
    custom_device,
    detect_cpu,
    device_for_row,
    device_from_row,
    device_table,
    flops_per_cycle,
    format_device_table,
    local_cpu,
)
from chronos_core.errors import ChronosError

CSV_PATH = Path(devices.__file__).parent / "gpus.csv"


def _gpus() -> list[DeviceSpec]:
    """The catalog's own GPUs (not devices other tests registered as custom specs)."""
    names = {row["name"] for row in csv.DictReader(CSV_PATH.open(encoding="utf-8"))}
    return [spec for spec in Devices if spec.kind == "gpu" and spec.name in names]


def test_table_has_many_gpus_each_with_one_source_url():
    rows = list(csv.DictReader(CSV_PATH.open(encoding="utf-8")))
    assert len(rows) >= 16
    assert list(rows[0]) == list(COLUMNS)
    names = [row["name"] for row in rows]
    assert len(set(names)) == len(names)
    for row in rows:
        assert row["source"].startswith("https://") and " " not in row["source"], row["name"]
        if row["price_per_hr_usd"]:
            assert row["price_source"], row["name"]


def test_required_gpus_are_present():
    required = [
        "P4", "P100-PCIe-16GB", "V100-PCIe-16GB", "V100-SXM2-16GB", "V100-SXM2-32GB", "T4", "A10G", "A10",
        "A40", "A100-PCIe-40GB", "A100-SXM4-40GB", "A100-PCIe-80GB", "A100-SXM4-80GB", "L4", "L40S",
        "H100-PCIe", "H100-SXM", "H200-SXM", "RTX3090", "RTX4090", "RTX5090", "RTXA4000",
    ]  # fmt: skip
    assert set(required) <= set(Devices.names())


ARCHITECTURES = {
    "Kepler",
    "Pascal",
    "Volta",
    "Turing",
    "Ampere",
    "Ada",
    "Hopper",
    "Blackwell",
    "CDNA",
    "CDNA2",
    "CDNA3",
}


def _known(value: float) -> bool:
    return value > 0 and math.isfinite(value)


def test_values_are_physically_consistent():
    for spec in _gpus():
        assert spec.architecture in ARCHITECTURES
        assert spec.memory_gb > 0 and spec.memory_bandwidth_gbs > 0 and spec.memory_bus_bits > 0, spec.name
        assert spec.peak_fp32_tflops > 0, spec.name
        for value in (spec.l2_cache_mb, spec.tdp_w, spec.boost_clock_mhz):
            assert math.isnan(value) or value > 0, spec.name  # blank (unpublished) or positive
        if spec.cuda_cores and _known(spec.boost_clock_mhz):
            # FP32 peak = cores x 2 x boost clock, within datasheet rounding (CDNA3 quotes packed FP32: x2)
            packed = 2 if spec.architecture == "CDNA3" else 1
            derived = spec.cuda_cores * 2 * spec.boost_clock_mhz / 1e6 * packed
            assert spec.peak_fp32_tflops == pytest.approx(derived, rel=0.05), spec.name
        if spec.tensor_cores == 0 and spec.sm_count > 0:
            assert spec.peak_fp16_tensor_tflops == 0, spec.name
        if spec.peak_fp16_tensor_tflops > 0:
            assert spec.peak_fp16_tensor_tflops > spec.peak_fp32_tflops, spec.name
        assert spec.peak_tf32_tensor_tflops <= spec.peak_bf16_tensor_tflops <= spec.peak_fp16_tensor_tflops


def test_spot_checked_datasheet_values():
    t4, a40, h100 = Devices.T4, Devices.A40, Devices.H100_SXM
    assert (t4.sm_count, t4.boost_clock_mhz, t4.peak_fp32_tflops) == (40, 1590, 8.1)
    assert (t4.peak_fp16_tensor_tflops, t4.memory_bandwidth_gbs, t4.l2_cache_mb) == (65, 320, 4)
    assert (a40.sm_count, a40.boost_clock_mhz, a40.peak_fp32_tflops) == (84, 1740, 37.4)
    assert (a40.peak_fp16_tensor_tflops, a40.memory_bandwidth_gbs) == (149.7, 696)
    assert (h100.sm_count, h100.boost_clock_mhz, h100.peak_fp32_tflops) == (132, 1980, 66.9)
    assert (h100.peak_fp16_tensor_tflops, h100.peak_tf32_tensor_tflops) == (989.4, 494.7)
    assert (h100.memory_bandwidth_gbs, h100.l2_cache_mb) == (3352, 50)
    assert "half" in Devices.RTX4090.notes  # GeForce FP32-accumulate tensor rate is documented


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Tesla T4", "T4"),
        ("T4", "T4"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H100 80GB HBM3", "H100-SXM"),
        ("H100", "H100-SXM"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4-80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),
        ("NVIDIA A100 80GB PCIe", "A100-PCIe-80GB"),
        ("NVIDIA A100-PCIE-40GB", "A100-PCIe-40GB"),
        ("A100", "A100-SXM4-80GB"),
        ("NVIDIA GeForce RTX 4090", "RTX4090"),
        ("RTX 4090", "RTX4090"),
        ("RTX4090", "RTX4090"),
        ("NVIDIA GeForce RTX 3090", "RTX3090"),
        ("NVIDIA GeForce RTX 5090", "RTX5090"),
        ("Tesla V100-SXM2-16GB", "V100-SXM2-16GB"),
        ("Tesla V100-SXM2-32GB", "V100-SXM2-32GB"),
        ("Tesla V100-PCIE-16GB", "V100-PCIe-16GB"),
        ("V100", "V100-SXM2-16GB"),
        ("H200", "H200-SXM"),
        ("NVIDIA H200", "H200-SXM"),
        ("RTXA4000", "RTXA4000"),
        ("NVIDIA RTX A4000", "RTXA4000"),
        ("Tesla P4", "P4"),
        ("Tesla P100-PCIE-16GB", "P100-PCIe-16GB"),
        ("P100", "P100-PCIe-16GB"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A40", "A40"),
        ("NVIDIA L40S", "L40S"),
    ],
)
def test_common_spellings_resolve(spelling, canonical):
    assert Devices.resolve(spelling) == canonical
    assert Devices.get(spelling).name == canonical
    assert spelling in Devices


def test_attribute_access():
    assert Devices.T4.name == "T4"
    assert Devices.A100_PCIe_80GB.name == "A100-PCIe-80GB"
    assert Devices.H100_SXM.name == "H100-SXM"
    assert Devices.H100_PCIe.name == "H100-PCIe"
    assert Devices["Tesla T4"] is Devices.T4
    assert "A100_SXM4_80GB" in dir(Devices)


def test_unknown_name_names_the_value_and_lists_known_ones():
    with pytest.raises(ChronosError) as err:
        Devices.get("A1000")
    message = str(err.value)
    assert message.startswith("Unknown gpu 'A1000'.") and "\n" not in message
    assert "Did you mean A100-SXM4-80GB" in message  # close matches first, then every accepted name
    assert "Known: A10, " in message and "T4" in message and "H100-SXM" in message and "MI300X" in message
    assert "A1000" not in Devices
    assert not hasattr(Devices, "__nonexistent__")  # dunder probes (copy, pickle) stay AttributeError


def test_peak_tflops_per_precision():
    a100 = Devices.A100_SXM4_80GB
    for spelling in (32, "fp32", "float32", "FP32"):
        assert a100.peak_tflops(spelling) == 19.5
    for spelling in (16, "fp16", "amp", "float16", "torch.float16"):
        assert a100.peak_tflops(spelling) == 312
    assert a100.peak_tflops("bf16") == a100.peak_tflops("bfloat16") == 312
    assert a100.peak_tflops("tf32") == 156
    # no BF16/TF32 tensor cores: fall back to FP32; FP16 still uses the tensor peak
    v100 = Devices.V100
    assert v100.peak_tflops("bf16") == v100.peak_tflops("tf32") == v100.peak_tflops(32) == 15.7
    assert v100.peak_tflops(16) == 125
    # no tensor cores: FP16 vector rate when faster than FP32 (P100), FP32 when FP16 is crippled (P4)
    assert Devices.P100.peak_tflops("fp16") == 19.05
    assert Devices.P4.peak_tflops("fp16") == Devices.P4.peak_fp32_tflops
    with pytest.raises(ChronosError, match="Unknown precision 'int8'.*fp32.*bf16.*tf32"):
        a100.peak_tflops("int8")


def test_ridge_point():
    h100 = Devices.H100_SXM
    assert h100.ridge_point_flops_per_byte(16) == pytest.approx(989.4e12 / 3352e9)
    assert h100.ridge_point_flops_per_byte("fp32") == pytest.approx(66.9e12 / 3352e9)
    assert math.isnan(DeviceSpec("x", peak_fp32_tflops=1.0).ridge_point_flops_per_byte())


def test_tensor_peak_ordering_across_generations():
    fp16 = {name: Devices.get(name).peak_tflops(16) for name in ("H100-SXM", "A100", "V100", "T4")}
    assert fp16["H100-SXM"] > fp16["A100"] > fp16["V100"] > fp16["T4"]
    assert Devices.H200.peak_tflops(16) == Devices.H100_SXM.peak_tflops(16)
    assert Devices.H200.memory_bandwidth_gbs > Devices.H100_SXM.memory_bandwidth_gbs


def _public_gpu_rows(mirror: Path) -> dict[str, dict[str, str]]:
    """gpu name -> first row of spec columns, from the CHRONOS time tables and PreNeT's GPUs.csv."""
    rows: dict[str, dict[str, str]] = {}
    for table in sorted((mirror / "chronos" / "epoch_time_prediction" / "data").glob("*.csv")):
        for row in csv.DictReader(table.open(encoding="utf-8")):
            rows.setdefault(row["gpu_name"], row)
    prenet = mirror / "prenet" / "gpus" / "GPUs.csv"
    if prenet.exists():
        for row in csv.DictReader(prenet.open(encoding="utf-8")):
            rows.setdefault(row["GPU"], row)
    return rows


def test_every_public_gpu_name_resolves_with_matching_bandwidth(mirror):
    rows = _public_gpu_rows(mirror)
    if not rows:
        pytest.skip("no CHRONOS/PreNeT GPU tables in the mirror")
    assert {"Tesla T4", "NVIDIA A40", "RTXA4000"} <= set(rows)
    for name, row in rows.items():
        assert name in Devices, name
        spec = Devices.get(name)
        theirs = float(row["GPU Memory Bandwidth (GB/s)"])
        assert spec.memory_bandwidth_gbs == pytest.approx(theirs, rel=0.10), name
        assert spec.memory_gb == pytest.approx(float(row["Memory (GB)"]), rel=0.10), name


def test_local_cpu_is_detected_and_registered_lazily():
    cpu = local_cpu()
    assert cpu.kind == "cpu" and cpu.name.startswith("cpu-")
    assert cpu.physical_cores > 0 and cpu.logical_cores >= cpu.physical_cores
    assert cpu.peak_fp32_tflops > 0 and cpu.boost_clock_mhz > 0
    assert cpu.source == "detected on this machine" and "estimate" in cpu.notes
    assert math.isnan(cpu.memory_bandwidth_gbs)  # not faked
    assert Devices.get("cpu") is cpu and Devices.get(cpu.name) is cpu and local_cpu() is cpu
    assert cpu.peak_tflops(16) > 0
    assert "cpu" not in set(device_table()["name"])


FAKE_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model name\t: Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz
physical id\t: 0
core id\t: 0
cpu cores\t: 2
cpu MHz\t: 1999.999
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 amx_bf16

processor\t: 1
physical id\t: 0
core id\t: 1
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 amx_bf16
"""


def test_cpu_estimate_from_flags():
    assert flops_per_cycle({"avx512f", "fma", "avx2"}) == 64
    assert flops_per_cycle({"avx512f", "fma"}, vendor="AuthenticAMD", family=25) == 32  # Zen 4
    assert flops_per_cycle({"avx2", "fma"}) == 32
    assert flops_per_cycle({"sse2"}) == 8
    parsed = devices.parse_cpuinfo(FAKE_CPUINFO)
    assert parsed["physical_cores"] == 2 and parsed["vendor"] == "GenuineIntel"
    spec = detect_cpu(FAKE_CPUINFO)
    assert spec.name == "cpu-intel-xeon-platinum-8480"
    assert (spec.physical_cores, spec.logical_cores) == (2, 2)
    assert spec.boost_clock_mhz == 2000.0  # "@ 2.00GHz" in the model name
    assert spec.peak_fp32_tflops == pytest.approx(2 * 2.0 * 64 / 1000)  # cores x GHz x AVX-512 FMA
    assert spec.peak_bf16_tensor_tflops == pytest.approx(2 * 2.0 * 1024 / 1000)  # AMX


def test_custom_device_registers_and_validates():
    spec = custom_device(
        "TestAccel-9000", peak_fp32_tflops=50.0, memory_bandwidth_gbs=2000, peak_fp16_tensor_tflops=400
    )
    assert spec.source == "user" and spec.kind == "gpu"
    assert Devices.get("testaccel 9000") is spec and Devices.TestAccel_9000 is spec
    assert spec.peak_tflops(16) == 400 and spec.peak_tflops("bf16") == 50.0
    assert math.isnan(spec.boost_clock_mhz) and spec.sm_count == 0
    assert "TestAccel-9000" in set(device_table()["name"])
    with pytest.raises(ChronosError, match="positive"):
        custom_device("TestAccel-bad", peak_fp32_tflops=-1, memory_bandwidth_gbs=100)
    with pytest.raises(ChronosError, match="needs memory_bandwidth_gbs"):
        custom_device("TestAccel-bad", peak_fp32_tflops=10)
    with pytest.raises(ChronosError, match="Unknown device field.*bogus"):
        custom_device("TestAccel-bad", peak_fp32_tflops=10, memory_bandwidth_gbs=100, bogus=1)
    with pytest.raises(ChronosError, match="already in the catalog"):
        custom_device("Tesla T4", peak_fp32_tflops=10, memory_bandwidth_gbs=100)
    assert "TestAccel-bad" not in Devices


def test_device_from_techpowerup_style_row():
    row = {
        "gpu_name": "NVIDIA RTX 2000 Test",
        "SM": 22,
        "Boost Clock (MHz)": 2130,
        "GPU Memory Bandwidth (GB/s)": 224,
        "Memory (GB)": 16,
        "FP16": 12000,
        "FP32": 12000,
        "TC": 88,
        "Memory Type": "GDDR6",
        "Memory Bus (bit)": 128,
        "$/hr": 0.25,
        "Provisioning": "RunPod",
    }
    spec = device_from_row(row)
    assert (spec.sm_count, spec.tensor_cores, spec.memory_bus_bits) == (22, 88, 128)
    assert spec.peak_fp32_tflops == 12.0 and spec.memory_bandwidth_gbs == 224
    assert spec.peak_fp16_tensor_tflops == 0  # unknown from these columns
    assert spec.peak_tflops(16) == 12.0 and spec.price_per_hr_usd == 0.25
    assert "RunPod" in spec.price_source
    assert "NVIDIA RTX 2000 Test" not in Devices
    registered = device_from_row(pd.Series(row), register=True)
    assert Devices.get("RTX 2000 Test") is registered
    # known names come from the catalog, not the row
    assert device_for_row({"gpu_name": "Tesla T4", "FP32": 1}) is Devices.T4
    with pytest.raises(ChronosError, match="no GPU name"):
        device_from_row({"FP32": 1000})


def test_device_table_and_text_table():
    table = device_table()
    assert list(table.columns) == list(COLUMNS)
    assert len(table) >= 16 and table["name"].is_unique
    assert (table["peak_fp32_tflops"] > 0).all()
    text = format_device_table()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["name", "arch", "SMs"]
    assert any(line.startswith("H100-SXM ") for line in lines)
    assert "989.4" in text


def test_recorded_device_is_registered_under_its_name():
    record = {
        "name": "cpu-recorded-elsewhere",
        "kind": "cpu",
        "peak_fp32_tflops": 0.08,
        "sm_count": 0,
        "memory_bandwidth_gbs": float("nan"),
        "compute_capability": None,
        "unknown_field": 1,
    }
    spec = devices.register_recorded_device(record)
    assert spec is not None and spec.kind == "cpu" and spec.peak_fp32_tflops == 0.08
    assert Devices.get("cpu-recorded-elsewhere") is spec and spec.compute_capability == ""
    t4 = devices.register_recorded_device({"name": "Tesla T4", "peak_fp32_tflops": 1.0})
    assert t4 is Devices.get("T4") and t4.peak_fp32_tflops == 8.1  # the catalog keeps its spec
    assert devices.register_recorded_device({"kind": "cpu"}) is None
