"""Every common GPU spelling resolves to the right catalog row, never silently to a sibling (issue #13)."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import pytest

from chronos_core.catalog import devices
from chronos_core.catalog.devices import Devices, custom_device
from chronos_core.errors import ChronosError

CSV_PATH = Path(devices.__file__).parent / "gpus.csv"
ROWS = list(csv.DictReader(CSV_PATH.open(encoding="utf-8")))
NAMES = [row["name"] for row in ROWS]

# The spellings the issue lists as not resolving.
ISSUE_SPELLINGS = {
    "A10-PCIe-24GB": "A10",
    "Tesla V100-PCIE-32GB": "V100-PCIe-32GB",
    "L4-24GB": "L4",
    "H200-SXM-141GB": "H200-SXM",
    "GH200-96GB": "GH200-96GB",
    "B200-SXM-180GB": "B200-SXM",
    "Quadro-RTX-8000": "Quadro-RTX-8000",
    "Titan-RTX": "TitanRTX",
    "RTX-A5500": "RTXA5500",
    "AMD Instinct MI300X": "MI300X",
}

# torch.cuda.get_device_name / nvidia-smi / rocm-smi output.
SMI_SPELLINGS = {
    "NVIDIA A100-SXM4-80GB": "A100-SXM4-80GB",
    "NVIDIA A100-SXM4-40GB": "A100-SXM4-40GB",
    "NVIDIA A100-PCIE-40GB": "A100-PCIe-40GB",
    "NVIDIA A100 80GB PCIe": "A100-PCIe-80GB",
    "NVIDIA H100 80GB HBM3": "H100-SXM",
    "NVIDIA H100 PCIe": "H100-PCIe",
    "NVIDIA H100 NVL": "H100-NVL",
    "NVIDIA H200": "H200-SXM",
    "NVIDIA H200 NVL": "H200-NVL",
    "NVIDIA GH200 480GB": "GH200-96GB",
    "NVIDIA GH200 624GB": "GH200-144GB",
    "NVIDIA B200": "B200-SXM",
    "NVIDIA GB200": "GB200",
    "NVIDIA GeForce RTX 4090": "RTX4090",
    "NVIDIA GeForce RTX 4080 SUPER": "RTX4080Super",
    "NVIDIA GeForce RTX 4070 Ti": "RTX4070Ti",
    "NVIDIA GeForce RTX 4060 Ti": "RTX4060Ti-16GB",
    "NVIDIA GeForce RTX 3090 Ti": "RTX3090Ti",
    "NVIDIA GeForce RTX 3080 Ti": "RTX3080Ti",
    "NVIDIA GeForce RTX 3060": "RTX3060",
    "NVIDIA GeForce RTX 5080": "RTX5080",
    "NVIDIA GeForce RTX 5070 Ti": "RTX5070Ti",
    "NVIDIA GeForce RTX 2080 SUPER": "RTX2080Super",
    "NVIDIA GeForce GTX 1080 Ti": "GTX1080Ti",
    "NVIDIA TITAN RTX": "TitanRTX",
    "NVIDIA TITAN V": "TitanV",
    "NVIDIA TITAN Xp": "TitanXp",
    "NVIDIA RTX A6000": "RTXA6000",
    "NVIDIA RTX A5500": "RTXA5500",
    "NVIDIA RTX A2000 12GB": "RTXA2000-12GB",
    "NVIDIA RTX 6000 Ada Generation": "RTX6000Ada",
    "NVIDIA RTX 5000 Ada Generation": "RTX5000Ada",
    "NVIDIA RTX 4000 Ada Generation": "RTX4000Ada",
    "NVIDIA RTX 2000 Ada Generation": "RTX2000Ada",
    "NVIDIA RTX PRO 6000 Blackwell Workstation Edition": "RTXPRO6000-Workstation",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition": "RTXPRO6000-Server",
    "Quadro RTX 6000": "Quadro-RTX-6000",
    "Quadro RTX 5000": "Quadro-RTX-5000",
    "Quadro GV100": "Quadro-GV100",
    "Quadro GP100": "Quadro-GP100",
    "Tesla V100-SXM2-32GB": "V100-SXM2-32GB",
    "Tesla V100S-PCIE-32GB": "V100S-PCIe-32GB",
    "Tesla P100-PCIE-16GB": "P100-PCIe-16GB",
    "Tesla P100-PCIE-12GB": "P100-PCIe-12GB",
    "Tesla P100-SXM2-16GB": "P100-SXM2-16GB",
    "Tesla P40": "P40",
    "Tesla K80": "K80",
    "NVIDIA L4": "L4",
    "NVIDIA L40": "L40",
    "NVIDIA A10": "A10",
    "NVIDIA A2": "A2",
    "NVIDIA A30": "A30",
    "NVIDIA_H100_80GB_HBM3": "H100-SXM",  # file-name form (NeuSight device configs)
    "AMD Instinct MI300X OAM": "MI300X",
    "AMD Instinct MI300X VF": "MI300X",
    "AMD Instinct MI325X": "MI325X",
    "AMD Instinct MI300A": "MI300A",
    "AMD Instinct MI250X/MI250": "MI250X",
    "AMD Instinct MI250X": "MI250X",
    "AMD Instinct MI250": "MI250",
    "AMD Instinct MI210": "MI210",
    "AMD Instinct MI100": "MI100",
    "Arcturus GL-XL [Instinct MI100]": "MI100",
}

# Marketing names, benchmark-table spellings, memory and form-factor suffixes.
MARKETING_SPELLINGS = {
    "MI300X OAM": "MI300X",
    "Instinct MI210": "MI210",
    "MI300X 192GB HBM3": "MI300X",
    "MI250X 128GB": "MI250X",  # module memory names the per-GCD row
    "H100 SXM5 80GB": "H100-SXM",
    "H100-SXM5-80GB": "H100-SXM",
    "H100 80GB HBM2e": "H100-PCIe",
    "H100 PCIe 80GB": "H100-PCIe",
    "H100 NVL 94GB": "H100-NVL",
    "HGX H100": "H100-SXM",
    "DGX H100": "H100-SXM",
    "H200 141GB HBM3e": "H200-SXM",
    "H200 144GB": "H200-SXM",
    "H200 NVL 141GB": "H200-NVL",
    "GH200 144GB HBM3e": "GH200-144GB",
    "GH200 Grace Hopper Superchip": "GH200-96GB",
    "GH200": "GH200-96GB",
    "HGX B200": "B200-SXM",
    "B200 192GB": "B200-SXM",
    "B200 SXM6": "B200-SXM",
    "GB200 NVL72": "GB200",
    "A100 40GB": "A100-SXM4-40GB",
    "A100 80GB": "A100-SXM4-80GB",
    "A100 SXM4 40GB": "A100-SXM4-40GB",
    "A100 PCIe 80GB": "A100-PCIe-80GB",
    "A100-80G": "A100-SXM4-80GB",
    "V100 PCIe 32GB": "V100-PCIe-32GB",
    "V100-SXM2-16GB": "V100-SXM2-16GB",
    "V100 32GB": "V100-SXM2-32GB",
    "P100 12GB": "P100-PCIe-12GB",
    "P100 SXM2": "P100-SXM2-16GB",
    "A10 24GB": "A10",
    "A10G 24GB": "A10G",
    "L40S 48GB": "L40S",
    "L40S PCIe": "L40S",
    "T4 16GB": "T4",
    "T4G": "T4",
    "K80 24GB": "K80",  # board memory names the per-GPU row
    "RTX 4090 24GB": "RTX4090",
    "RTX 4090": "RTX4090",
    "4090": "RTX4090",
    "RTX 5090 32GB": "RTX5090",
    "RTX 5070": "RTX5070",
    "RTX 4070": "RTX4070",
    "RTX 4060 Ti 8GB": "RTX4060Ti-8GB",
    "RTX 4060 Ti 16GB": "RTX4060Ti-16GB",
    "RTX 3080 10GB": "RTX3080",
    "RTX 3080 12GB": "RTX3080-12GB",
    "RTX 3070": "RTX3070",
    "RTX 3060 12GB": "RTX3060",
    "RTX 2080": "RTX2080",
    "GTX 1080 Ti": "GTX1080Ti",
    "1080 Ti": "GTX1080Ti",
    "Titan Xp": "TitanXp",
    "Titan V": "TitanV",
    "Quadro RTX 8000 48GB": "Quadro-RTX-8000",
    "RTX 8000": "Quadro-RTX-8000",
    "RTX 6000": "Quadro-RTX-6000",  # the Turing card; the Ada one says "Ada"
    "RTX 6000 Ada": "RTX6000Ada",
    "RTX 6000 Ada 48GB": "RTX6000Ada",
    "RTX 4500 Ada": "RTX4500Ada",
    "RTX A6000 48GB": "RTXA6000",
    "RTX A5500": "RTXA5500",
    "A5500": "RTXA5500",
    "RTX A2000 6GB": "RTXA2000-6GB",
    "RTX A2000": "RTXA2000-12GB",
    "RTX PRO 6000": "RTXPRO6000-Workstation",
    "RTX PRO 6000 Blackwell 96GB": "RTXPRO6000-Workstation",
    "RTX PRO 6000 Server Edition": "RTXPRO6000-Server",
    "RTX-PRO-6000-Workstation": "RTXPRO6000-Workstation",
}

# Cloud instance types.
CLOUD_SPELLINGS = {
    "p3.2xlarge": "V100-SXM2-16GB",
    "p3dn.24xlarge": "V100-SXM2-32GB",
    "p4d.24xlarge": "A100-SXM4-40GB",
    "p4de.24xlarge": "A100-SXM4-80GB",
    "p5.48xlarge": "H100-SXM",
    "p5e.48xlarge": "H200-SXM",
    "p5en.48xlarge": "H200-SXM",
    "p6-b200.48xlarge": "B200-SXM",
    "g4dn.xlarge": "T4",
    "g5.xlarge": "A10G",
    "g6.xlarge": "L4",
    "g6e.xlarge": "L40S",
    "AWS p4d": "A100-SXM4-40GB",
    "a2-highgpu-1g": "A100-SXM4-40GB",
    "a2-megagpu-16g": "A100-SXM4-40GB",
    "a2-ultragpu-8g": "A100-SXM4-80GB",
    "a3-highgpu-8g": "H100-SXM",
    "a3-megagpu-8g": "H100-SXM",
    "a3-ultragpu-8g": "H200-SXM",
    "a4-highgpu-8g": "B200-SXM",
    "g2-standard-8": "L4",
    "Standard_ND96asr_v4": "A100-SXM4-40GB",
    "Standard_ND96amsr_A100_v4": "A100-SXM4-80GB",
    "ND96amsr_A100_v4": "A100-SXM4-80GB",
    "Standard_NC24ads_A100_v4": "A100-PCIe-80GB",
    "NC_A100_v4": "A100-PCIe-80GB",
    "Standard_NC40ads_H100_v5": "H100-NVL",
    "NCads_H100_v5": "H100-NVL",
    "Standard_ND96isr_H100_v5": "H100-SXM",
    "ND_H100_v5": "H100-SXM",
    "ND_H200_v5": "H200-SXM",
    "ND_MI300X_v5": "MI300X",
    "Standard_ND96isr_MI300X_v5": "MI300X",
    "Standard_NC6s_v3": "V100-PCIe-16GB",
    "Standard_NC4as_T4_v3": "T4",
}

SPELLINGS = {**ISSUE_SPELLINGS, **SMI_SPELLINGS, **MARKETING_SPELLINGS, **CLOUD_SPELLINGS}


def test_there_are_many_real_world_spellings():
    assert len(SPELLINGS) >= 80 and len(ISSUE_SPELLINGS) == 10
    assert set(SPELLINGS.values()) <= set(NAMES)


@pytest.mark.parametrize(("spelling", "canonical"), sorted(SPELLINGS.items()))
def test_spelling_resolves(spelling, canonical):
    assert Devices.resolve(spelling) == canonical
    assert Devices.get(spelling).name == canonical
    assert spelling in Devices


@pytest.mark.parametrize("name", NAMES)
def test_every_canonical_name_resolves_to_itself(name):
    assert Devices.resolve(name) == name
    assert Devices.resolve(name.lower()) == name
    assert devices._structured(name) == (name, None)  # the rules agree with the exact index


# ------------------------------------------------------------------------------------ sibling safety


@pytest.mark.parametrize(
    ("spelling", "canonical", "not_this"),
    [
        ("V100-PCIe-32GB", "V100-PCIe-32GB", "V100-PCIe-16GB"),
        ("Tesla V100-PCIE-32GB", "V100-PCIe-32GB", "V100-PCIe-16GB"),
        ("V100 SXM2 32GB", "V100-SXM2-32GB", "V100-SXM2-16GB"),
        ("A100 40GB", "A100-SXM4-40GB", "A100-SXM4-80GB"),
        ("A100 PCIe 40GB", "A100-PCIe-40GB", "A100-PCIe-80GB"),
        ("A100 80GB PCIe", "A100-PCIe-80GB", "A100-SXM4-80GB"),
        ("H100 80GB HBM2e", "H100-PCIe", "H100-SXM"),
        ("H100 PCIe", "H100-PCIe", "H100-NVL"),
        ("H200 NVL", "H200-NVL", "H200-SXM"),
        ("GH200 144GB", "GH200-144GB", "GH200-96GB"),
        ("P100 16GB", "P100-PCIe-16GB", "P100-PCIe-12GB"),
        ("RTX 3080 12GB", "RTX3080-12GB", "RTX3080"),
        ("RTX 4060 Ti 8GB", "RTX4060Ti-8GB", "RTX4060Ti-16GB"),
        ("RTX 6000 Ada", "RTX6000Ada", "Quadro-RTX-6000"),
        ("MI250", "MI250", "MI250X"),
        ("L40", "L40", "L40S"),
        ("A10", "A10", "A10G"),
    ],
)
def test_memory_and_form_factor_pick_the_right_sibling(spelling, canonical, not_this):
    assert Devices.resolve(spelling) == canonical != not_this


@pytest.mark.parametrize(
    ("spelling", "said"),
    [
        ("RTX 4090 48GB", ["48 GB", "RTX4090 (24 GB"]),
        ("H100-96GB", ["96 GB", "H100-SXM (80 GB", "H100-NVL (94 GB"]),
        ("A100 64GB", ["64 GB", "A100-SXM4-40GB", "A100-SXM4-80GB"]),
        ("V100-SXM3-32GB", ["SXM3", "V100-SXM2-32GB"]),
        ("H100 SXM4", ["SXM4", "H100-SXM (80 GB SXM5"]),
        ("T4 32GB", ["32 GB", "T4 (16 GB"]),
        ("RTX 3060 8GB", ["8 GB", "RTX3060 (12 GB"]),
        ("MI300X 256GB", ["256 GB", "MI300X (192 GB"]),
        ("RTX PRO 6000 Blackwell Max-Q Workstation Edition", ["Max-Q", "RTXPRO6000-Workstation"]),
        ("RTX 6000 Blackwell", ["Blackwell", "Quadro-RTX-6000"]),
        ("L40S SXM", ["SXM", "L40S (48 GB PCIe)"]),
    ],
)
def test_a_size_or_form_that_no_row_has_is_one_clear_error(spelling, said):
    assert Devices.resolve(spelling) is None and spelling not in Devices
    with pytest.raises(ChronosError) as err:
        Devices.get(spelling)
    message = str(err.value)
    assert message.startswith(f"Unknown gpu {spelling!r}") and "\n" not in message
    assert "custom_device" in message
    for part in said:
        assert part in message, message


@pytest.mark.parametrize(
    "spelling", ["A1000", "T5", "tpu", "gpu", "cuda", "meta", "RTX 4070 Ti Super", "H800", "RTX 4090 D"]
)
def test_unknown_names_stay_unknown_with_one_line(spelling):
    assert Devices.resolve(spelling) is None
    with pytest.raises(ChronosError) as err:
        Devices.get(spelling)
    message = str(err.value)
    assert message.startswith(f"Unknown gpu {spelling!r}.") and "\n" not in message
    assert "Known: " in message and "H100-SXM" in message


def test_close_matches_are_suggested():
    message = str(pytest.raises(ChronosError, Devices.get, "MI300").value)
    assert "Did you mean" in message and "MI300X" in message.split("Known:")[0]


def test_unknown_gpu_with_specs_stays_supported():
    assert Devices.resolve("RTX 5090 96GB") is None  # a size the catalog lacks can be described
    spec = custom_device("RTX 5090 96GB", peak_fp32_tflops=104.8, memory_bandwidth_gbs=1792, memory_gb=96)
    assert Devices.get("RTX 5090 96GB") is spec and spec.source == "user"
    assert Devices.get("RTX 5090") is Devices.RTX5090  # the catalog part is untouched
    with pytest.raises(ChronosError, match="already in the catalog as 'H100-SXM'"):
        custom_device("NVIDIA H100 80GB HBM3", peak_fp32_tflops=1, memory_bandwidth_gbs=1)


# ------------------------------------------------------------------------------------ table sanity


def _num(row: dict[str, str], column: str) -> float:
    return float(row[column]) if row[column].strip() else math.nan


def test_table_has_every_generation_and_vendor():
    assert len(ROWS) >= 80 and len(set(NAMES)) == len(NAMES)
    architectures = {row["architecture"] for row in ROWS}
    assert {
        "Pascal",
        "Volta",
        "Turing",
        "Ampere",
        "Ada",
        "Hopper",
        "Blackwell",
        "CDNA2",
        "CDNA3",
    } <= architectures
    for name in [
        "B200-SXM",
        "GB200",
        "GH200-96GB",
        "GH200-144GB",
        "H200-NVL",
        "RTX5080",
        "RTXPRO6000-Workstation",
    ]:
        assert name in NAMES
    for name in ["MI100", "MI210", "MI250", "MI250X", "MI300X", "MI325X"]:
        assert name in NAMES


def test_every_row_has_a_source_and_says_whether_it_is_priced():
    for row in ROWS:
        assert row["source"].startswith("https://") and " " not in row["source"], row["name"]
        if row["price_per_hr_usd"]:
            assert float(row["price_per_hr_usd"]) > 0 and row["price_source"], row["name"]
        else:
            assert row["price_source"].startswith("not priced"), row["name"]


def test_peaks_and_memory_are_plausible():
    for row in ROWS:
        name = row["name"]
        fp32, fp16 = _num(row, "peak_fp32_tflops"), _num(row, "peak_fp16_tflops")
        tensor = [_num(row, c) for c in ("peak_fp16_tensor_tflops", "peak_bf16_tensor_tflops")]
        assert 1 < fp32 < 200, name
        for peak in tensor:
            assert peak == 0 or peak >= fp32, name  # tensor peaks >= vector peaks where present
        if tensor[0] > 0 and fp16 > 0:
            assert tensor[0] >= fp16, name
        memory, bandwidth, bus = (
            _num(row, "memory_gb"),
            _num(row, "memory_bandwidth_gbs"),
            _num(row, "memory_bus_bits"),
        )
        assert 4 <= memory <= 300, name
        assert 100 <= bandwidth <= 9000, name
        assert bus in (128, 160, 192, 256, 320, 352, 384, 512, 3072, 4096, 5120, 6144, 8192), name
        # bytes/s per bus bit: GDDR 1.5-4 GB/s/bit-lane/8, HBM lower per bit
        per_pin_gbps = bandwidth * 8 / bus
        assert 0.7 <= per_pin_gbps <= 32, (name, per_pin_gbps)
        if row["memory_type"].startswith("HBM"):
            assert bus >= 3072, name
        assert row["architecture"] and row["memory_type"] and row["interface"], name


def test_b200_is_the_hgx_per_gpu_dense_figure():
    b200 = Devices.B200_SXM
    assert b200.peak_bf16_tensor_tflops == pytest.approx(2250, rel=0.02)
    assert b200.peak_fp16_tensor_tflops == pytest.approx(2250, rel=0.02)
    assert "dense" in b200.notes and "sparse" in b200.notes
    gb200 = Devices.GB200
    assert gb200.peak_bf16_tensor_tflops == pytest.approx(2500, rel=0.02) and "dense" in gb200.notes


def test_sparse_figures_are_not_used():
    # datasheet sparse figures are 2x dense; the catalog keeps dense ones
    assert Devices.H100_SXM.peak_fp16_tensor_tflops == pytest.approx(989.4)
    assert Devices.L40S.peak_fp16_tensor_tflops == pytest.approx(362.05)
    assert Devices.MI300X.peak_fp16_tensor_tflops == pytest.approx(1307.4)
    assert Devices.A2.peak_fp16_tensor_tflops == 18
    for spec in (Devices.get(n) for n in NAMES):
        assert "dense" in spec.notes or spec.peak_fp16_tensor_tflops == 0, spec.name


def test_amd_rows_say_how_fields_are_mapped():
    for name in ["MI100", "MI210", "MI250", "MI250X", "MI300X", "MI325X", "MI300A"]:
        spec = Devices.get(name)
        assert spec.architecture.startswith("CDNA") and "compute units" in spec.notes, name
        assert (
            spec.compute_capability == ""
            and spec.sm_count > 0
            and spec.peak_tflops(16) > spec.peak_tflops(32)
        )
    assert "GCD" in Devices.MI250X.notes and Devices.MI250X.memory_gb == 64


def test_geforce_rows_say_fp32_accumulate_is_half_rate():
    for name in NAMES:
        spec = Devices.get(name)
        if re.fullmatch(r"RTX\d{4}(Ti|Super)*(-\d+GB)?", name) and spec.tensor_cores:
            assert "half" in spec.notes, name


def test_every_family_with_several_rows_has_a_default():
    for family, variants in devices._FAMILIES.items():
        if len(variants) > 1:
            assert family in devices._FAMILY_DEFAULTS, family
    for name in devices._FAMILY_DEFAULTS.values():
        assert name in NAMES
