"""Per-layer inventory (one row per layer call) and its per-type summary.

The inventory feeds per-layer regressors (PreNeT style): each row carries the layer's coarse type,
parameters, forward FLOPs for the batch given, output shape and its configuration (features,
channels, kernel, stride, heads, hidden size, ...).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
from torch import nn

from chronos_core.features.flops import LAYER_TYPES, trace_model

# Module attributes copied into the inventory when present.
CONFIG_ATTRS = (
    "in_features",
    "out_features",
    "in_channels",
    "out_channels",
    "kernel_size",
    "stride",
    "padding",
    "dilation",
    "groups",
    "embed_dim",
    "num_heads",
    "input_size",
    "hidden_size",
    "num_layers",
    "bidirectional",
    "num_embeddings",
    "embedding_dim",
    "num_features",
    "normalized_shape",
    "num_groups",
    "output_size",
    "p",
)

INVENTORY_COLUMNS = (
    "name",
    "type",
    "layer_type",
    "call",
    "leaf",
    "params",
    "flops_fwd",
    "flops_source",
    "in_total",
    "output_shape",
    "output_elems",
)


def layer_config(module: Any) -> dict[str, Any]:
    """Hyper-parameters of a layer (only those it has), as plain Python values."""
    config = {}
    for attr in CONFIG_ATTRS:
        value = getattr(module, attr, None)
        if value is None or callable(value) or isinstance(value, nn.Module):
            continue
        config[attr] = tuple(value) if isinstance(value, (list, tuple)) else value
    return config


def layer_inventory(model: nn.Module, example_input: Any = None) -> pd.DataFrame:
    """One row per leaf-layer call (attention and RNN layers count as leaves) for `example_input`.

    Columns: name, type (class), layer_type (coarse class), call (0 for a module's first call;
    parameters are counted there only), leaf, params, flops_fwd (whole batch), flops_source
    ('counter' or 'formula'), in_total (counted in the model's FLOP total), output_shape,
    output_elems, then the layer's configuration. Non-leaf modules appear only when they do
    arithmetic themselves or own parameters (ViT's class token, say). Runs on the meta device.
    A keras model gets `keras_layer_inventory(model)` (per sample; `example_input` is not needed).
    """
    from chronos_core.catalog.models import is_keras_model

    if is_keras_model(model):
        from chronos_core.features.keras_features import keras_layer_inventory

        return keras_layer_inventory(model)
    trace = trace_model(model, example_input, backward=False)
    return rows_to_frame(trace.rows)


def rows_to_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """DataFrame of trace rows with the layer configs spread into columns."""
    records = []
    for row in rows:
        record = {key: row[key] for key in INVENTORY_COLUMNS}
        config = row.get("config")
        record.update(config if config is not None else layer_config(row.get("module")))
        records.append(record)
    return pd.DataFrame.from_records(records, columns=None if records else list(INVENTORY_COLUMNS))


def _kernel(row: dict) -> tuple[int, ...]:
    config = row.get("config") or layer_config(row.get("module"))
    kernel = config.get("kernel_size", ())
    return tuple(kernel) if isinstance(kernel, (list, tuple)) else (int(kernel),)


def summarize_rows(rows: Iterable[dict], batch_size: int, flops_fwd_total: int) -> dict[str, float]:
    """Per-type counts and forward FLOPs per sample, and conv FLOP fractions (of all forward FLOPs).

    count_<type>_layers counts layer calls (a ReLU module used three times counts three, as the
    CHRONOS act_layers column does). flops_1x1/3x3 cover ungrouped convs only; depthwise is
    groups == in_channels > 1 and grouped the other convs with groups > 1.
    """
    rows = list(rows)
    summary: dict[str, float] = {}
    for kind in LAYER_TYPES:
        of_kind = [r for r in rows if r["layer_type"] == kind and r["leaf"]]
        summary[f"count_{kind}_layers"] = len(of_kind)
    for kind in LAYER_TYPES:
        flops = sum(r["flops_fwd"] for r in rows if r["layer_type"] == kind)
        per_sample = flops / batch_size
        summary[f"flops_fwd_{kind}_per_sample"] = int(per_sample) if per_sample.is_integer() else per_sample
    buckets = {"1x1": 0, "3x3": 0, "depthwise": 0, "grouped": 0}
    for r in rows:
        if r["layer_type"] != "conv" or not r["in_total"]:
            continue
        config = r.get("config") or layer_config(r.get("module"))
        groups, cin = int(config.get("groups", 1) or 1), int(config.get("in_channels", 0) or 0)
        kernel = _kernel(r)
        if groups > 1:
            buckets["depthwise" if groups == cin else "grouped"] += r["flops_fwd"]
        elif all(k == 1 for k in kernel):
            buckets["1x1"] += r["flops_fwd"]
        elif all(k == 3 for k in kernel):
            buckets["3x3"] += r["flops_fwd"]
    for key, flops in buckets.items():
        summary[f"flops_{key}_frac"] = flops / flops_fwd_total if flops_fwd_total else 0.0
    return summary
