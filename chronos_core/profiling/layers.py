"""Layer microbenchmarks in the spirit of PreNeT: random configurations of single layers, timed.

Each layer type has a random configuration sampler (log-uniform sizes, capped in FLOPs so that a
row costs well under a second on a CPU core), analytic computational features (FLOPs with a
multiply-add counted as 2, parameter / input / output bytes, arithmetic intensity) and two timings:
forward only (under no_grad) and a training step (zero_grad + forward + backward + SGD step).
Each is read on two clocks: wall time (`fwd_ms`, `train_ms`; the device synchronized first) and
this process's CPU time (`fwd_cpu_ms`, `train_cpu_ms`), which for a single-threaded CPU run equals
wall time on an idle core but does not count time the core spent on other processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from chronos_core.errors import ChronosError, unknown_choice
from chronos_core.profiling import LAYER_TYPES
from chronos_core.profiling.environment import capture_environment, resolve_device, synchronize
from chronos_core.profiling.timers import parse_precision

# Integer ranges (inclusive) sampled log-uniformly, per layer type.
RANGES: dict[str, dict[str, tuple[int, int]]] = {
    "conv2d": {
        "batch_size": (1, 64),
        "image_size": (8, 64),
        "in_channels": (1, 128),
        "out_channels": (1, 128),
    },
    "linear": {"batch_size": (1, 512), "in_features": (16, 4096), "out_features": (16, 4096)},
    "embedding": {
        "batch_size": (1, 256),
        "seq_len": (8, 256),
        "num_embeddings": (100, 50000),
        "embedding_dim": (16, 1024),
    },
    "attention": {"batch_size": (1, 32), "seq_len": (8, 256), "head_dim": (8, 64), "num_heads": (1, 12)},
    "layernorm": {"batch_size": (1, 128), "seq_len": (1, 256), "normalized_dim": (16, 2048)},
    "lstm": {
        "batch_size": (1, 64),
        "seq_len": (4, 64),
        "input_size": (8, 512),
        "hidden_size": (8, 512),
        "num_layers": (1, 2),
    },
}
RANGES["gru"] = dict(RANGES["lstm"])
MAX_FLOPS_FWD = 1.0e9  # per-row cap: rejection sampling keeps the CPU sweep short


@dataclass
class LayerTiming:
    """How many times to run each layer: `warmup` untimed, then `repeats` blocks of at least `iters`.

    Blocks of fast layers are lengthened (up to `max_iters`) to last about `min_block_ms`, so
    that timer resolution and scheduler noise do not dominate microsecond-scale layers.
    """

    repeats: int = 3
    warmup: int = 2
    iters: int = 3
    min_block_ms: float = 20.0
    max_iters: int = 200


def _loguniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    if low == high:
        return low
    return int(round(math.exp(rng.uniform(math.log(low), math.log(high + 0.999)) - 0.4999)))


def sample_layer_config(layer_type: str, rng: np.random.Generator, max_flops: float = MAX_FLOPS_FWD) -> dict:
    """One random configuration of `layer_type` whose forward FLOPs stay under `max_flops`."""
    if layer_type not in LAYER_TYPES:
        raise unknown_choice("layer type", layer_type, LAYER_TYPES)
    for _ in range(1000):
        cfg: dict[str, Any] = {"layer_type": layer_type}
        for name, (low, high) in RANGES[layer_type].items():
            cfg[name] = _loguniform_int(rng, low, high)
        if layer_type == "conv2d":
            cfg["kernel_size"] = int(rng.choice([1, 3, 5, 7]))
            cfg["stride"] = int(rng.choice([1, 2]))
            cfg["padding"] = int(rng.choice([0, cfg["kernel_size"] // 2]))
            cfg["bias"] = bool(rng.random() < 0.5)
            if cfg["image_size"] + 2 * cfg["padding"] < cfg["kernel_size"]:
                continue
        elif layer_type == "linear":
            cfg["bias"] = bool(rng.random() < 0.5)
        elif layer_type in ("lstm", "gru"):
            cfg["bidirectional"] = bool(rng.random() < 0.3)
        elif layer_type == "attention":
            cfg["embed_dim"] = cfg["head_dim"] * cfg["num_heads"]
        flops = layer_features(cfg)["flops_fwd"]
        if flops <= max_flops and (layer_type == "embedding" or flops > 0):
            return cfg
    raise ChronosError(f"Could not sample a {layer_type} under {max_flops:g} FLOPs; raise max_flops")


def sample_layer_configs(
    layer_types: tuple[str, ...] | list[str], n_per_type: int, seed: int = 0, max_flops: float = MAX_FLOPS_FWD
) -> list[dict]:
    """`n_per_type` random configurations of each layer type, reproducible from `seed`."""
    out = []
    for layer_type in layer_types:
        digest = int(hashlib.sha1(f"{seed}:{layer_type}".encode()).hexdigest()[:8], 16)
        rng = np.random.default_rng(digest)
        out.extend(sample_layer_config(layer_type, rng, max_flops) for _ in range(n_per_type))
    return out


# ------------------------------------------------------------------------------------------ features


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def layer_features(cfg: dict) -> dict[str, float]:
    """Analytic features of one layer configuration (fp32 bytes; FLOPs count a multiply-add as 2)."""
    t = cfg["layer_type"]
    b = cfg["batch_size"]
    if t == "conv2d":
        k, s, p = cfg["kernel_size"], cfg["stride"], cfg["padding"]
        cin, cout, h = cfg["in_channels"], cfg["out_channels"], cfg["image_size"]
        out = max(0, _conv_out(h, k, s, p))
        params = cout * cin * k * k + (cout if cfg.get("bias", True) else 0)
        flops = 2.0 * b * cout * out * out * cin * k * k
        inputs, outputs = b * cin * h * h, b * cout * out * out
    elif t == "linear":
        fin, fout = cfg["in_features"], cfg["out_features"]
        params = fin * fout + (fout if cfg.get("bias", True) else 0)
        flops = 2.0 * b * fin * fout
        inputs, outputs = b * fin, b * fout
    elif t == "embedding":
        n, d, seq = cfg["num_embeddings"], cfg["embedding_dim"], cfg["seq_len"]
        params, flops = n * d, 0.0
        inputs, outputs = b * seq, b * seq * d
    elif t == "attention":
        e, seq = cfg["embed_dim"], cfg["seq_len"]
        params = 4 * e * e + 4 * e
        flops = 8.0 * b * seq * e * e + 4.0 * b * seq * seq * e  # q,k,v,out projections + QK^T and AV
        inputs, outputs = b * seq * e, b * seq * e
    elif t == "layernorm":
        d, seq = cfg["normalized_dim"], cfg["seq_len"]
        params = 2 * d
        flops = 5.0 * b * seq * d  # mean, variance, normalize, scale, shift
        inputs, outputs = b * seq * d, b * seq * d
    elif t in ("lstm", "gru"):
        gates = 4 if t == "lstm" else 3
        fin, hid, seq, layers = cfg["input_size"], cfg["hidden_size"], cfg["seq_len"], cfg["num_layers"]
        dirs = 2 if cfg.get("bidirectional", False) else 1
        params = flops = 0.0
        for layer in range(layers):
            width = fin if layer == 0 else hid * dirs
            params += dirs * gates * (hid * (width + hid) + 2 * hid)
            flops += dirs * 2.0 * gates * hid * (width + hid) * b * seq
        inputs, outputs = b * seq * fin, b * seq * hid * dirs
    else:
        raise unknown_choice("layer type", t, LAYER_TYPES)
    moved = 4.0 * (params + inputs + outputs)
    train_flops = (
        0.0 if t == "embedding" else 3.0 * flops
    )  # backward ~ 2x forward (grads of inputs and weights)
    return {
        "param_count": float(params),
        "flops_fwd": float(flops),
        "flops_train": float(train_flops),
        "input_elems": float(inputs),
        "output_elems": float(outputs),
        "param_bytes": 4.0 * params,
        "bytes_moved_fwd": moved,
        "arithmetic_intensity_fwd": float(flops) / moved,
    }


# ------------------------------------------------------------------------------------------ timing


def build_layer(cfg: dict, device: str = "cpu", seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """The torch module and a random input batch for one configuration."""
    gen = torch.Generator().manual_seed(seed)
    t, b = cfg["layer_type"], cfg["batch_size"]
    if t == "conv2d":
        module = nn.Conv2d(
            cfg["in_channels"],
            cfg["out_channels"],
            cfg["kernel_size"],
            cfg["stride"],
            cfg["padding"],
            bias=cfg["bias"],
        )
        x = torch.randn(b, cfg["in_channels"], cfg["image_size"], cfg["image_size"], generator=gen)
    elif t == "linear":
        module = nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg["bias"])
        x = torch.randn(b, cfg["in_features"], generator=gen)
    elif t == "embedding":
        module = nn.Embedding(cfg["num_embeddings"], cfg["embedding_dim"])
        x = torch.randint(0, cfg["num_embeddings"], (b, cfg["seq_len"]), generator=gen)
    elif t == "attention":
        module = _SelfAttention(cfg["embed_dim"], cfg["num_heads"])
        x = torch.randn(b, cfg["seq_len"], cfg["embed_dim"], generator=gen)
    elif t == "layernorm":
        module = nn.LayerNorm(cfg["normalized_dim"])
        x = torch.randn(b, cfg["seq_len"], cfg["normalized_dim"], generator=gen)
    elif t in ("lstm", "gru"):
        cls = nn.LSTM if t == "lstm" else nn.GRU
        module = _FirstOutput(
            cls(
                cfg["input_size"],
                cfg["hidden_size"],
                cfg["num_layers"],
                batch_first=True,
                bidirectional=cfg["bidirectional"],
            )
        )
        x = torch.randn(b, cfg["seq_len"], cfg["input_size"], generator=gen)
    else:
        raise unknown_choice("layer type", t, LAYER_TYPES)
    return module.to(device), x.to(device)


class _SelfAttention(nn.Module):
    """nn.MultiheadAttention used as self-attention (batch first), returning only the output."""

    def __init__(self, embed_dim: int, num_heads: int):
        super().__init__()
        self.mha = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mha(x, x, x, need_weights=False)[0]


class _FirstOutput(nn.Module):
    """An RNN returning only its output sequence."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0]


