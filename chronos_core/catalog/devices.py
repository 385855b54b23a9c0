"""Hardware catalog: GPU datasheet specs from `gpus.csv`, local CPU detection, user-supplied devices.

`Devices` resolves any common spelling to one row of the table. Peaks are datasheet values: tensor
peaks are dense (no sparsity) with FP32 accumulate; on GeForce cards that is half the FP16-accumulate
rate (see each row's `notes`). AMD Instinct rows map fields by analogy (compute units as `sm_count`,
stream processors as `cuda_cores`, matrix cores as `tensor_cores`, matrix-core peaks as tensor peaks);
MI250/MI250X rows are one GCD, the device ROCm shows (as the K80 row is one of its two GPUs).

Resolution, in order: exact spellings (vendor words and punctuation dropped: "Tesla T4", "NVIDIA
A100-SXM4-80GB") and `_ALIASES`; "cpu"; cloud instance types (AWS p3/p3dn/p4d/p4de/p5/p5e/p5en/
p6-b200/g4dn/g5/g6/g6e, GCP a2/a3/a4/g2, Azure ND/NC/NV sizes: see `_AWS_SKUS`, `_GCP_SKUS`,
`_AZURE_SKUS`); then rules: a spelling is read as a family ("H100", "RTX 4090", "MI300X") plus
qualifiers - a memory size ("80GB", "80 G"), form factors (PCIe, SXM/SXM2-6, NVL, OAM, HGX/DGX = SXM,
Workstation/Server Edition, Max-Q) and a memory type (HBM3, GDDR6X, ...) - and picks the family's row
with that memory and form factor (the memory type breaks ties: "H100 80GB HBM3" is the SXM part,
"HBM2e" the PCIe one). A named memory size or form factor that no row of the family has is an
error naming the rows that exist, never a sibling. A few sizes name a listed row (`_MEMORY_SPELLINGS`):
nvidia-smi shows GH200 with its CPU memory ("NVIDIA GH200 480GB" -> GH200-96GB; 624GB ->
GH200-144GB), and physical HBM sizes map to the usable one (H200 144 -> 141, B200 192 -> 180).

Bare family names pick the most common cloud variant (`_FAMILY_DEFAULTS`): "A100" -> A100-SXM4-80GB,
"V100" -> V100-SXM2-16GB, "H100" -> H100-SXM, "H200" -> H200-SXM, "P100" -> P100-PCIe-16GB,
"GH200" -> GH200-96GB, "RTX PRO 6000" -> the Workstation Edition.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import functools
import math
import os
import platform
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from chronos_core.catalog._catalog import Catalog, normalize_name
from chronos_core.errors import ChronosError

NAN = float("nan")
KINDS = ("gpu", "cpu")

# Columns of gpus.csv, in order; `device_table()` returns the same columns.
COLUMNS = (
    "name",
    "architecture",
    "compute_capability",
    "sm_count",
    "cuda_cores",
    "tensor_cores",
    "boost_clock_mhz",
    "peak_fp32_tflops",
    "peak_fp16_tflops",
    "peak_fp16_tensor_tflops",
    "peak_bf16_tensor_tflops",
    "peak_tf32_tensor_tflops",
    "memory_gb",
    "memory_type",
    "memory_bus_bits",
    "memory_bandwidth_gbs",
    "l2_cache_mb",
    "tdp_w",
    "interface",
    "price_per_hr_usd",
    "price_source",
    "source",
    "notes",
)
_INT_FIELDS = ("sm_count", "cuda_cores", "tensor_cores", "memory_bus_bits", "physical_cores", "logical_cores")
_FLOAT_FIELDS = (
    "boost_clock_mhz",
    "peak_fp32_tflops",
    "peak_fp16_tflops",
    "peak_fp16_tensor_tflops",
    "peak_bf16_tensor_tflops",
    "peak_tf32_tensor_tflops",
    "memory_gb",
    "memory_bandwidth_gbs",
    "l2_cache_mb",
    "tdp_w",
    "price_per_hr_usd",
)
# Numbers where 0 is meaningful ("no tensor cores", "free"); every other given number must be > 0.
_ZERO_OK = {
    "tensor_cores",
    "peak_fp16_tensor_tflops",
    "peak_bf16_tensor_tflops",
    "peak_tf32_tensor_tflops",
    "price_per_hr_usd",
}
# Precision spellings -> canonical key.
_PRECISIONS = {
    "fp32": "fp32",
    "float32": "fp32",
    "32": "fp32",
    "single": "fp32",
    "float": "fp32",
    "fp16": "fp16",
    "float16": "fp16",
    "16": "fp16",
    "half": "fp16",
    "amp": "fp16",
    "mixed": "fp16",
    "16mixed": "fp16",
    "bf16": "bf16",
    "bfloat16": "bf16",
    "bf16mixed": "bf16",
    "tf32": "tf32",
}


@dataclass(frozen=True)
class DeviceSpec:
    """One accelerator (or the host CPU): datasheet peaks, memory system, price and provenance.

    Units are in the field names. Unknown numbers are NaN; tensor peaks are 0 where unsupported
    or unknown. For CPUs `physical_cores`/`logical_cores` are set and the GPU counts are 0.
    """

    name: str
    kind: str = "gpu"
    architecture: str = ""
    compute_capability: str = ""
    sm_count: int = 0
    cuda_cores: int = 0
    tensor_cores: int = 0
    boost_clock_mhz: float = NAN
    peak_fp32_tflops: float = NAN
    peak_fp16_tflops: float = NAN
    peak_fp16_tensor_tflops: float = 0.0
    peak_bf16_tensor_tflops: float = 0.0
    peak_tf32_tensor_tflops: float = 0.0
    memory_gb: float = NAN
    memory_type: str = ""
    memory_bus_bits: int = 0
    memory_bandwidth_gbs: float = NAN
    l2_cache_mb: float = NAN
    tdp_w: float = NAN
    interface: str = ""
    price_per_hr_usd: float = NAN
    price_source: str = ""
    source: str = ""
    notes: str = ""
    physical_cores: int = 0
    logical_cores: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ChronosError(f"Unknown device kind {self.kind!r}. Known: {', '.join(KINDS)}")

    def peak_tflops(self, precision: str | int = "fp32") -> float:
        """Peak dense TFLOPS for a training precision.

        fp16/amp: the FP16 tensor peak when there is one, else the faster of the FP16 vector and
        FP32 rates (cuBLAS runs FP16 GEMMs with FP32 math where FP16 is slow, e.g. P4).
        bf16: the BF16 tensor peak, else FP32 (no native BF16 math before Ampere).
        tf32: the TF32 tensor peak, else FP32. fp32: the non-tensor FP32 peak.
        """
        key = _precision_key(precision)
        fp32 = self.peak_fp32_tflops
        if key == "fp32":
            return fp32
        if key == "tf32":
            return self.peak_tf32_tensor_tflops if _positive(self.peak_tf32_tensor_tflops) else fp32
        if key == "bf16":
            return self.peak_bf16_tensor_tflops if _positive(self.peak_bf16_tensor_tflops) else fp32
        if _positive(self.peak_fp16_tensor_tflops):
            return self.peak_fp16_tensor_tflops
        if _positive(self.peak_fp16_tflops):
            return max(self.peak_fp16_tflops, fp32) if _positive(fp32) else self.peak_fp16_tflops
        return fp32

    def ridge_point_flops_per_byte(self, precision: str | int = "fp32") -> float:
        """Roofline ridge point: peak FLOP/s over memory bytes/s (NaN when bandwidth is unknown)."""
        bandwidth = self.memory_bandwidth_gbs
        if not _positive(bandwidth):
            return NAN
        return self.peak_tflops(precision) * 1e12 / (bandwidth * 1e9)

    def as_dict(self) -> dict[str, Any]:
        """All fields as a plain dict."""
        return dataclasses.asdict(self)


def canonical_device_columns(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical gpu_* columns of a device, from `DeviceSpec.as_dict()` (or a dict of its fields).

    gpu_fp16_tflops is the FP16 tensor peak where there is one (as in the public tables' FP16
    column), else the plain FP16 peak.
    """
    get = spec.get
    return {
        "gpu_name": get("name"),
        "gpu_sm_count": get("sm_count"),
        "gpu_boost_clock_mhz": get("boost_clock_mhz"),
        "gpu_memory_gb": get("memory_gb"),
        "gpu_mem_bandwidth_gbs": get("memory_bandwidth_gbs"),
        "gpu_fp32_tflops": get("peak_fp32_tflops"),
        "gpu_fp16_tflops": get("peak_fp16_tensor_tflops") or get("peak_fp16_tflops"),
        "gpu_tensor_cores": get("tensor_cores"),
        "gpu_price_per_hr": get("price_per_hr_usd"),
    }


