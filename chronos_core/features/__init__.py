"""Computational features of a training configuration: FLOPs, bytes, per-layer inventory.

Everything runs on torch's meta device (no memory, no compute); keras models are read from their
layer configs. Import cost is torch only; tensorflow is never imported here.
"""

from chronos_core.features.compute import (
    Precision,
    assemble_features,
    compute_features,
    parse_batch_size,
    parse_precision,
    static_features,
)
from chronos_core.features.flops import LAYER_TYPES, Trace, count_flops, hand_flops, layer_type, trace_model
from chronos_core.features.inventory import layer_config, layer_inventory, summarize_rows
from chronos_core.features.keras_features import keras_layer_inventory, keras_static

__all__ = [
    "LAYER_TYPES",
    "Precision",
    "Trace",
    "assemble_features",
    "compute_features",
    "count_flops",
    "hand_flops",
    "keras_layer_inventory",
    "keras_static",
    "layer_config",
    "layer_inventory",
    "layer_type",
    "parse_batch_size",
    "parse_precision",
    "static_features",
    "summarize_rows",
    "trace_model",
]