def time_layer(
    cfg: dict, device: str = "cpu", precision: str = "32", timing: LayerTiming | None = None, seed: int = 0
) -> dict[str, Any]:
    """Forward-only and training-step times (ms) of one layer configuration, with their spread."""
    timing = timing or LayerTiming()
    device = resolve_device(device)
    prec = parse_precision(precision)
    kind = device.split(":")[0]
    dtype = getattr(torch, prec.amp_dtype) if prec.amp else None
    torch.manual_seed(seed)
    module, x = build_layer(cfg, device, seed)
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-3)

    def forward() -> None:
        with torch.no_grad(), torch.autocast(device_type=kind, dtype=dtype, enabled=prec.amp):
            module(x)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=kind, dtype=dtype, enabled=prec.amp):
            out = module(x)
        out.float().mean().backward()
        optimizer.step()

    row: dict[str, Any] = {}
    for name, fn in (("fwd_ms", forward), ("train_ms", train_step)):
        for _ in range(max(1, timing.warmup)):
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            one_ms = 1000.0 * (time.perf_counter() - t0)
        iters = int(
            min(timing.max_iters, max(timing.iters, math.ceil(timing.min_block_ms / max(one_ms, 1e-3))))
        )
        wall, cpu = [], []
        for _ in range(timing.repeats):
            synchronize(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(iters):
                fn()
            synchronize(device)
            wall.append(1000.0 * (time.perf_counter() - t0) / iters)
            cpu.append(1000.0 * (time.process_time() - c0) / iters)
        row.update(_spread(name, wall))
        row.update(_spread(name.replace("_ms", "_cpu_ms"), cpu))
        row[f"{name}_iters_per_repeat"] = iters
    row["n_repeats"] = timing.repeats
    return row


def _spread(name: str, means: list[float]) -> dict[str, Any]:
    arr = np.asarray(means)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {
        name: mean,
        f"{name}_median": float(np.median(arr)),
        f"{name}_std": std,
        f"{name}_cv": std / mean if mean > 0 else math.nan,
        f"{name}_repeats_json": json.dumps([round(v, 6) for v in means]),
    }


def benchmark_layer(
    cfg: dict,
    device: str = "cpu",
    precision: str = "32",
    timing: LayerTiming | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """One layer-table row: configuration, features, precision, timings and environment fields."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    prec = parse_precision(precision)
    row: dict[str, Any] = dict(cfg)
    row.update(layer_features(cfg))
    row.update({"precision": prec.bits, "amp": prec.amp, "amp_dtype": prec.amp_dtype})
    row.update(time_layer(cfg, device, precision, timing))
    env = capture_environment(device, threads=torch.get_num_threads())
    row.update(env.row_fields())
    row["peak_fp32_tflops"] = env.device_spec.get("peak_fp32_tflops")
    return row
