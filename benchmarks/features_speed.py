"""Speed of computational features (FLOPs, bytes, layer inventory) on the meta device.

Target (issue 2): ResNet-50 at batch 256 (ImageNet shape) in under 2 s on this CPU. Reports the
first call in a fresh process (includes building the model and importing torchvision) and warm
calls with a new batch size / precision (the static trace is cached per model and dataset).
Writes results/features_speed.md. Run: python benchmarks/features_speed.py
"""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "results" / "features_speed.md"
CASES = (("ResNet50", "ImageNet"), ("ResNet50", "CIFAR10"), ("VGG16", "CIFAR100"), ("ViT", "CIFAR10"),
         ("DistilBERT", "SST2"), ("LSTM", "IMDB"))  # fmt: skip


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main(repeats: int = 5) -> str:
    t0 = time.perf_counter()
    from chronos_core.features import compute_features

    import_s = time.perf_counter() - t0
    rows = []
    for model, dataset in CASES:
        t0 = time.perf_counter()
        compute_features(model, dataset, 256, 32, "SGD")
        cold = time.perf_counter() - t0
        warm = []
        for i in range(repeats):
            t0 = time.perf_counter()
            compute_features(model, dataset, 256 + i, 16 if i % 2 else 32, "AdamW")
            warm.append(time.perf_counter() - t0)
        rows.append((model, dataset, cold, statistics.median(warm)))
    lines = [
        "# Feature computation speed (meta device, no weights, no compute)",
        "",
        f"CPU: {_cpu_name()}; `chronos_core.features` import: {import_s:.2f} s. Batch 256.",
        "Target: ResNet-50 at batch 256 in under 2 s (first call, fresh process).",
        "",
        "| model | dataset | first call (s) | warm call, other batch/precision (s) | target met |",
        "|---|---|---:|---:|---|",
    ]
    for model, dataset, cold, warm in rows:
        met = ("yes" if cold < 2.0 else "no") if (model, dataset) == ("ResNet50", "ImageNet") else ""
        lines.append(f"| {model} | {dataset} | {cold:.3f} | {warm:.4f} | {met} |")
    text = "\n".join(lines) + "\n"
    OUT.write_text(text)
    return text


if __name__ == "__main__":
    print(main())
