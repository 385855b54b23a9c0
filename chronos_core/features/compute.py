"""Computational features of (model, dataset, batch size, precision, optimizer), before any training.

Conventions (chosen to line up with the CHRONOS epoch-time tables):

* FLOPs: multiply-add = 2, matrix products only (see `chronos_core.features.flops`); forward counted
  on the meta device, backward counted by running autograd on meta (about 2x forward; the first
  layer computes no input gradient). `flops_train_*` = forward + backward.
* param_bytes = 4 * params (fp32 weights, also under AMP, where torch keeps fp32 parameters);
  master_param_bytes = 4 * params under mixed precision (fp16/amp/bf16), 0 in fp32, as in CHRONOS;
  optimizer_state_bytes = params * optimizer.state_bytes_per_param.
* act_bytes_per_sample: sum of the outputs of every leaf-layer call in one forward, at 4 bytes per
  element in fp32 and 2 under fp16/bf16 mixed precision.
* arithmetic_intensity_train = flops_train_per_batch / (total_state_bytes + batch * act_bytes_per_sample):
  FLOPs per byte of a proxy for the bytes one training step touches (weights, gradients-free state,
  activations). arithmetic_intensity_chronos = flops_train_per_sample / (param_bytes + act_bytes_per_sample),
  the formula behind the CHRONOS column of that name.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from chronos_core.catalog.datasets import Datasets, DatasetSpec
from chronos_core.catalog.models import Models, ModelSpec, resolve_model
from chronos_core.catalog.optimizers import Optimizers, OptimizerSpec
from chronos_core.errors import ChronosError
from chronos_core.features.flops import trace_model
from chronos_core.features.inventory import summarize_rows

PROBE_BATCH = 2  # FLOPs and activations are linear in the batch; trace a small one (BatchNorm needs 2)


@dataclass(frozen=True)
class Precision:
    """Training precision: activation bytes per element and whether AMP keeps fp32 master weights."""

    name: str
    act_bytes: int
    amp: bool


_PRECISIONS = {
    "fp32": Precision("fp32", 4, False),
    "fp16": Precision("fp16", 2, True),
    "bf16": Precision("bf16", 2, True),
}
_PRECISION_ALIASES = {
    "32": "fp32", "fp32": "fp32", "float32": "fp32", "single": "fp32", "full": "fp32", "32true": "fp32",
    "16": "fp16", "fp16": "fp16", "float16": "fp16", "half": "fp16", "amp": "fp16", "mixed": "fp16",
    "16mixed": "fp16", "ampfp16": "fp16", "bf16": "bf16", "bfloat16": "bf16", "bf16mixed": "bf16",
    "ampbf16": "bf16",
}  # fmt: skip


def parse_precision(value: int | str | Precision) -> Precision:
    """32/'fp32' -> fp32; 16/'fp16'/'amp' -> fp16 mixed precision; 'bf16' -> bf16 mixed precision."""
    if isinstance(value, Precision):
        return value
    if isinstance(value, (int, np.integer, str)) and not isinstance(value, bool):
        key = "".join(ch for ch in str(value).lower() if ch.isalnum())
        if key in _PRECISION_ALIASES:
            return _PRECISIONS[_PRECISION_ALIASES[key]]
    raise ChronosError(f"Unknown precision {value!r}. Known: 32/'fp32', 16/'fp16'/'amp', 'bf16'")


def parse_batch_size(value: Any) -> int:
    """A positive integer batch size, or ChronosError."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ChronosError(f"batch_size must be a positive integer, got {value!r}")
    return int(value)


def _optimizer(value: str | OptimizerSpec) -> OptimizerSpec:
    if isinstance(value, (str, OptimizerSpec)):
        return Optimizers.get(value)
    raise ChronosError(f"optimizer must be a name or OptimizerSpec, got {type(value).__name__}")


def _dataset(value: str | DatasetSpec) -> DatasetSpec:
    if isinstance(value, (str, DatasetSpec)):
        return Datasets.get(value)
    raise ChronosError(f"dataset must be a name or DatasetSpec, got {type(value).__name__}")