def _positive(value: float) -> bool:
    return isinstance(value, int | float) and value > 0 and math.isfinite(value)


def _precision_key(precision: object) -> str:
    text = str(precision).lower().removeprefix("torch.")
    key = _PRECISIONS.get(re.sub(r"[^a-z0-9]", "", text))
    if key is None:
        valid = "32/'fp32'/'float32', 16/'fp16'/'float16'/'amp', 'bf16'/'bfloat16', 'tf32'"
        raise ChronosError(f"Unknown precision {precision!r}. Known: {valid}")
    return key


# ---------------------------------------------------------------------------------------------- GPU table


def _number(field: str, value: object) -> float | int:
    """Parse one CSV/user value; blanks become NaN (floats) or 0 (ints)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0 if field in _INT_FIELDS else NAN
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ChronosError(f"Device field {field} must be a number, got {value!r}") from None
    if field in _INT_FIELDS:
        if math.isfinite(number) and not number.is_integer():
            raise ChronosError(f"Device field {field} must be a whole number, got {value!r}")
        return int(number) if math.isfinite(number) else 0
    return number


def _spec_from_record(record: Mapping[str, object], kind: str = "gpu") -> DeviceSpec:
    values: dict[str, Any] = {"kind": kind}
    for field in COLUMNS:
        raw = record.get(field, "")
        if field in _INT_FIELDS or field in _FLOAT_FIELDS:
            values[field] = _number(field, raw)
        else:
            values[field] = "" if raw is None else str(raw).strip()
    return DeviceSpec(**values)


def _read_table() -> list[DeviceSpec]:
    try:
        text = resources.files("chronos_core.catalog").joinpath("gpus.csv").read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError, TypeError):
        text = (Path(__file__).parent / "gpus.csv").read_text(encoding="utf-8")
    return [_spec_from_record(row) for row in csv.DictReader(text.splitlines())]


# Spellings the general rules below do not cover. Most spellings need no entry: vendor words and
# punctuation are dropped, and memory sizes, form factors and memory types are read from the
# spelling (see `_structured`), so "Tesla V100-PCIE-32GB" and "NVIDIA H100 80GB HBM3" resolve by rule.
_ALIASES = {
    "P100": "P100-PCIe-16GB",
    "P100-16GB": "P100-PCIe-16GB",
    "V100": "V100-SXM2-16GB",
    "V100-16GB": "V100-SXM2-16GB",
    "V100-SXM2": "V100-SXM2-16GB",
    "V100-32GB": "V100-SXM2-32GB",
    "V100-PCIe": "V100-PCIe-16GB",
    "A100": "A100-SXM4-80GB",
    "A100-80GB": "A100-SXM4-80GB",
    "A100-SXM-80GB": "A100-SXM4-80GB",
    "A100 80GB SXM": "A100-SXM4-80GB",
    "A100-40GB": "A100-SXM4-40GB",
    "A100-SXM-40GB": "A100-SXM4-40GB",
    "A100 40GB SXM": "A100-SXM4-40GB",
    "NVIDIA A100 80GB PCIe": "A100-PCIe-80GB",
    "NVIDIA A100 40GB PCIe": "A100-PCIe-40GB",
    "A100-PCIe": "A100-PCIe-40GB",
    "H100": "H100-SXM",
    "H100-SXM5": "H100-SXM",
    "H100-SXM5-80GB": "H100-SXM",
    "H100-SXM-80GB": "H100-SXM",
    "NVIDIA H100 80GB HBM3": "H100-SXM",
    "H100-PCIe-80GB": "H100-PCIe",
    "NVIDIA H100 80GB PCIe": "H100-PCIe",
    "H200": "H200-SXM",
    "B200": "B200-SXM",
    "NVIDIA B200": "B200-SXM",
    "B200-180GB": "B200-SXM",
    "V100-PCIe-32GB": "V100-PCIe-32GB",
    "H200-SXM5": "H200-SXM",
    "H200-141GB": "H200-SXM",
    "NVIDIA H200 141GB HBM3e": "H200-SXM",
    "A4000": "RTXA4000",
    "A6000": "RTXA6000",
    "3090": "RTX3090",
    "4090": "RTX4090",
    "5090": "RTX5090",
    "2080 Ti": "RTX2080Ti",
    "3080": "RTX3080",
    "4080": "RTX4080",
    "A4500": "RTXA4500",
    "A5000": "RTXA5000",
    "RTX 6000 Ada Generation": "RTX6000Ada",
    "RTX 6000 Ada": "RTX6000Ada",
    "H100 NVL": "H100-NVL",
    "H100-NVL-94GB": "H100-NVL",
    # torch / rocm-smi show both MI250 parts as "AMD Instinct MI250X/MI250"; the MI250X is the common one.
    "AMD Instinct MI250X/MI250": "MI250X",
    "T4G": "T4",  # AWS g5g's NVIDIA T4G is a T4 on an Arm host
}

# Bare family name -> the row it means, where a family has several rows (memory or form factor).
_FAMILY_DEFAULTS = {
    "p100": "P100-PCIe-16GB",
    "v100": "V100-SXM2-16GB",
    "a100": "A100-SXM4-80GB",
    "h100": "H100-SXM",
    "h200": "H200-SXM",
    "gh200": "GH200-96GB",
    "rtx3080": "RTX3080",
    "rtxa2000": "RTXA2000-12GB",
    "rtx4060ti": "RTX4060Ti-16GB",
    "rtxpro6000": "RTXPRO6000-Workstation",
}
# Memory sizes that name a row with another listed size: physical vs usable HBM (H200 144 -> 141,
# B200 192 -> 180, GB200 192 -> 186), boards of two GPUs (K80 24 -> 12 GB per GPU, MI250/MI250X
# 128 -> 64 GB per GCD) and GH200 as nvidia-smi shows it, CPU LPDDR5X included ("NVIDIA GH200
# 480GB": 480 GB LPDDR5X; 480 + 96 = 576 -> the 96 GB HBM3 part, 480 + 144 = 624 -> the HBM3e part).
_MEMORY_SPELLINGS = {
    ("h200", 144): 141,
    ("b200", 192): 180,
    ("gb200", 192): 186,
    ("k80", 24): 12,
    ("mi250", 128): 64,
    ("mi250x", 128): 64,
    ("gh200", 480): 96,
    ("gh200", 576): 96,
    ("gh200", 624): 144,
}
# Words users add or drop freely, on top of normalize_name's vendor words ("VF": SR-IOV virtual function).
_NOISE = frozenset(
    "nvidia tesla geforce quadro amd instinct radeon generation grace superchip edition gpu gpus"
    " accelerator graphics card tensor core datacenter vf".split()
)
# Architecture words: part of some names ("RTX 6000 Ada"), else a check on the row's architecture.
_ARCH_WORDS = {
    "ada": "Ada",
    "lovelace": "Ada",
    "blackwell": "Blackwell",
    "hopper": "Hopper",
    "ampere": "Ampere",
    "turing": "Turing",
    "volta": "Volta",
    "pascal": "Pascal",
}
_MEMORY_TYPES = ("hbm2", "hbm2e", "hbm3", "hbm3e", "gddr5", "gddr5x", "gddr6", "gddr6x", "gddr7")
_MEMORY_RE = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)\s*(?:gb|gib|g)(?![a-z0-9])")
_FORM_NAMES = {
    "sxm": "SXM",
    "pcie": "PCIe",
    "nvl": "NVL",
    "oam": "OAM",
    "workstation": "Workstation Edition",
    "server": "Server Edition",
    "maxq": "Max-Q",
}

# Cloud instance types -> the GPU they carry. AWS EC2 families (any size: "p4d.24xlarge"), GCP
# machine types ("a2-ultragpu-8g"), Azure VM sizes and series (matched with "Standard_", "_" and
# spaces dropped: "Standard_ND96amsr_A100_v4", "ND MI300X v5").
_AWS_SKUS = {
    "p2": "K80",
    "p3": "V100-SXM2-16GB",
    "p3dn": "V100-SXM2-32GB",
    "p4d": "A100-SXM4-40GB",
    "p4de": "A100-SXM4-80GB",
    "p5": "H100-SXM",
    "p5e": "H200-SXM",
    "p5en": "H200-SXM",
    "p6-b200": "B200-SXM",
    "p6e-gb200": "GB200",
    "g4dn": "T4",
    "g5g": "T4",
    "g5": "A10G",
    "g6": "L4",
    "g6e": "L40S",
}
_GCP_SKUS = {
    "a2-highgpu": "A100-SXM4-40GB",
    "a2-megagpu": "A100-SXM4-40GB",
    "a2-ultragpu": "A100-SXM4-80GB",
    "a3-highgpu": "H100-SXM",
    "a3-megagpu": "H100-SXM",
    "a3-edgegpu": "H100-SXM",
    "a3-ultragpu": "H200-SXM",
    "a4-highgpu": "B200-SXM",
    "a4x-highgpu": "GB200",
    "g2-standard": "L4",
}
_AZURE_SKUS = (
    (r"nd\d*asr(a100)?v4|nda100v4", "A100-SXM4-40GB"),  # ND A100 v4: ND96asr_v4
    (r"nd\d*amsr(a100)?v4|ndma100v4", "A100-SXM4-80GB"),  # NDm A100 v4: ND96amsr_A100_v4
    (r"nc\d*(ads)?a100v4", "A100-PCIe-80GB"),  # NC A100 v4: NC24ads_A100_v4
    (r"nc\d*(ads)?h100v5", "H100-NVL"),  # NCads H100 v5: NC40ads_H100_v5
    (r"nd\d*(isr)?h100v5", "H100-SXM"),  # ND H100 v5: ND96isr_H100_v5
    (r"nd\d*(isr)?h200v5", "H200-SXM"),  # ND H200 v5
    (r"nd\d*(isr)?mi300xv5", "MI300X"),  # ND MI300X v5
    (r"nd\d*(isr)?(ndr)?gb200v6", "GB200"),  # ND GB200 v6
    (r"nc\d*r?sv3|ncv3", "V100-PCIe-16GB"),  # NCv3: NC6s_v3
    (r"nd\d*r?sv2|ndv2", "V100-SXM2-32GB"),  # NDv2: ND40rs_v2
    (r"nc\d*ast4v3|ncast4v3", "T4"),  # NCasT4_v3: NC4as_T4_v3
    (r"nv\d*(ads)?a10v5", "A10"),  # NVadsA10 v5 (fractions of an A10)
)


def _cloud_sku(name: str) -> str | None:
    """The GPU of a cloud instance type, or None."""
    text = re.sub(
        r"^\s*(aws|amazon|ec2|gcp|google cloud|google|azure)\b[\s:/-]*", "", str(name).lower()
    ).strip()
    aws = re.fullmatch(r"([a-z0-9]+(?:-[a-z0-9]+)?)(?:\.\w+)?", text)
    if aws and aws.group(1) in _AWS_SKUS:
        return _AWS_SKUS[aws.group(1)]
    gcp = re.fullmatch(r"([a-z0-9]+-[a-z]+)(?:-\d+g?)?", text.replace(" ", "-"))
    if gcp and gcp.group(1) in _GCP_SKUS:
        return _GCP_SKUS[gcp.group(1)]
    key = re.sub(r"[\s_-]+", "", text.removeprefix("standard"))
    return next((gpu for pattern, gpu in _AZURE_SKUS if re.fullmatch(pattern, key)), None)


@dataclass(frozen=True)
class _Spelling:
    """What a GPU spelling says: family key (with and without architecture words) and qualifiers."""

    family: str
    bare_family: str
    arch: frozenset[str]
    memory_gb: tuple[float, ...]
    memory_type: str
    forms: tuple[tuple[str, int | None], ...]


def _form_token(token: str) -> tuple[str, int | None] | None:
    sxm = re.fullmatch(r"sxm(\d?)", token)
    if sxm:
        return ("sxm", int(sxm.group(1)) if sxm.group(1) else None)
    if re.fullmatch(r"pci(e|express)?\d*", token):
        return ("pcie", None)
    if token in ("hgx", "dgx", "nvlink"):
        return ("sxm", None)
    if token in ("nvl", "oam", "workstation", "server", "maxq"):
        return (token, None)
    return None


def _parse_spelling(name: str) -> _Spelling:
    text = re.sub(r"max[\s_-]*q", " maxq ", str(name).lower())
    text = re.sub(r"[^a-z0-9.]+", " ", text)
    memory = tuple(sorted({float(m) for m in _MEMORY_RE.findall(text)}))
    text = _MEMORY_RE.sub(" ", text)
    kept: list[str] = []
    arch: set[str] = set()
    memory_type = ""
    forms: list[tuple[str, int | None]] = []
    for token in text.split():
        token = token.strip(".")
        if not token or token in _NOISE or re.fullmatch(r"\d+\.\d+|x\d+|nvl\d+", token):
            continue  # vendor words, "PCIe 4.0 x16", rack names ("GB200 NVL72")
        if token in _MEMORY_TYPES:
            memory_type = token
        elif (form := _form_token(token)) is not None:
            forms.append(form)
        else:
            kept.append(token)
            if token in _ARCH_WORDS:
                arch.add(_ARCH_WORDS[token])
    bare = "".join(t for t in kept if t not in _ARCH_WORDS)
    return _Spelling("".join(kept), bare, frozenset(arch), memory, memory_type, tuple(forms))


@dataclass(frozen=True)
class _Variant:
    """One table row as the resolver sees it."""

    name: str
    family: str
    memory_gb: float
    memory_type: str
    forms: Mapping[str, int | None]  # form kind -> generation (SXM4 -> 4), from name and interface
    named_forms: frozenset[str]  # form kinds written in the canonical name
    architecture: str

    def describe(self) -> str:
        form = "/".join(_FORM_NAMES.get(k, k) + (str(g) if g else "") for k, g in self.forms.items())
        return f"{self.name} ({self.memory_gb:g} GB{' ' + form if form else ''})"


def _variant(spec: DeviceSpec) -> _Variant:
    parsed = _parse_spelling(spec.name)
    forms: dict[str, int | None] = {}
    for kind, gen in [
        *parsed.forms,
        *(_form_token(t) for t in re.findall(r"pcie|sxm\d?|oam", spec.interface.lower())),
    ]:
        if gen is not None or kind not in forms:
            forms[kind] = gen
    return _Variant(
        spec.name,
        parsed.family,
        spec.memory_gb,
        spec.memory_type.lower(),
        forms,
        frozenset(kind for kind, _ in parsed.forms),
        spec.architecture,
    )


def _families(specs: Iterable[DeviceSpec]) -> dict[str, list[_Variant]]:
    families: dict[str, list[_Variant]] = {}
    for spec in specs:
        variant = _variant(spec)
        families.setdefault(variant.family, []).append(variant)
    return families


def _lookup_family(spelling: _Spelling) -> tuple[str, list[_Variant]] | None:
    """The family a spelling names: as written, without architecture words, or a bare model number."""
    keys = [spelling.family]
    if spelling.arch:
        keys.append(spelling.bare_family)
    for key in list(keys):
        if re.fullmatch(r"\d{3,4}[a-z]*|a\d{4}[a-z]*", key):  # "4090", "1080ti", "a5500"
            keys += [f"rtx{key}", f"gtx{key}"]
    for key in keys:
        if key in _FAMILIES:
            return key, _FAMILIES[key]
    return None


def _form_matches(variant: _Variant, kind: str, gen: int | None) -> bool:
    if kind not in variant.forms:
        return False
    have = variant.forms[kind]
    return gen is None or have is None or have == gen


@functools.lru_cache(maxsize=4096)
def _structured(name: str) -> tuple[str | None, str | None]:
    """(canonical name, None) for a spelling the rules resolve; (None, reason) when it names a family
    but no row fits (memory, form factor, architecture); (None, None) when it names no family."""
    spelling = _parse_spelling(name)
    found = _lookup_family(spelling)
    if found is None or len(spelling.memory_gb) > 1:
        return None, None
    family, variants = found
    have = ", ".join(v.describe() for v in variants)

    def refuse(what: str) -> tuple[None, str]:
        return None, (
            f"Unknown gpu {name!r}: the catalog has no {family.upper()} {what} (it has {have});"
            " use one of those names, or describe the part with custom_device()"
        )

    candidates = variants
    if spelling.arch and family == spelling.bare_family:
        candidates = [v for v in candidates if v.architecture in spelling.arch]
        if not candidates:
            return refuse(f"of the {'/'.join(sorted(spelling.arch))} architecture")
    if spelling.memory_gb:
        wanted = _MEMORY_SPELLINGS.get((family, round(spelling.memory_gb[0])), spelling.memory_gb[0])
        candidates = [v for v in candidates if round(v.memory_gb) == round(wanted)]
        if not candidates:
            return refuse(f"with {spelling.memory_gb[0]:g} GB")
    for kind, gen in spelling.forms:
        candidates = [v for v in candidates if _form_matches(v, kind, gen)]
        if not candidates:
            return refuse(_FORM_NAMES.get(kind, kind) + (str(gen) if gen else ""))
    if spelling.memory_type:
        same_type = [v for v in candidates if v.memory_type == spelling.memory_type]
        candidates = same_type or candidates
    default = next((v for v in variants if v.name == _FAMILY_DEFAULTS.get(family)), variants[0])

    def rank(variant: _Variant) -> tuple[int, int, int, int]:
        named = sum(kind in variant.named_forms for kind, _ in spelling.forms)
        return (-named, variant is not default, variant.forms != default.forms, variants.index(variant))

    return min(candidates, key=rank).name, None


class _DeviceCatalog(Catalog[DeviceSpec]):
    """GPU lookup: exact spellings and aliases, then local CPU detection, cloud instance types and the
    structured rules (memory size, form factor, memory type); unknown names get a one-line error."""

    def resolve(self, name: str) -> str | None:
        found = super().resolve(name)
        if found is not None:
            return found
        key = normalize_name(name)
        if key in _CPU_KEYS or key.startswith("cpu"):
            local_cpu()
            return super().resolve(name)
        found = _cloud_sku(name) or _structured(str(name))[0]
        if found is None and "[" in str(name):  # "Arcturus GL-XL [Instinct MI100]"
            inner = re.search(r"\[([^\]]+)\]", str(name))
            found = self.resolve(inner.group(1)) if inner else None
        return found

    def _unknown(self, name: str) -> Exception:
        reason = _structured(str(name))[1]
        if reason is not None:
            return ChronosError(reason)
        close = difflib.get_close_matches(normalize_name(name), list(self._index), n=8, cutoff=0.6)
        suggestions = list(dict.fromkeys(self._index[key] for key in close))[:4]
        hint = f" Did you mean {', '.join(suggestions)}?" if suggestions else ""
        known = ", ".join(sorted(self._specs, key=str.lower))
        return ChronosError(f"Unknown gpu {name!r}.{hint} Known: {known}")


# Normalized names that trigger (lazy) local CPU detection.
_CPU_KEYS = ("cpu", "localcpu", "host")

_GPUS = _read_table()
_FAMILIES = _families(_GPUS)
Devices: Catalog[DeviceSpec] = _DeviceCatalog("gpu", {spec.name: spec for spec in _GPUS}, aliases=_ALIASES)


# ---------------------------------------------------------------------------------------------- local CPU


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Model, vendor, family, flags, physical cores and clock from /proc/cpuinfo text (Linux)."""
    info: dict[str, Any] = {"model": "", "vendor": "", "family": None, "flags": set(), "mhz": NAN}
    cores: set[tuple[str, str]] = set()
    per_socket: dict[str, int] = {}
    block: dict[str, str] = {}

    def close(entry: dict[str, str]) -> None:
        if "core id" in entry:
            cores.add((entry.get("physical id", "0"), entry["core id"]))
        if "cpu cores" in entry and entry["cpu cores"].isdigit():
            per_socket[entry.get("physical id", "0")] = int(entry["cpu cores"])

    for line in [*text.splitlines(), ""]:
        if not line.strip():
            close(block)
            block = {}
            continue
        key, _, value = line.partition(":")
        key, value = key.strip().lower(), value.strip()
        block[key] = value
        if key in ("model name", "hardware", "cpu model") and not info["model"]:
            info["model"] = value
        elif key == "vendor_id" and not info["vendor"]:
            info["vendor"] = value
        elif key == "cpu family" and info["family"] is None and value.isdigit():
            info["family"] = int(value)
        elif key in ("flags", "features") and not info["flags"]:
            info["flags"] = set(value.lower().split())
        elif key == "cpu mhz" and math.isnan(info["mhz"]):
            try:
                info["mhz"] = float(value)
            except ValueError:
                pass
    info["physical_cores"] = len(cores) or sum(per_socket.values()) or 0
    info["logical_cores"] = len(re.findall(r"^processor\s*:", text, re.MULTILINE))
    return info


