"""Benchmark: `predict-step` on 1,000 rows once the op graphs are cached (goal: under 5 s).

Writes results/kernels/predict_step_speed.md. The kernel model is loaded (or fitted once) and the
graphs traced before the clock starts; the timed part is what a repeated `predict-step` call does.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from chronos_core import _env  # noqa: F401
from chronos_core.predict.kernel_cli import predict_step_frame
from chronos_core.predict.kernel_default import default_kernel_model

OUT = Path(__file__).resolve().parents[1] / "results" / "kernels" / "predict_step_speed.md"
CONFIGS = [
    {"model": "hf:gpt2", "batch_size": 8, "seq_len": 512, "precision": "bf16", "optimizer": "adamw"},
    {
        "model": "hf:bert-base-uncased",
        "batch_size": 32,
        "seq_len": 128,
        "precision": "amp",
        "optimizer": "adamw",
    },
    {
        "model": "ResNet50",
        "batch_size": 64,
        "input_shape": "3x224x224",
        "precision": "amp",
        "optimizer": "sgd",
    },
    {"model": "VGG16", "batch_size": 32, "input_shape": "3x32x32", "precision": "fp32", "optimizer": "sgd"},
    {"model": "timm:vit_base_patch16_224", "batch_size": 32, "precision": "bf16", "optimizer": "adamw"},
]
GPUS = ["T4", "L4", "A10G", "A100-SXM4-80GB", "H100-SXM", "V100-SXM2-16GB", "RTX4090", "L40S"]


def rows(n: int = 1000) -> pd.DataFrame:
    """n predict-step rows cycling over the configurations, GPUs and both modes."""
    out = []
    for i in range(n):
        cfg = dict(CONFIGS[i % len(CONFIGS)])
        cfg["gpu"] = GPUS[(i // len(CONFIGS)) % len(GPUS)]
        cfg["mode"] = "train" if (i // (len(CONFIGS) * len(GPUS))) % 2 == 0 else "inference"
        out.append(cfg)
    return pd.DataFrame(out)


SCALES = tuple(range(1, 26))  # batch-size multiples: 5 models x 8 GPUs x 25 = 1,000 distinct rows


def distinct_rows() -> pd.DataFrame:
    """Every row a different configuration: 5 models x 8 GPUs x 25 batch sizes (train)."""
    out = []
    for scale in SCALES:
        for cfg in CONFIGS:
            for gpu in GPUS:
                out.append({**cfg, "batch_size": cfg["batch_size"] * scale, "gpu": gpu, "mode": "train"})
    return pd.DataFrame(out)


def timed(table: pd.DataFrame, model: object) -> tuple[float, int]:
    predict_step_frame(table.drop_duplicates(["model", "mode", "batch_size"]), model)  # trace every graph
    start = time.perf_counter()
    out = predict_step_frame(table, model)
    return time.perf_counter() - start, int((out["error"] != "").sum())


def main() -> None:
    model = default_kernel_model()
    table, distinct = rows(), distinct_rows()
    seconds, failed = timed(table, model)
    d_seconds, d_failed = timed(distinct, model)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        "# predict-step speed\n\n"
        f"`python benchmarks/predict_step_speed.py`, graphs cached, kernel model loaded:\n\n"
        f"- {len(table)} rows ({len(CONFIGS)} models x {len(GPUS)} GPUs x train/inference; identical "
        f"configurations are priced once): **{seconds:.2f} s** (goal < 5 s), {failed} rows failed.\n"
        f"- {len(distinct)} rows, every one a different configuration ({len(CONFIGS)} models x "
        f"{len(GPUS)} GPUs x {len(SCALES)} batch sizes, {len(CONFIGS) * len(SCALES)} graphs): "
        f"**{d_seconds:.2f} s** (goal < 5 s), {d_seconds / len(distinct) * 1e3:.1f} ms per row; "
        f"{d_failed} rows failed.\n"
    )
    print(OUT.read_text())


if __name__ == "__main__":
    main()
