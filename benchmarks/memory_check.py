"""Check `chronos_core.features.memory` against torch on this CPU, published figures and known facts.

Writes results/memory/{cpu_check,bytes_per_param,korthikanti,facts,speed}.csv and summary.md.

1. CPU: a real fp32 step of small models (an MLP, ResNet-18 at 32x32, 2-layer GPT-2s) measured with
   saved_tensors_hooks, real parameter/gradient/optimizer-state bytes and torch.profiler's memory
   timeline (profile_memory=True), against the meta-device estimate with exact bytes (block_bytes=1).
2. Bytes per parameter of the states (parameters + gradients + optimizer states + master weights)
   per recipe; ZeRO (Rajbhandari et al. 2020) counts 16 B/param for mixed-precision Adam.
3. Activations per GPT-2 layer against Korthikanti et al. 2022, s*b*h*(34 + 5*a*s/h) bytes in 16
   bit (eager attention; 34 alone with flash attention), measured as A(2 layers) - A(1 layer), for
   HF's GPT-2 as shipped (gelu_new, autocast) and a Megatron-like one (one-kernel GELU, 16-bit model).
4. Known fits / does-not-fit facts.

Run: .venv/bin/python benchmarks/memory_check.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from chronos_core.catalog.models import Models
from chronos_core.features import opgraph as og
from chronos_core.features.memory import GIB, estimate_training_memory, measure_on_cpu

OUT = Path(__file__).resolve().parents[1] / "results" / "memory"
PARTS = ("parameters", "gradients", "optimizer_states", "activations", "step_peak")


def _tiny_gpt2(attn: str, dropout: float = 0.0) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=2, n_embd=128, n_head=4, vocab_size=1000, n_positions=256, resid_pdrop=dropout,
        embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return GPT2LMHeadModel._from_config(config, attn_implementation=attn)


def cpu_check() -> pd.DataFrame:
    torch.manual_seed(0)
    cases = []
    mlp = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 10))
    cases.append(
        ("MLP 512-1024-10", mlp, torch.randn(8, 512), torch.zeros(8, dtype=torch.long), "adam", "sdpa")
    )
    resnet = Models.get("ResNet18").build("CIFAR10")
    x = torch.randn(8, 3, 32, 32)
    cases.append(("ResNet-18 32x32", resnet, x, torch.zeros(8, dtype=torch.long), "sgd", "sdpa"))
    for attn in ("eager", "sdpa"):
        ids = torch.randint(0, 1000, (4, 128))
        batch = {"input_ids": ids, "labels": ids, "use_cache": False}
        cases.append((f"GPT-2 2-layer h128 ({attn})", _tiny_gpt2(attn), batch, None, "adamw", attn))
    rows = []
    for name, module, example, targets, optimizer, attn in cases:
        batch = int(next(og._flat(list(example.values()) if isinstance(example, dict) else example)).shape[0])
        est = estimate_training_memory(
            module, example_input=example, batch_size=batch, optimizer=optimizer, attn_implementation=attn,
            block_bytes=1,
        )  # fmt: skip
        real = measure_on_cpu(module, example, targets, optimizer)
        for part in PARTS:
            got, want = getattr(est, part), real[part]
            rows.append({
                "model": name, "batch": batch, "optimizer": optimizer, "part": part, "estimate_bytes": got,
                "torch_cpu_bytes": want, "rel_error": got / want - 1 if want > 0 else float("nan"),
            })  # fmt: skip
    return pd.DataFrame(rows)


def bytes_per_param() -> pd.DataFrame:
    rows = []
    for precision, recipe in (("fp32", "autocast"), ("amp", "autocast"), ("bf16", "autocast"),
                              ("amp", "master"), ("bf16", "pure")):  # fmt: skip
        for optimizer in ("adamw", "sgd"):
            e = estimate_training_memory(
                "hf:gpt2", batch_size=1, seq_len=128, precision=precision, recipe=recipe, optimizer=optimizer
            )
            n = e.param_count
            rows.append({
                "precision": precision, "recipe": recipe, "optimizer": optimizer,
                "params_B": e.parameters / n, "grads_B": e.gradients / n,
                "optimizer_B": e.optimizer_states / n, "master_B": e.master_weights / n,
                "states_B_per_param": e.state_bytes / n, "weight_copies_B": e.weight_copies / n,
            })  # fmt: skip
    return pd.DataFrame(rows)


def _gpt2_module(name: str, layers: int, attn: str, activation: str | None) -> nn.Module:
    from transformers import AutoConfig, GPT2LMHeadModel

    raw = json.loads((og.HF_CONFIG_DIR / f"{name}.json").read_text())
    fields = {k: v for k, v in raw.items() if not k.startswith("_") and k not in ("torch_dtype", "dtype")}
    fields["n_layer"] = layers
    if activation:
        fields["activation_function"] = activation
    config = AutoConfig.for_model(**fields)
    return og._build_on_meta(lambda: GPT2LMHeadModel._from_config(config, attn_implementation=attn))


def korthikanti(quick: bool) -> pd.DataFrame:
    rows = []
    names = ("gpt2",) if quick else ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
    setups = (("HF GPT-2 (gelu_new), autocast fp16", None, "amp", "autocast"),
              ("Megatron-like (one-kernel GELU), fp16 model", "gelu", "amp", "master"))  # fmt: skip
    for name in names:
        for label, activation, precision, recipe in setups:
            for attn in ("eager", "sdpa"):
                for b, s in ((1, 1024), (4, 1024)) if not quick else ((2, 512),):
                    acts = []
                    for layers in (1, 2):
                        module = _gpt2_module(name, layers, attn, activation)
                        ids = torch.zeros((b, s), dtype=torch.long, device="meta")
                        e = estimate_training_memory(
                            module, example_input={"input_ids": ids, "labels": ids, "use_cache": False},
                            batch_size=b, precision=precision, recipe=recipe, attn_implementation=attn,
                            block_bytes=1,
                        )  # fmt: skip
                        acts.append(e.activations + e.weight_copies)
                    h, a = module.config.n_embd, module.config.n_head
                    paper = s * b * h * (34 + (5 * a * s / h if attn == "eager" else 0))
                    per_layer = acts[1] - acts[0]
                    rows.append({
                        "model": name, "setup": label, "attn": attn, "batch": b, "seq": s, "hidden": h,
                        "heads": a, "ours_MiB_per_layer": per_layer / 2**20,
                        "korthikanti_MiB_per_layer": paper / 2**20, "ratio": per_layer / paper,
                        "ours_sbh_per_layer": per_layer / (s * b * h),
                    })  # fmt: skip
    return pd.DataFrame(rows)


FACTS = (
    # (claim, model, kwargs, gpu GB, expected fits)
    ("GPT-2-XL full fine-tuning, Adam fp32, batch 1 seq 128, 24 GB", "hf:gpt2-xl",
     {"batch_size": 1, "seq_len": 128, "precision": "fp32", "optimizer": "adam"}, 24, False),
    ("GPT-2 small, batch 8 seq 1024, AMP, AdamW, 24 GB", "hf:gpt2",
     {"batch_size": 8, "seq_len": 1024, "precision": "amp"}, 24, True),
    ("ResNet-50 ImageNet, batch 256, AMP, SGD, 80 GB A100", "ResNet50",
     {"batch_size": 256, "dataset": "ImageNet", "precision": "amp", "optimizer": "sgd"}, 80, True),
    ("ResNet-50 ImageNet, batch 256, fp32, SGD, 16 GB", "ResNet50",
     {"batch_size": 256, "dataset": "ImageNet", "precision": "fp32", "optimizer": "sgd"}, 16, False),
    ("ResNet-50 ImageNet, batch 32, fp32, SGD, 16 GB", "ResNet50",
     {"batch_size": 32, "dataset": "ImageNet", "precision": "fp32", "optimizer": "sgd"}, 16, True),
    ("GPT-2-Large batch 8 seq 1024, AMP, AdamW, 80 GB", "hf:gpt2-large",
     {"batch_size": 8, "seq_len": 1024, "precision": "amp"}, 80, True),
)  # fmt: skip


def facts() -> pd.DataFrame:
    rows = []
    for claim, model, kwargs, gb, expected in FACTS:
        e = estimate_training_memory(model, **kwargs)
        rows.append({
            "claim": claim, "gpu_GB": gb, "expected_fits": expected, "predicted_fits": e.fits(gb),
            "peak_GB": round(e.peak_gb, 2), "agrees": e.fits(gb) == expected, "describe": e.describe(),
        })  # fmt: skip
    return pd.DataFrame(rows)


def speed() -> pd.DataFrame:
    from chronos_core.features import memory

    key = og._model_key("hf:gpt2-large")
    t0 = time.perf_counter()
    step = memory._named_step(key, 8, 1024, None, None, {}, "sdpa", True)
    built = time.perf_counter() - t0
    rows = []
    for precision in ("fp32", "amp"):
        t0 = time.perf_counter()
        memory._simulate(step, "hf:gpt2-large", 8, precision, "adamw", "train", "sdpa", "autocast")
        rows.append({"model": "hf:gpt2-large", "batch": 8, "seq": 1024, "precision": precision,
                     "build_s": built, "estimate_s": time.perf_counter() - t0})  # fmt: skip
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="GPT-2 small only in the Korthikanti table")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    tables = {
        "cpu_check": cpu_check(),
        "bytes_per_param": bytes_per_param(),
        "korthikanti": korthikanti(args.quick),
        "facts": facts(),
        "speed": speed(),
    }
    for name, table in tables.items():
        table.to_csv(OUT / f"{name}.csv", index=False)
    cpu = tables["cpu_check"]
    cpu_wide = cpu.pivot_table(index="model", columns="part", values="rel_error", sort=False)[list(PARTS)]
    kor = tables["korthikanti"]
    kor_summary = kor.groupby(["setup", "attn"], sort=False)["ratio"].agg(["min", "median", "max"])
    lines = [
        "# Peak training memory: checks of `chronos_core.features.memory`",
        "",
        "Generated by `benchmarks/memory_check.py`; tables in the csv files next to this one.",
        "",
        "## 1. Against torch on the CPU (real fp32 step, relative error of the meta-device estimate)",
        "",
        "step_peak: the peak of torch.profiler's `Total Allocated` during forward, backward and "
        "optimizer step.",
        "",
        cpu_wide.to_markdown(floatfmt="+.2%"),
        "",
        "## 2. Bytes per parameter of parameters + gradients + optimizer states + master weights (GPT-2)",
        "",
        tables["bytes_per_param"].to_markdown(index=False, floatfmt=".2f"),
        "",
        "ZeRO's 16 B/param for mixed-precision Adam is recipe `master` (fp16 params 2 + grads 2, fp32 "
        "master 4 + m 4 + v 4); torch AMP (`autocast`) also gives 16 (fp32 params 4 + grads 4 + m, v 8) "
        "plus autocast's fp16 weight copies (2 B/param) during forward and backward.",
        "",
        "## 3. Activations per GPT-2 layer / Korthikanti et al. 2022 (s*b*h*(34 + 5as/h), flash: 34)",
        "",
        kor_summary.to_markdown(floatfmt=".2f"),
        "",
        kor.to_markdown(index=False, floatfmt=".3g"),
        "",
        "## 4. Fits / does not fit",
        "",
        tables["facts"].drop(columns=["describe"]).to_markdown(index=False),
        "",
        "## 5. Speed (2 shared CPU cores)",
        "",
        tables["speed"].to_markdown(index=False, floatfmt=".2f"),
        "",
    ]
    (OUT / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"peak GB for reference: 1 GB = {GIB} bytes")


if __name__ == "__main__":
    main()