def flops_per_cycle(flags: Iterable[str], vendor: str = "", family: int | None = None) -> int:
    """FP32 FLOPs per core per cycle from SIMD flags: AVX-512+FMA 64, AVX2+FMA 32, else 8.

    AMD Zen 4 (family 25) executes AVX-512 as two 256-bit halves, so it counts as 32.
    An upper bound: Intel parts with a single 512-bit FMA unit reach half of 64.
    """
    flags = set(flags)
    fma = "fma" in flags
    if "avx512f" in flags and fma:
        return 32 if vendor == "AuthenticAMD" and family == 25 else 64
    if "avx2" in flags and fma:
        return 32
    return 8


def _cpu_slug(model: str) -> str:
    text = re.sub(r"\((r|tm)\)", " ", model.lower())
    text = re.sub(r"@.*$", " ", text)
    text = re.sub(r"\b(cpu|processor)\b", " ", text)
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")
    return f"cpu-{slug or platform.machine().lower() or 'unknown'}"


def _max_clock_mhz(model: str, cpuinfo_mhz: float, this_machine: bool = True) -> tuple[float, str]:
    """Best available max clock and where it came from (sysfs and psutil only for this machine)."""
    khz = _read_text("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip() if this_machine else ""
    if khz.isdigit() and int(khz) > 0:
        return int(khz) / 1000.0, "cpufreq max"
    match = re.search(r"@\s*([\d.]+)\s*GHz", model, re.IGNORECASE)
    if match:
        return float(match.group(1)) * 1000.0, "model-name nominal"
    if _positive(cpuinfo_mhz):
        return cpuinfo_mhz, "/proc/cpuinfo current"
    if this_machine:
        try:
            import psutil

            freq = psutil.cpu_freq()
            if freq is not None and _positive(freq.max):
                return float(freq.max), "psutil max"
        except Exception:  # noqa: BLE001 - psutil is optional and platform-dependent
            pass
    return 2000.0, "assumed 2.0 GHz (clock unknown)"


def _memory_gb() -> float:
    match = re.search(r"MemTotal:\s*(\d+)\s*kB", _read_text("/proc/meminfo"))
    if match:
        return round(int(match.group(1)) / 1024**2, 1)
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import psutil

        return round(psutil.virtual_memory().total / 1024**3, 1)
    except Exception:  # noqa: BLE001
        return NAN


def _physical_cores(parsed: int, logical: int) -> int:
    if parsed > 0:
        return parsed
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
        if count:
            return int(count)
    except Exception:  # noqa: BLE001
        pass
    return logical


def detect_cpu(cpuinfo_text: str | None = None) -> DeviceSpec:
    """Describe a CPU (this machine's unless `cpuinfo_text` is given) without registering it.

    Peak FP32 = usable physical cores x max GHz x FLOPs/cycle; an upper-bound estimate (AVX-512
    clocks run lower). Memory bandwidth is left NaN: it cannot be read reliably from software.
    """
    text = _read_text("/proc/cpuinfo") if cpuinfo_text is None else cpuinfo_text
    info = parse_cpuinfo(text)
    model = info["model"] or platform.processor() or platform.machine() or "unknown cpu"
    this_machine = cpuinfo_text is None
    logical = (os.cpu_count() if this_machine else info["logical_cores"]) or 1
    physical = _physical_cores(info["physical_cores"], logical) if this_machine else info["physical_cores"]
    physical = physical or logical
    usable = len(os.sched_getaffinity(0)) if this_machine and hasattr(os, "sched_getaffinity") else logical
    cores = max(1, min(physical, usable))
    mhz, clock_from = _max_clock_mhz(model, info["mhz"], this_machine)
    flags: set[str] = info["flags"]
    per_cycle = flops_per_cycle(flags, info["vendor"], info["family"])
    fp32 = cores * mhz / 1000.0 * per_cycle / 1000.0
    fp16 = fp32 * 2 if "avx512_fp16" in flags else fp32
    if "amx_bf16" in flags:
        bf16 = cores * mhz / 1000.0 * 1024 / 1000.0  # AMX tile unit: 1024 BF16 FLOPs/cycle/core
    elif "avx512_bf16" in flags:
        bf16 = fp32 * 2  # VDPBF16PS: two BF16 products per FP32 lane
    else:
        bf16 = 0.0
    fp16_tensor = cores * mhz / 1000.0 * 1024 / 1000.0 if "amx_fp16" in flags else 0.0
    simd = [f for f in ("avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16", "avx2", "fma") if f in flags]
    notes = (
        f"estimate: {cores} cores x {mhz / 1000:.2f} GHz ({clock_from}) x {per_cycle} FP32 FLOPs/cycle"
        f" [{' '.join(simd) or 'no AVX2/AVX-512 detected'}]; memory bandwidth unknown (NaN)"
    )
    return DeviceSpec(
        name=_cpu_slug(model),
        kind="cpu",
        architecture=platform.machine(),
        boost_clock_mhz=mhz,
        peak_fp32_tflops=fp32,
        peak_fp16_tflops=fp16,
        peak_fp16_tensor_tflops=fp16_tensor,
        peak_bf16_tensor_tflops=bf16,
        memory_gb=_memory_gb() if this_machine else NAN,
        memory_type="system RAM",
        interface="host",
        source="detected on this machine" if this_machine else "parsed from given cpuinfo",
        notes=notes,
        physical_cores=physical,
        logical_cores=logical,
    )


@functools.cache
def local_cpu() -> DeviceSpec:
    """This machine's CPU, detected once and registered in `Devices` as 'cpu' and under its name."""
    spec = detect_cpu()
    Devices.add(spec.name, spec, aliases=_CPU_KEYS)
    return spec


# ---------------------------------------------------------------------------------------------- custom


def _check_new_name(name: str) -> None:
    """Refuse to shadow a catalog or detected device (re-registering a user device is fine)."""
    existing = Devices.resolve(name)
    if existing is not None and Devices.get(existing).source not in ("user", _ROW_SOURCE):
        raise ChronosError(f"{name!r} is already in the catalog as {existing!r}; pick another name")


def custom_device(name: str, *, aliases: Iterable[str] = (), **specs: object) -> DeviceSpec:
    """Describe a GPU (or CPU, kind='cpu') that is not in the table and register it.

    Needs at least `peak_fp32_tflops` and `memory_bandwidth_gbs`; other fields default to NaN
    (numbers), 0 (counts, tensor peaks) or ''. Numbers must be positive (0 allowed for tensor peaks,
    tensor cores and price).
    """
    if not str(name).strip():
        raise ChronosError("custom_device needs a non-empty name")
    known = {f.name for f in dataclasses.fields(DeviceSpec)} - {"name"}
    unknown = sorted(set(specs) - known)
    if unknown:
        raise ChronosError(f"Unknown device field(s) {', '.join(unknown)}. Known: {', '.join(sorted(known))}")
    missing = [f for f in ("peak_fp32_tflops", "memory_bandwidth_gbs") if specs.get(f) is None]
    if missing:
        raise ChronosError(f"custom_device {name!r} needs {' and '.join(missing)}")
    _check_new_name(name)
    values: dict[str, Any] = {"name": str(name), "source": "user"}
    for field, value in specs.items():
        if field in _INT_FIELDS or field in _FLOAT_FIELDS:
            number = _number(field, value)
            floor_ok = field in _ZERO_OK and number == 0
            if not (floor_ok or (number > 0 and math.isfinite(number))):
                raise ChronosError(f"Device field {field} must be a positive number, got {value!r}")
            values[field] = number
        else:
            values[field] = "" if value is None else str(value)
    spec = DeviceSpec(**values)
    return Devices.add(spec.name, spec, aliases=aliases)


def register_recorded_device(record: Mapping[str, Any]) -> DeviceSpec | None:
    """Register the device a measurement table recorded (its sidecar `device_spec`) under its name.

    Rows measured on another machine (say a CPU this machine is not) then resolve to the device
    they were measured on, not to a spec guessed from their columns. A name the catalog already
    knows keeps its catalog spec; a record without a name is ignored.
    """
    fields = {f.name for f in dataclasses.fields(DeviceSpec)}
    values = {k: v for k, v in record.items() if k in fields}
    name = str(values.get("name") or "").strip()
    if not name:
        return None
    if Devices.resolve(name) is not None:
        return Devices.get(name)
    for key in (*_INT_FIELDS, *_FLOAT_FIELDS):
        if key in values:
            values[key] = _number(key, values[key])
    for key in fields - {*_INT_FIELDS, *_FLOAT_FIELDS}:
        if key in values and values[key] is None:
            values[key] = ""
    return Devices.add(name, DeviceSpec(**values))


# TechPowerUp-style columns (CHRONOS epoch-time tables, PreNeT GPUs.csv) -> DeviceSpec fields.
_ROW_NUMBERS = {
    "SM": "sm_count",
    "Cores": "cuda_cores",
    "TC": "tensor_cores",
    "Boost Clock (MHz)": "boost_clock_mhz",
    "Memory (GB)": "memory_gb",
    "Memory Bus (bit)": "memory_bus_bits",
    "GPU Memory Bandwidth (GB/s)": "memory_bandwidth_gbs",
    "$/hr": "price_per_hr_usd",
}
_ROW_SOURCE = "TechPowerUp-style row"
_ROW_NAME_KEYS = ("gpu_name", "GPU", "name", "device")


def _row_value(row: Mapping[str, Any], key: str) -> Any:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def device_from_row(row: Mapping[str, Any], register: bool = False) -> DeviceSpec:
    """A spec from TechPowerUp-style columns ('SM', 'FP32' GFLOPS, ...) for a GPU not in the catalog.

    'FP32'/'FP16' are TechPowerUp non-tensor rates in GFLOPS (for Turing the 'FP16' column is the
    tensor figure). Tensor peaks are unknown from these columns and set to 0, so `peak_tflops(16)`
    falls back to the FP16/FP32 vector rate. `register=True` also adds it to `Devices`.
    """
    name = next((str(v) for k in _ROW_NAME_KEYS if (v := _row_value(row, k)) is not None), None)
    if name is None:
        raise ChronosError(f"Row has no GPU name column. Known: {', '.join(_ROW_NAME_KEYS)}")
    values: dict[str, Any] = {"name": name.strip()}
    for column, field in _ROW_NUMBERS.items():
        value = _row_value(row, column)
        if value is not None:
            values[field] = _number(field, value)
    for column, field in (("FP32", "peak_fp32_tflops"), ("FP16", "peak_fp16_tflops")):
        value = _row_value(row, column)
        if value is not None:
            values[field] = _number(field, value) / 1000.0
    for column, field in (("Memory Type", "memory_type"), ("Bus", "interface")):
        value = _row_value(row, column)
        if value is not None:
            values[field] = str(value)
    provider = _row_value(row, "Provisioning")
    if "price_per_hr_usd" in values:
        values["price_source"] = f"row $/hr ({provider})" if provider else "row $/hr"
    values["source"] = _ROW_SOURCE
    values["notes"] = "built from table columns; tensor peaks unknown (0)"
    spec = DeviceSpec(**values)
    if not register:
        return spec
    _check_new_name(spec.name)
    return Devices.add(spec.name, spec)


def device_for_row(row: Mapping[str, Any]) -> DeviceSpec:
    """The catalog spec when the row's GPU name is known, else one built by `device_from_row`."""
    name = next((str(v) for k in _ROW_NAME_KEYS if (v := _row_value(row, k)) is not None), None)
    if name is not None and name in Devices:
        return Devices.get(name)
    return device_from_row(row)


# ---------------------------------------------------------------------------------------------- tables


def device_table() -> pd.DataFrame:
    """Every GPU in the catalog (including registered custom ones), one row each, CSV columns."""
    rows = [{column: getattr(spec, column) for column in COLUMNS} for spec in Devices if spec.kind == "gpu"]
    return pd.DataFrame(rows, columns=list(COLUMNS))


_SHOWN = (
    ("name", "name", "s"),
    ("architecture", "arch", "s"),
    ("sm_count", "SMs", "d"),
    ("boost_clock_mhz", "MHz", ".0f"),
    ("peak_fp32_tflops", "FP32", ".1f"),
    ("peak_fp16_tensor_tflops", "FP16-TC", ".1f"),
    ("peak_bf16_tensor_tflops", "BF16-TC", ".1f"),
    ("peak_tf32_tensor_tflops", "TF32-TC", ".1f"),
    ("memory_gb", "GB", ".0f"),
    ("memory_type", "mem", "s"),
    ("memory_bandwidth_gbs", "GB/s", ".0f"),
    ("l2_cache_mb", "L2 MB", ".0f"),
    ("tdp_w", "W", ".0f"),
    ("price_per_hr_usd", "$/hr", ".2f"),
)


def _cell(value: Any, fmt: str) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    if fmt in ("d", "s"):
        return str(value)
    return format(value, fmt)


def format_device_table() -> str:
    """Fixed-width text table of the key GPU columns (TFLOPS dense; tensor 0 = unsupported)."""
    header = [title for _, title, _ in _SHOWN]
    body = [[_cell(getattr(spec, f), fmt) for f, _, fmt in _SHOWN] for spec in Devices if spec.kind == "gpu"]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            cell.ljust(width) if fmt == "s" else cell.rjust(width)
            for cell, width, (_, _, fmt) in zip(cells, widths, _SHOWN, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    footer = (
        "TFLOPS are dense peaks; tensor columns use FP32 accumulate (GeForce: half the FP16-acc rate);"
        " 0 = no such tensor math."
    )
    return "\n".join([line(header), rule, *(line(r) for r in body), "", footer])
