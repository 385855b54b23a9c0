"""Features of keras models from layer configs and symbolic shapes (no tensorflow import needed here).

Same conventions as the torch path (`chronos_core.features.flops`): a multiply-add is 2 FLOPs and
only Conv/Dense/attention/recurrent matmuls are in the totals. Backward = weight gradient (= forward)
plus input gradient (= forward) for every weighted layer, except layers with no weighted layer
before them, which need no input gradient (as autograd does for the torch twin). A fused activation
(`Conv2D(..., activation="relu")`) appears as its own activation row. Works for Sequential and
functional models (nested models are flattened); subclassed models without symbolic shapes get
parameter counts only.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from chronos_core.features.inventory import rows_to_frame, summarize_rows

_RNN_GATES = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}


def _flatten_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        if getattr(layer, "layers", None) and type(layer).__name__ not in (
            "Bidirectional",
            "TimeDistributed",
        ):
            out.extend(_flatten_layers(layer))
        else:
            out.append(layer)
    return out


def _shape(tensor: Any) -> tuple[int, ...] | None:
    """Per-sample shape of a symbolic tensor (batch dropped), or None if unknown."""
    if isinstance(tensor, (list, tuple)):
        tensor = tensor[0] if tensor else None
    shape = getattr(tensor, "shape", None)
    if shape is None:
        return None
    dims = tuple(shape)[1:]
    return None if any(d is None for d in dims) else tuple(int(d) for d in dims)


def _io_shapes(layer: Any) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    try:
        return _shape(layer.input), _shape(layer.output)
    except (AttributeError, ValueError, RuntimeError):
        return None, None


def keras_layer_type(layer: Any) -> str:
    """Coarse type of a keras layer (same classes as the torch inventory)."""
    name = type(layer).__name__
    if "Conv" in name:
        return "conv"
    if name in ("Dense", "EinsumDense"):
        return "linear"
    if "Attention" in name:
        return "attention"
    if name in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM2D"):
        return "rnn"
    if "Normalization" in name:
        return "norm"
    if name == "Embedding":
        return "embedding"
    if "Pooling" in name:
        return "pool"
    if name in ("Activation", "ReLU", "Softmax", "LeakyReLU", "PReLU", "ELU"):
        return "activation"
    return "other"


def _config(layer: Any, in_shape: tuple[int, ...] | None, out_shape: tuple[int, ...] | None) -> dict:
    cfg: dict[str, Any] = {}
    get = layer.get_config() if hasattr(layer, "get_config") else {}
    if "kernel_size" in get:
        cfg["kernel_size"] = tuple(get["kernel_size"])
        cfg["stride"] = tuple(get.get("strides", ()))
        cfg["padding"] = get.get("padding")
        cfg["groups"] = int(get.get("groups", 1) or 1)
        if in_shape:
            cfg["in_channels"] = in_shape[-1]
        if type(layer).__name__.startswith("Depthwise"):
            cfg["groups"] = in_shape[-1] if in_shape else 1
        if out_shape:
            cfg["out_channels"] = out_shape[-1]
    if "units" in get:
        if keras_layer_type(layer) == "rnn":
            cfg["hidden_size"] = get["units"]
            if in_shape:
                cfg["input_size"] = in_shape[-1]
        else:
            cfg["out_features"] = get["units"]
            if in_shape:
                cfg["in_features"] = in_shape[-1]
    if "pool_size" in get:
        cfg["kernel_size"] = tuple(get["pool_size"])
    for src, dst in (("num_heads", "num_heads"), ("key_dim", "head_dim"), ("input_dim", "num_embeddings")):
        if src in get:
            cfg[dst] = get[src]
    if "output_dim" in get:
        cfg["embedding_dim"] = get["output_dim"]
    if "rate" in get:
        cfg["p"] = get["rate"]
    return cfg


def _rnn_flops(layer: Any, in_shape: tuple[int, ...]) -> int:
    name = type(layer).__name__
    if name == "Bidirectional":
        return 2 * _rnn_flops(layer.forward_layer, in_shape)
    gates = _RNN_GATES.get(name, 1)
    units = int(layer.units)
    steps, features = in_shape[0], in_shape[-1]
    return 2 * gates * units * (features + units) * steps


def keras_layer_flops(layer: Any, in_shape: tuple[int, ...] | None, out_shape: tuple[int, ...] | None) -> int:
    """Forward FLOPs of one keras layer for one sample (matmul layers; elementwise for the rest)."""
    if in_shape is None or out_shape is None:
        return 0
    name = type(layer).__name__
    kind = keras_layer_type(layer)
    out_elems = math.prod(out_shape)
    if kind == "conv" and name != "ConvLSTM2D":
        k = math.prod(layer.kernel_size)
        cin = in_shape[-1]
        if name.startswith("Depthwise"):
            return 2 * k * out_elems
        if name.startswith("Separable"):
            spatial = math.prod(out_shape[:-1])
            mid = cin * int(layer.depth_multiplier)
            return 2 * k * mid * spatial + 2 * mid * out_shape[-1] * spatial
        if "Transpose" in name:
            return 2 * math.prod(in_shape) * int(layer.filters) * k // int(getattr(layer, "groups", 1) or 1)
        return 2 * k * (cin // int(getattr(layer, "groups", 1) or 1)) * out_elems
    if name == "Dense":
        return 2 * in_shape[-1] * out_elems
    if name == "EinsumDense":
        return 2 * math.prod(layer.kernel.shape) * math.prod(in_shape[:-1])  # '...d,de->...e'-style
    if kind == "rnn":
        return _rnn_flops(layer, in_shape)
    if name == "MultiHeadAttention":
        length, dim = in_shape[0], in_shape[-1]
        heads, kd = int(layer.num_heads), int(layer.key_dim)
        vd = int(layer.value_dim or kd)
        proj = 2 * length * dim * heads * (2 * kd + vd) + 2 * length * heads * vd * out_shape[-1]
        return proj + 2 * heads * length * length * (kd + vd)
    if kind == "norm":
        return 4 * out_elems
    if kind == "activation":
        return out_elems
    if kind == "pool":
        if name.startswith("Global"):
            return math.prod(in_shape)
        return math.prod(layer.pool_size) * out_elems
    return 0


def keras_rows(model: Any) -> list[dict]:
    """Inventory rows (per sample) of a keras model, in layer order."""
    rows: list[dict] = []
    weighted_before = False
    for layer in _flatten_layers(model):
        name = type(layer).__name__
        if name == "InputLayer":
            continue
        in_shape, out_shape = _io_shapes(layer)
        kind = keras_layer_type(layer)
        flops = keras_layer_flops(layer, in_shape, out_shape)
        in_total = kind in ("conv", "linear", "attention", "rnn") or (kind == "other" and flops > 0)
        has_weights = bool(getattr(layer, "trainable_weights", []))
        out_elems = math.prod(out_shape) if out_shape else 0
        rows.append(
            {
                "name": layer.name,
                "type": name,
                "layer_type": kind,
                "call": 0,
                "leaf": True,
                "params": int(layer.count_params()) if getattr(layer, "built", False) else 0,
                "flops_fwd": int(flops),
                "flops_source": "formula",
                "in_total": in_total,
                "output_shape": out_shape or (),
                "output_elems": out_elems,
                "config": _config(layer, in_shape, out_shape),
                "needs_input_grad": weighted_before,
            }
        )
        activation = getattr(layer, "activation", None)
        act_name = getattr(activation, "__name__", "linear")
        if kind != "activation" and activation is not None and act_name != "linear":
            rows.append(
                {
                    **rows[-1],
                    "name": f"{layer.name}.{act_name}",
                    "type": f"{act_name} (fused)",
                    "layer_type": "activation",
                    "params": 0,
                    "flops_fwd": out_elems,
                    "in_total": False,
                    "config": {},
                }
            )
        weighted_before = weighted_before or has_weights
    return rows


def keras_layer_inventory(model: Any) -> pd.DataFrame:
    """One row per keras layer (plus fused activations); FLOPs and output sizes are per sample."""
    return rows_to_frame(keras_rows(model))


def keras_static(model: Any) -> dict:
    """Per-sample features of a keras model, in the form `compute.assemble_features` expects."""
    rows = keras_rows(model)
    fwd = sum(r["flops_fwd"] for r in rows if r["in_total"])
    bwd = 0
    for r in rows:
        if r["in_total"] and r["params"]:
            bwd += r["flops_fwd"] * (2 if r["needs_input_grad"] else 1)
        elif r["in_total"] and r["needs_input_grad"]:
            bwd += r["flops_fwd"]
    return {
        "param_count": int(model.count_params()),
        "flops_fwd_per_sample": fwd,
        "flops_train_per_sample": fwd + bwd,
        "act_elems_per_sample": sum(r["output_elems"] for r in rows),
        "summary": summarize_rows(rows, 1, fwd),
    }