def _exact(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def _torch_static(spec: ModelSpec, dataset: DatasetSpec, kwargs: dict) -> dict:
    """Batch-, precision- and optimizer-independent features of a torch model (per sample)."""
    with torch.device("meta"):
        module = spec.build(dataset, **kwargs)
        example = spec.example_input(dataset, batch_size=PROBE_BATCH, device="meta", **kwargs)
    trace = trace_model(module, example, backward=True)
    b = trace.batch_size
    act_elems = sum(r["output_elems"] for r in trace.rows if r["leaf"])
    return {
        "param_count": trace.param_count,
        "flops_fwd_per_sample": _exact(trace.flops_fwd / b),
        "flops_train_per_sample": _exact(trace.flops_train / b),
        "act_elems_per_sample": _exact(act_elems / b),
        "summary": summarize_rows(trace.rows, b, trace.flops_fwd),
    }


def _build_static(spec: ModelSpec, dataset: DatasetSpec, items: tuple) -> dict:
    if spec.framework == "keras":
        from chronos_core.features.keras_features import keras_static

        return keras_static(spec.build(dataset, **dict(items)))
    return _torch_static(spec, dataset, dict(items))


@functools.lru_cache(maxsize=256)
def _cached_static(spec: ModelSpec, dataset: DatasetSpec, items: tuple) -> dict:
    """A catalog model's static features: in memory, and on disk under the code version (the package's
    code and data and library versions, so a changed builder or tracer never serves stale features)."""
    from chronos_core.pickle_cache import load_or_build
    from chronos_core.prediction_cache import cache_root, code_version, file_digest

    # a user's config.json is keyed by its content (its path may hold another model tomorrow)
    model_file = file_digest(spec.config_path) if getattr(spec, "config_path", "") else ""
    text = repr((spec.name, model_file, dataset, items, code_version()))
    key = hashlib.sha256(text.encode()).hexdigest()[:24]
    path = cache_root() / "features" / f"{key}.pkl"
    return load_or_build(path, lambda: _build_static(spec, dataset, items))


def static_features(spec: ModelSpec, dataset: DatasetSpec, **model_kwargs: Any) -> dict:
    """Per-sample FLOPs, params, activation elements and inventory summary (cached for catalog models)."""
    dataset = spec.dataset(dataset)
    items = tuple(sorted(model_kwargs.items()))
    cacheable = Models.resolve(spec.name) is not None and Models.get(spec.name) is spec
    cacheable = cacheable or getattr(spec, "cache_static", False)  # hf:/timm: specs, one per source
    try:
        hash(items)
    except TypeError:
        cacheable = False
    if cacheable:
        static = _cached_static(spec, dataset, items)
    elif spec.framework == "keras":
        from chronos_core.features.keras_features import keras_static

        static = keras_static(spec.build(dataset, **model_kwargs))
    else:
        static = _torch_static(spec, dataset, model_kwargs)
    return {**static, "summary": dict(static["summary"])}


def assemble_features(static: dict, batch_size: int, precision: Precision, optimizer: OptimizerSpec) -> dict:
    """The feature dict from per-sample static features and the run's batch/precision/optimizer."""
    params = int(static["param_count"])
    param_bytes = 4 * params
    optimizer_bytes = int(round(params * optimizer.state_bytes_per_param))
    master_bytes = 4 * params if precision.amp else 0
    total_state = param_bytes + optimizer_bytes + master_bytes
    act_bytes = _exact(static["act_elems_per_sample"] * precision.act_bytes)
    fwd, train = static["flops_fwd_per_sample"], static["flops_train_per_sample"]
    moved = total_state + batch_size * act_bytes
    features: dict[str, float] = {
        "batch_size": batch_size,
        "param_count": params,
        "flops_fwd_per_sample": fwd,
        "flops_train_per_sample": train,
        "flops_fwd_per_batch": _exact(fwd * batch_size),
        "flops_train_per_batch": _exact(train * batch_size),
        "param_bytes": param_bytes,
        "optimizer_state_bytes": optimizer_bytes,
        "master_param_bytes": master_bytes,
        "total_state_bytes": total_state,
        "act_bytes_per_sample": act_bytes,
        "act_bytes_per_batch": _exact(act_bytes * batch_size),
        "arithmetic_intensity_train": train * batch_size / moved if moved else 0.0,
        "arithmetic_intensity_chronos": train / (param_bytes + act_bytes) if param_bytes + act_bytes else 0.0,
    }
    features.update(static["summary"])
    return features


def compute_features(
    model: str | ModelSpec | Any,
    dataset: str | DatasetSpec,
    batch_size: int,
    precision: int | str = "fp32",
    optimizer: str | OptimizerSpec = "SGD-momentum",
    **model_kwargs: Any,
) -> dict[str, float]:
    """Computational features of one training configuration (no training, no GPU, no weights).

    `model` is a catalog name, a ModelSpec, or a user torch.nn.Module / keras.Model (which must already
    fit `dataset`); `model_kwargs` go to `ModelSpec.build` (e.g. depth=5). See the module docstring
    for units and conventions.
    """
    batch = parse_batch_size(batch_size)
    prec = parse_precision(precision)
    opt = _optimizer(optimizer)
    data = _dataset(dataset)
    spec = resolve_model(model)
    return assemble_features(static_features(spec, data, **model_kwargs), batch, prec, opt)
