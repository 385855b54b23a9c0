"""The op graph of one training step of any torch model, traced on the meta device.

`trace_step(model, ...)` runs one step (forward + loss, autograd's backward, the optimizer's step)
with shape-only meta tensors under a `TorchDispatchMode` (the level torch's FlopCounterMode works
at) and returns one row per aten op that launches a kernel: family, shapes, dtype, FLOPs, bytes.
No GPU, no weights, no memory. Models: an `nn.Module`, a zoo name (`chronos_core.catalog.models`),
`"timm:NAME"`, `"hf:NAME"` (a config shipped in `chronos_core/catalog/hf_configs/`) or the path of
any Hugging Face `config.json`. GPT-2, BERT, OPT, Llama, Qwen2, Mistral and T5 configs are built by
`native_hf` (transformers' classes copied op for op, tested row for row against them), so tracing
them does not import transformers; every other architecture is built by transformers itself.

Conventions:

* Rows are ops that launch a kernel. Views, `_unsafe_view`, `detach`, allocations (`empty*`),
  in-place metadata changes and ops on CPU tensors (the optimizer's step counters) are not rows.
* gemm rows: B batch count (1 for mm), M output rows, N output cols, K reduction dim, read off the
  dispatched operands. For `y = x @ W.T` (nn.Linear, x [b, in]) the forward mm/addmm has
  (M, N, K) = (b, out, in), the input gradient (b, in, out) and the weight gradient (out, in, b).
  FLOPs 2*B*M*N*K. conv rows: `convolution_backward` gives one row per computed gradient, aten
  `aten.convolution_backward.default[grad_input]`, `[grad_weight]` (conv family, each the FLOPs of
  the forward conv, groups included) and `[grad_bias]` (a reduction). attention rows (fused sdpa
  kernels): B batch*heads, M query length, N key length, K head dim; FLOPs as FlopCounterMode
  counts them (forward 4*B*M*N*K, backward 2.5x that: the scores are recomputed), causal masking
  or not; a call with `is_causal=True` has `[causal]` appended to its aten name.
* norm/softmax rows: `rows` normalized rows, `cols` the normalized size, `elems` = rows*cols (batch
  norm: rows = channels, cols = N*H*W; group norm: rows = N*groups). FLOPs per element:
  NORM_FLOPS_PER_ELEM / SOFTMAX_FLOPS_PER_ELEM (forward, backward); the loss's nll pieces 1 per row.
* elementwise: FLOPs = output elements (1 per element, foreach ops: all their tensors' elements);
  reduction: 1 per input element (pools too); memory and other: 0.
* bytes: every tensor input read once and every output (or in-place target) written once; broadcast
  (stride-0) dims are read once; gathers (embedding, index, nll_loss) read only the gathered rows.
* foreach ops (the optimizer, `foreach=True`) are one row per call with `tensors` = list length;
  the optimizer is traced at its second step (state already created), as in steady training.
* `attn_implementation="sdpa"`: calls of `F.scaled_dot_product_attention` run the kernel a CUDA
  GPU would pick (flash for fp16/bf16 without a mask, memory-efficient otherwise); on meta torch
  would decompose them into bmm + softmax, which is what `"eager"` keeps (HF models also get the
  choice as their `attn_implementation`). Training dropout is CUDA's one fused `native_dropout`.
* The step: `model.train()`, forward and loss (HF: its own loss from `labels = input_ids`, T5 also
  gets `decoder_input_ids`; [batch, classes] outputs: cross-entropy on int64 targets; other outputs:
  their mean), backward, optimizer (SGD momentum 0.9, Adam, AdamW wd 0.01, all `foreach=True`).
  "inference": `model.eval()` and one forward under no_grad. `.item()` on meta returns True/1/1.0,
  the ordinary branch of data checks such as HF's packed-sequence test.
* Defaults: batch DEFAULT_BATCH; HF sequence: the dataset's if one is given, else DEFAULT_SEQ_LEN
  capped at the model's positions; zoo models are sized for `dataset` (their default: CIFAR10 / SST2); timm
  models take their pretrained_cfg input size and the dataset's class count.

Precision policy. CUDA autocast does not fire for meta tensors (its casts only touch tensors of
its own device) and CPU autocast does not either, so "amp" (fp16) and "bf16" replay autocast's op
lists with a `TorchFunctionMode` above autograd, so casts and their backward are traced like
autocast's: matmul-class ops (linear, conv, matmul, mm/bmm/addmm/baddbmm, einsum, sdpa, ...) cast
fp32 inputs to the low dtype (parameters once per forward, as autocast's cast cache does); norms,
losses, exp/log/pow, upsampling etc. run in fp32; softmax/log_softmax/sum/cumsum/prod run with an
fp32 output (softmax as one half-to-float kernel); addcmul/index_put/... promote to the widest
input. The op names come from torch's AutocastCUDA registrations. Parameters, gradients and the
optimizer stay fp32. "amp" adds GradScaler's kernels (loss scaling, the foreach unscale/inf check,
the scale update); "bf16" has no scaler. "tf32" traces fp32 and labels gemm/conv/attention "tf32".

Speed: torch's meta kernels are mostly Python, so where no other dispatch mode listens the tracer
skips them for in-place ops (shapes cannot change) and reuses output metadata for repeated calls
with identical argument metadata (a transformer's layers); the rows are identical either way.
Results are cached per configuration for string models (in memory and under
`$CHRONOS_CACHE_DIR/opgraph/`, default `~/.cache/chronos/opgraph/`, keyed by the configuration, the
library versions and this file's source); modules passed in are traced every time.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.metadata
import json
import math
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FunctionType
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _len_torch_dispatch_stack
from torch.utils.flop_counter import conv_flop_count, sdpa_backward_flop_count, sdpa_flop_count

from chronos_core.catalog.datasets import Datasets
from chronos_core.catalog.models import Models
from chronos_core.errors import ChronosError, first_line, unknown_choice
from chronos_core.features import native_hf

COLUMNS = (
    "phase", "aten", "family", "B", "M", "N", "K", "elems", "rows", "cols", "in_channels",
    "out_channels", "kernel_size", "input_size", "stride", "padding", "groups", "dtype", "flops",
    "bytes", "tensors", "count",
)  # fmt: skip
FAMILIES = ("gemm", "conv", "attention", "elementwise", "norm", "softmax", "reduction", "memory", "other")
MATMUL_FAMILIES = ("gemm", "conv", "attention")
PHASES = ("forward", "backward", "optimizer")
PRECISIONS = ("fp32", "tf32", "amp", "bf16")
OPTIMIZERS = ("none", "sgd", "adam", "adamw")
MODES = ("train", "inference")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa")
DEFAULT_BATCH = 32
DEFAULT_SEQ_LEN = 512  # HF models, capped at the model's max positions
NORM_FLOPS_PER_ELEM = (5, 8)  # (forward, backward): mean, variance, normalize, affine
SOFTMAX_FLOPS_PER_ELEM = (5, 4)  # forward: max, sub, exp, sum, div; backward: mul, sum, sub, mul
HF_CONFIG_DIR = Path(__file__).resolve().parents[1] / "catalog" / "hf_configs"
AMP_LOSS_SCALE = 65536.0

_NAN = float("nan")
_NUMERIC = COLUMNS[3:17]
_INT_COLUMNS = ("elems", "flops", "bytes", "tensors", "count")


# --------------------------------------------------------------------------------------------------
# Public API


def trace_step(
    model: nn.Module | str,
    example_input: Any = None,
    *,
    batch_size: int | None = None,
    seq_len: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
    mode: str = "train",
    attn_implementation: str = "sdpa",
    dataset: str | None = None,
) -> pd.DataFrame:
    """One row per kernel-launching aten op of one training (or inference) step; see module docs.

    `model` is an nn.Module (with `example_input`, or `input_shape` and `batch_size`), a zoo name
    (sized for `dataset`), `"timm:NAME"`, `"hf:NAME"` or a path to a Hugging Face config.json.
    """
    precision = _choice("precision", precision, PRECISIONS)
    optimizer = _choice("optimizer", optimizer, OPTIMIZERS)
    mode = _choice("mode", mode, MODES)
    attn_implementation = _choice("attn_implementation", attn_implementation, ATTN_IMPLEMENTATIONS)
    batch_size = _positive("batch_size", batch_size)
    seq_len = _positive("seq_len", seq_len)
    if input_shape is not None:
        input_shape = tuple(_positive("input_shape entry", int(d)) for d in input_shape)
    if mode == "inference":
        optimizer = "none"
    options = (precision, optimizer, mode, attn_implementation)
    if isinstance(model, str):
        if example_input is not None:
            raise ChronosError(
                "example_input is for nn.Module models; size a named model with batch_size etc."
            )
        key = _model_key(model)
        if dataset is not None:
            dataset = Datasets.get(dataset).name
        shape = (batch_size or DEFAULT_BATCH, seq_len, input_shape, dataset)
        return _cached_trace(key, shape, options).copy()
    if not isinstance(model, nn.Module):
        raise ChronosError(
            f"model must be an nn.Module, a zoo name, 'timm:NAME', 'hf:NAME' or a config.json path; "
            f"got {type(model).__name__}"
        )
    step = _module_step(model, example_input, batch_size, seq_len, input_shape, attn_implementation, mode)
    return _run_step(step, *options)


def group_ops(df: pd.DataFrame) -> pd.DataFrame:
    """Merge rows that are the same kernel (same phase, op, shapes, dtype): count/flops/bytes summed."""
    keys = [c for c in COLUMNS if c not in ("flops", "bytes", "count")]
    grouped = df.groupby(keys, dropna=False, sort=False, as_index=False)[["flops", "bytes", "count"]].sum()
    return grouped[list(COLUMNS)]


def summarize(df: pd.DataFrame) -> dict[str, float]:
    """Totals of a traced step: kernels, FLOPs and bytes, overall and per phase, plus matmul FLOPs."""
    out: dict[str, float] = {
        "kernels": int(df["count"].sum()),
        "flops": int(df["flops"].sum()),
        "bytes": int(df["bytes"].sum()),
        "flops_matmul": int(df.loc[df["family"].isin(MATMUL_FAMILIES), "flops"].sum()),
    }
    for phase in PHASES:
        part = df[df["phase"] == phase]
        out[f"kernels_{phase}"] = int(part["count"].sum())
        out[f"flops_{phase}"] = int(part["flops"].sum())
        out[f"bytes_{phase}"] = int(part["bytes"].sum())
    return out


def shipped_hf_configs() -> list[str]:
    """Names usable as `"hf:NAME"`: the config.json files in chronos_core/catalog/hf_configs/."""
    return sorted(p.stem for p in HF_CONFIG_DIR.glob("*.json"))


def clear_cache(disk: bool = False) -> None:
    """Forget the in-memory cache (and with `disk=True` the files under the opgraph cache dir)."""
    _cached_trace.cache_clear()
    if disk and cache_dir().is_dir():
        for path in cache_dir().glob("*.pkl"):
            path.unlink(missing_ok=True)


def cache_dir() -> Path:
    """Where traced steps are stored: $CHRONOS_CACHE_DIR/opgraph (default ~/.cache/chronos/opgraph)."""
    return Path(os.environ.get("CHRONOS_CACHE_DIR", "~/.cache/chronos")).expanduser() / "opgraph"


# --------------------------------------------------------------------------------------------------
# Validation


def _choice(kind: str, value: Any, known: tuple[str, ...]) -> str:
    if isinstance(value, str) and value.lower() in known:
        return value.lower()
    raise unknown_choice(kind, value, known)


def _positive(kind: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ChronosError(f"{kind} must be a positive integer, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------------
# Op classification

_aten = torch.ops.aten
_SKIP = frozenset({
    "detach", "alias", "_unsafe_view", "empty", "empty_like", "empty_strided", "new_empty",
    "new_empty_strided", "lift_fresh", "_local_scalar_dense", "set_", "resize_", "resize_as_",
    "_reshape_alias", "sym_size", "sym_stride", "sym_numel", "sym_storage_offset", "is_same_size",
    "_assert_async", "_assert_tensor_metadata", "_functional_assert_async", "_make_dep_token",
    "_conj", "_neg_view", "resolve_conj", "resolve_neg", "_efficientzerotensor", "record_stream",
    "_has_compatible_shallow_copy_type", "_propagate_xla_data", "_amp_update_scale_bookkeeping",
})  # fmt: skip
_GEMM = frozenset({"mm", "addmm", "bmm", "baddbmm", "addbmm", "mv", "addmv", "dot", "vdot", "addr",
                   "_addmm_activation", "_scaled_mm", "_int_mm"})  # fmt: skip
_CONV = frozenset({"convolution", "_convolution", "convolution_overrideable", "cudnn_convolution",
                   "cudnn_convolution_transpose"})  # fmt: skip
_ATTENTION = frozenset({
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_cudnn_attention_backward",
})  # fmt: skip
_NORM = frozenset({
    "native_layer_norm", "native_layer_norm_backward", "native_batch_norm", "native_batch_norm_backward",
    "_native_batch_norm_legit", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit_functional",
    "_batch_norm_with_update", "_batch_norm_no_update", "batch_norm_backward", "cudnn_batch_norm",
    "cudnn_batch_norm_backward", "native_group_norm", "native_group_norm_backward", "_fused_rms_norm",
    "_fused_rms_norm_backward",
})  # fmt: skip
_SOFTMAX = frozenset({
    "_softmax", "_log_softmax", "_safe_softmax", "_softmax_backward_data", "_log_softmax_backward_data",
    "nll_loss_forward", "nll_loss_backward", "nll_loss2d_forward", "nll_loss2d_backward",
})  # fmt: skip
_MEMORY = frozenset({
    "copy_", "clone", "_to_copy", "cat", "stack", "index", "_unsafe_index", "index_select", "gather",
    "scatter", "scatter_", "scatter_add", "scatter_add_", "scatter_reduce", "index_put", "index_put_",
    "_index_put_impl_", "index_add", "index_add_", "index_copy", "index_copy_", "embedding",
    "embedding_dense_backward", "embedding_backward", "_embedding_bag", "_embedding_bag_backward",
    "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "roll", "repeat", "flip", "narrow_copy", "slice_backward",
    "select_backward", "unfold_backward", "as_strided_scatter", "slice_scatter", "select_scatter",
    "diagonal_scatter", "diagonal_backward", "im2col", "col2im", "masked_scatter", "masked_select",
    "take", "lift_fresh_copy", "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
    "_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d",
    "upsample_nearest1d_backward", "upsample_nearest2d_backward", "upsample_nearest3d_backward",
    "repeat_interleave", "index_fill", "index_fill_", "tril_indices", "triu_indices", "nonzero",
    "expand_copy", "permute_copy", "transpose_copy", "view_copy", "t_copy", "unsqueeze_copy",
    "split_with_sizes_copy",
})  # fmt: skip
_ELEMENTWISE = frozenset({
    "native_dropout", "native_dropout_backward", "bernoulli", "bernoulli_", "rand", "randn", "randint",
    "rand_like", "randn_like", "normal", "normal_", "uniform_", "zeros", "zeros_like", "ones", "ones_like",
    "full", "full_like", "fill_", "zero_", "new_zeros", "new_ones", "new_full", "scalar_tensor", "arange",
    "tril", "triu", "masked_fill", "masked_fill_", "_amp_foreach_non_finite_check_and_unscale_",
    "_amp_update_scale_", "linspace", "logspace", "eye",
})  # fmt: skip
_REDUCTION = frozenset({
    "max_pool1d", "max_pool2d_with_indices", "max_pool3d_with_indices", "max_pool2d_with_indices_backward",
    "max_pool3d_with_indices_backward", "avg_pool1d", "avg_pool2d", "avg_pool3d", "avg_pool2d_backward",
    "avg_pool3d_backward", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "_adaptive_avg_pool2d_backward",
    "_adaptive_avg_pool3d_backward", "adaptive_max_pool2d", "adaptive_max_pool2d_backward",
    "adaptive_max_pool3d", "adaptive_max_pool3d_backward", "cumsum", "cumprod", "logcumsumexp", "topk",
    "sort", "var_mean", "std_mean", "_cdist_forward", "_pdist_forward",
})  # fmt: skip
_GATHER_TABLE = {"embedding": 0, "index": 0, "_unsafe_index": 0, "index_select": 0, "gather": 0, "take": 0,
                 "nll_loss_forward": 0, "nll_loss2d_forward": 0}  # fmt: skip
_NOT_READ = {"nll_loss_backward": (1,), "nll_loss2d_backward": (1,), "embedding_dense_backward": ()}
_WRITE_ONLY = frozenset({"copy_", "fill_", "zero_", "normal_", "uniform_", "bernoulli_", "random_",
                         "exponential_", "geometric_", "log_normal_", "cauchy_"})  # fmt: skip
_DTYPE_NAMES = {
    torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64",
    torch.int64: "int64", torch.int32: "int32", torch.int16: "int16", torch.int8: "int8",
    torch.uint8: "uint8", torch.bool: "bool", torch.complex64: "complex64",
}  # fmt: skip


@dataclass(frozen=True)
class _OpInfo:
    """What the recorder needs to know about an op overload, computed once."""

    skip: bool
    family: str
    name: str
    aten: str
    foreach: bool
    returns_alias: tuple[bool, ...]
    written_args: tuple[int, ...]
    shape_only: str  # "inplace": returns its first argument (or nothing); "memo": fresh outputs; ""
    causal_arg: int = -1  # fused attention: position of `is_causal` in the schema (-1: none)


@functools.cache
def _op_info(func: torch._ops.OpOverload) -> _OpInfo:
    name = func.__name__.split(".")[0]
    namespace = func.namespace
    tags = func.tags
    skip = (
        namespace != "aten"
        or name in _SKIP
        or func.is_view
        or torch.Tag.inplace_view in tags
        or name.startswith("sym_")
    )
    if name in _GEMM:
        family = "gemm"
    elif name in _CONV or name == "convolution_backward":
        family = "conv"
    elif name in _ATTENTION:
        family = "attention"
    elif name in _NORM:
        family = "norm"
    elif name in _SOFTMAX:
        family = "softmax"
    elif name in _MEMORY:
        family = "memory"
    elif name in _ELEMENTWISE or name.startswith(_FOREACH):
        family = "elementwise"
    elif name in _REDUCTION or torch.Tag.reduction in tags:
        family = "reduction"
    elif torch.Tag.pointwise in tags:
        family = "elementwise"
    else:
        family = "other"
    schema = func._schema
    returns_alias = tuple(r.alias_info is not None for r in schema.returns)
    written = tuple(
        i for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write
    )
    shape_only = ""
    if (skip and name not in ("_unsafe_view", "empty", "empty_like", "new_empty")) or name in _NO_MEMO:
        shape_only = ""
    elif torch.Tag.inplace in tags and written == (0,) and returns_alias in ((), (True,)):
        shape_only = "inplace"
    elif not written and not any(returns_alias) and not (set(tags) & _DYNAMIC_TAGS):
        shape_only = "memo"
    names = [a.name for a in func._schema.arguments] if family == "attention" else []
    return _OpInfo(
        skip, family, name, f"aten.{func.__name__}", name.startswith(_FOREACH), returns_alias, written,
        shape_only, names.index("is_causal") if "is_causal" in names else -1,
    )  # fmt: skip


_FOREACH = ("_foreach_", "_amp_foreach_")
_NO_MEMO = frozenset({"_local_scalar_dense", "item", "lift_fresh", "lift_fresh_copy", "resize_", "set_"})
_DYNAMIC_TAGS = frozenset({torch.Tag.dynamic_output_shape, torch.Tag.data_dependent_output})
_MEMO: dict[tuple, Any] = {}
_MEMO_LIMIT = 200_000


def _signature(obj: Any) -> Any:
    """A hashable description of an op argument: tensors by metadata, other values as they are."""
    if isinstance(obj, torch.Tensor):
        if not obj.is_meta:
            raise TypeError("not meta")
        return (tuple(obj.shape), obj.stride(), obj.dtype)
    if isinstance(obj, (list, tuple)):
        return tuple(_signature(x) for x in obj)
    if isinstance(obj, dict):
        return tuple((k, _signature(v)) for k, v in obj.items())
    hash(obj)
    return obj


def _template(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return _TensorTemplate(tuple(obj.shape), obj.stride(), obj.dtype)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_template(x) for x in obj)
    return obj


def _rebuild(template: Any) -> Any:
    if isinstance(template, _TensorTemplate):
        return torch.empty_strided(template.shape, template.stride, dtype=template.dtype, device="meta")
    if isinstance(template, (list, tuple)):
        return type(template)(_rebuild(x) for x in template)
    return template


@dataclass(frozen=True)
class _TensorTemplate:
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype


def _run_meta(func: torch._ops.OpOverload, info: _OpInfo, args: tuple, kwargs: dict) -> Any:
    """Run an op on meta tensors, skipping what only checks shapes: in-place ops return their target
    unchanged, and out-of-place ops reuse the outputs' metadata from an earlier call with the same
    argument metadata (torch's meta kernels are Python and dominate the tracing time)."""
    if info.shape_only == "inplace":
        target = args[0] if args else None
        if isinstance(target, torch.Tensor) and target.is_meta:
            return target if info.returns_alias else None
        if (
            isinstance(target, (list, tuple))
            and target
            and all(isinstance(t, torch.Tensor) and t.is_meta for t in target)
        ):
            return None
    elif info.shape_only == "memo":
        try:
            key = (func, _signature(args), _signature(kwargs))
        except TypeError:
            return func(*args, **kwargs)
        template = _MEMO.get(key)
        if template is None:
            out = func(*args, **kwargs)
            if len(_MEMO) > _MEMO_LIMIT:
                _MEMO.clear()
            _MEMO[key] = _template(out)
            return out
        return _rebuild(template)
    return func(*args, **kwargs)


def _flat(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _flat(item)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.dtype.itemsize


def _read_bytes(t: torch.Tensor) -> int:
    """Bytes of the distinct elements a tensor view covers (broadcast dims read once)."""
    n = 1
    for size, stride in zip(t.shape, t.stride(), strict=True):
        if size == 0:
            return 0
        if stride != 0:
            n *= size
    return n * t.dtype.itemsize


def _dtype_name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES.get(dtype) or str(dtype).removeprefix("torch.")


def _prod(shape: Any) -> int:
    return math.prod(int(s) for s in shape)


class _Recorder(TorchDispatchMode):
    """Records one row per kernel-launching aten op on meta tensors, in the current `phase`."""

    def __init__(self, tf32: bool = False) -> None:
        super().__init__()
        self.phase = "forward"
        self.recording = True
        self.tf32 = tf32
        self.rows: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is _aten._local_scalar_dense.default and args[0].is_meta:
            return _meta_scalar(args[0].dtype)  # .item() on meta: the common case (see _meta_scalar)
        info = _op_info(func)
        if _len_torch_dispatch_stack() == 0:  # no other mode below listens: shortcuts are safe
            out = _run_meta(func, info, args, kwargs)
        else:
            out = func(*args, **kwargs)
        if self.recording and not info.skip:
            self._record(info, args, kwargs, out)
        return out

    # One row per op; conv backward gives one row per computed gradient.
    def _record(self, info: _OpInfo, args: tuple, kwargs: dict, out: Any) -> None:
        inputs = [*_flat(args), *_flat(tuple(kwargs.values()))]
        outputs = list(_flat(out))
        if not any(t.is_meta for t in inputs) and not any(t.is_meta for t in outputs):
            return  # CPU-side work (optimizer step counters, python scalars): no device kernel
        name = info.name
        if name == "convolution_backward":
            self._conv_backward(info, args, list(out))
            return
        fresh = [
            t for t, alias in zip(outputs, _pad(info.returns_alias, len(outputs)), strict=True) if not alias
        ]
        written = [t for i in info.written_args if i < len(args) for t in _flat(args[i])]
        read = 0
        table = _GATHER_TABLE.get(name)
        skip_read = _NOT_READ.get(name, ())
        written_ids = {id(t) for t in written} if name in _WRITE_ONLY else set()
        for i, arg in enumerate(args):
            if i in skip_read:
                continue
            for t in _flat(arg):
                if i == table:
                    read += self._gathered_bytes(name, t, args, outputs)
                elif id(t) not in written_ids:
                    read += _read_bytes(t)
        for value in kwargs.values():
            for t in _flat(value):
                read += _read_bytes(t)
        moved = read + sum(_nbytes(t) for t in fresh) + sum(_nbytes(t) for t in written)
        family = info.family
        main = fresh[0] if fresh else (written[0] if written else (inputs[0] if inputs else None))
        row = dict.fromkeys(_NUMERIC, _NAN)
        tensors = 1
        if info.foreach:
            first = list(_flat(args[0])) if args else []
            tensors = max(len(first), 1)
            elems = sum(t.numel() for t in first)
            dtype = first[0].dtype if first else torch.float32
        else:
            elems = main.numel() if main is not None else 0
            dtype = main.dtype if main is not None else torch.float32
        flops = 0
        if family == "gemm":
            flops, dtype = self._gemm(name, args, row), _first_float(inputs, dtype)
        elif family == "conv":
            flops, dtype = self._conv(args, outputs[0], row), _first_float(inputs, dtype)
        elif family == "attention":
            flops, dtype = self._attention(name, args, row), _first_float(inputs, dtype)
            elems = outputs[0].numel()
        elif family in ("norm", "softmax"):
            rows, cols, flops = _normalized(name, args)
            row["rows"], row["cols"] = rows, cols
            elems = rows * cols
            if family == "norm":
                dtype = _first_float(inputs, dtype)
        elif family == "elementwise":
            flops = elems
        elif family == "reduction":
            flops = inputs[0].numel() if inputs else elems
        if name in ("_to_copy", "copy_") and inputs and main is not None:
            source = args[1] if name == "copy_" else args[0]
            family = "elementwise" if source.dtype != main.dtype else "memory"
            flops = elems if family == "elementwise" else 0
        label = _dtype_name(dtype)
        if self.tf32 and label == "fp32" and family in MATMUL_FAMILIES:
            label = "tf32"
        aten = info.aten
        if family == "attention" and _is_causal(info, args, kwargs):
            aten = f"{aten}[causal]"
        self.rows.append(_row(self.phase, aten, family, row, elems, label, flops, moved, tensors))

    @staticmethod
    def _gathered_bytes(name: str, table: torch.Tensor, args: tuple, outputs: list) -> int:
        if name.startswith("nll_loss"):
            target = args[1]
            return max(target.numel(), 1) * table.dtype.itemsize
        return sum(_nbytes(t) for t in outputs[:1])

    @staticmethod
    def _gemm(name: str, args: tuple, row: dict) -> int:
        if name in ("mm", "_scaled_mm", "_int_mm"):
            a, b = args[0], args[1]
            batch, m, k, n = 1, a.shape[0], a.shape[1], b.shape[1]
        elif name in ("addmm", "_addmm_activation"):
            a, b = args[1], args[2]
            batch, m, k, n = 1, a.shape[0], a.shape[1], b.shape[1]
        elif name == "bmm":
            a, b = args[0], args[1]
            batch, m, k, n = a.shape[0], a.shape[1], a.shape[2], b.shape[2]
        elif name in ("baddbmm", "addbmm"):
            a, b = args[1], args[2]
            batch, m, k, n = a.shape[0], a.shape[1], a.shape[2], b.shape[2]
        elif name == "mv":
            batch, m, k, n = 1, args[0].shape[0], args[0].shape[1], 1
        elif name == "addmv":
            batch, m, k, n = 1, args[1].shape[0], args[1].shape[1], 1
        elif name in ("dot", "vdot"):
            batch, m, k, n = 1, 1, args[0].shape[0], 1
        else:  # addr: outer product
            batch, m, k, n = 1, args[1].shape[0], 1, args[2].shape[0]
        row.update(B=batch, M=m, N=n, K=k)
        return 2 * int(batch) * int(m) * int(n) * int(k)

    @staticmethod
    def _conv_columns(x: torch.Tensor, w: torch.Tensor, args: tuple, offset: int, row: dict) -> None:
        stride, padding, _dilation, transposed = args[offset : offset + 4]
        groups = int(args[offset + 5])
        row["in_channels"] = int(x.shape[1])
        row["out_channels"] = int(w.shape[1]) * groups if transposed else int(w.shape[0])
        row["kernel_size"] = int(w.shape[2]) if w.dim() > 2 else 1
        row["input_size"] = int(x.shape[2]) if x.dim() > 2 else 1
        row["stride"] = int(stride[0]) if len(stride) else 1
        row["padding"] = int(padding[0]) if len(padding) else 0
        row["groups"] = groups

    def _conv(self, args: tuple, out: torch.Tensor, row: dict) -> int:
        x, w = args[0], args[1]
        self._conv_columns(x, w, args, 3, row)
        return conv_flop_count(list(x.shape), list(w.shape), list(out.shape), transposed=bool(args[6]))

    def _conv_backward(self, info: _OpInfo, args: tuple, outputs: list) -> None:
        grad_out, x, w = args[0], args[1], args[2]
        mask = args[10] if len(args) > 10 else (True, True, True)
        columns = dict.fromkeys(_NUMERIC, _NAN)
        self._conv_columns(x, w, args, 4, columns)
        forward = conv_flop_count(
            list(x.shape), list(w.shape), list(grad_out.shape), transposed=bool(args[7])
        )
        label = _dtype_name(x.dtype)
        if self.tf32 and label == "fp32":
            label = "tf32"
        grads = list(args[:3])
        for index, (part, partner) in enumerate((("grad_input", w), ("grad_weight", x))):
            if not mask[index] or not isinstance(outputs[index], torch.Tensor):
                continue
            result = outputs[index]
            moved = _read_bytes(grad_out) + _read_bytes(partner) + _nbytes(result)
            aten = f"{info.aten}[{part}]"
            self.rows.append(
                _row(self.phase, aten, "conv", dict(columns), result.numel(), label, forward, moved, 1)
            )
        if len(mask) > 2 and mask[2] and isinstance(outputs[2], torch.Tensor):
            bias = outputs[2]
            moved = _read_bytes(grads[0]) + _nbytes(bias)
            empty = dict.fromkeys(_NUMERIC, _NAN)
            self.rows.append(
                _row(self.phase, f"{info.aten}[grad_bias]", "reduction", empty, bias.numel(),
                     _dtype_name(bias.dtype), grad_out.numel(), moved, 1)
            )  # fmt: skip

    @staticmethod
    def _attention(name: str, args: tuple, row: dict) -> int:
        if name.endswith("_backward"):
            grad_out, q, k, v = args[0], args[1], args[2], args[3]
            flops = sdpa_backward_flop_count(grad_out.shape, q.shape, k.shape, v.shape)
        else:
            q, k, v = args[0], args[1], args[2]
            flops = sdpa_flop_count(q.shape, k.shape, v.shape)
        row.update(
            B=int(q.shape[0]) * int(q.shape[1]), M=int(q.shape[2]), N=int(k.shape[2]), K=int(q.shape[3])
        )
        return int(flops)


def _is_causal(info: _OpInfo, args: tuple, kwargs: dict) -> bool:
    """Whether a fused attention call masks causally (its kernel skips the blocks above the diagonal)."""
    if "is_causal" in kwargs:
        return bool(kwargs["is_causal"])
    return 0 <= info.causal_arg < len(args) and bool(args[info.causal_arg])


def _pad(flags: tuple[bool, ...], n: int) -> tuple[bool, ...]:
    return (flags + (False,) * n)[:n]


def _meta_scalar(dtype: torch.dtype) -> bool | int | float:
    """What `.item()` returns on meta: True, 1 or 1.0. Models branch on data (HF checks that position
    ids are not packed with `(...).all()`); True takes their ordinary path."""
    if dtype == torch.bool:
        return True
    return 1.0 if dtype.is_floating_point else 1


def _first_float(tensors: list[torch.Tensor], default: torch.dtype) -> torch.dtype:
    return next((t.dtype for t in tensors if t.is_floating_point()), default)


def _normalized(name: str, args: tuple) -> tuple[int, int, int]:
    """(rows, cols, flops) of a norm/softmax/nll op."""
    backward = name.endswith("_backward") or name.endswith("_backward_data")
    if "layer_norm" in name or "rms_norm" in name:
        x = args[1] if backward else args[0]
        cols = _prod(args[2] if backward else args[1])
        rows = x.numel() // max(cols, 1)
    elif "group_norm" in name:
        x = args[1] if backward else args[0]
        n, c, hw, groups = (args[5], args[6], args[7], args[8]) if backward else args[3:7]
        rows, cols = int(n) * int(groups), int(c) // int(groups) * int(hw)
    elif "batch_norm" in name:
        x = args[1] if backward else args[0]
        rows = int(x.shape[1]) if x.dim() > 1 else 1
        cols = x.numel() // max(rows, 1)
    elif name.startswith("nll_loss"):
        x = args[1] if backward else args[0]
        cols = int(x.shape[1]) if x.dim() > 1 else int(x.shape[0])
        rows = x.numel() // max(cols, 1)
        return rows, cols, rows
    else:  # softmax family: (self|grad, [output,] dim, ...)
        x = args[0]
        dim = args[2] if backward else args[1]
        cols = int(x.shape[dim]) if x.dim() else 1
        rows = x.numel() // max(cols, 1)
        per = SOFTMAX_FLOPS_PER_ELEM[1 if backward else 0]
        return rows, cols, per * rows * cols
    per = NORM_FLOPS_PER_ELEM[1 if backward else 0]
    return rows, cols, per * rows * cols


def _row(phase, aten, family, numeric, elems, dtype, flops, moved, tensors) -> tuple:  # noqa: ANN001
    values = [numeric[c] for c in _NUMERIC]
    values[_NUMERIC.index("elems")] = int(elems)
    return (phase, aten, family, *values, dtype, int(flops), int(moved), int(tensors), 1)


def _frame(rows: list[tuple]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    for column in _NUMERIC:
        if column != "elems":
            df[column] = df[column].astype("float64")
    for column in _INT_COLUMNS:
        df[column] = df[column].astype("int64")
    return df


# --------------------------------------------------------------------------------------------------
# Autocast policy and the fused attention kernels (Python level, above autograd)

# Op names of torch's AutocastCUDA registrations, by cast policy (aten/src/ATen/autocast_mode.cpp).
AUTOCAST_LOWER = frozenset({
    "linear", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "convolution", "_convolution", "prelu", "addmm", "addmv", "addr", "matmul",
    "__matmul__", "__rmatmul__", "einsum", "mm", "mv", "linalg_vecdot", "addbmm", "baddbmm", "bmm",
    "chain_matmul", "linalg_multi_dot", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell",
    "scaled_dot_product_attention", "_scaled_dot_product_flash_attention", "_thnn_fused_lstm_cell",
    "_thnn_fused_gru_cell", "_cudnn_rnn", "cudnn_convolution", "cudnn_convolution_transpose", "lstm",
    "gru", "rnn_tanh", "rnn_relu",
})  # fmt: skip
AUTOCAST_FP32 = frozenset({
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal",
    "rsqrt", "sinh", "tan", "pow", "__pow__", "__rpow__", "softplus", "layer_norm", "native_layer_norm",
    "group_norm", "rms_norm", "frobenius_norm", "nuclear_norm", "cosine_similarity", "poisson_nll_loss",
    "cosine_embedding_loss", "nll_loss", "nll_loss2d", "hinge_embedding_loss", "kl_div", "l1_loss",
    "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss",
    "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits",
    "dist", "pdist", "cdist", "renorm", "logsumexp", "norm", "linalg_vector_norm", "linalg_matrix_norm",
    "interpolate", "upsample", "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d",
    "upsample_linear1d", "upsample_bilinear2d", "upsample_trilinear3d", "upsample_bicubic2d",
    "cross_entropy", "cross_entropy_loss", "_upsample_bicubic2d_aa", "_upsample_bilinear2d_aa",
    "_upsample_nearest_exact1d", "_upsample_nearest_exact2d", "_upsample_nearest_exact3d",
    "linalg_matrix_sqrth",
})  # fmt: skip
AUTOCAST_BANNED = frozenset({"binary_cross_entropy"})  # autocast raises: use the *_with_logits form
AUTOCAST_FP32_OUTPUT = frozenset({"softmax", "log_softmax", "sum", "prod", "cumsum", "cumprod"})
AUTOCAST_PROMOTE = frozenset({"addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "vdot",
                              "grid_sampler", "index_put", "tensordot", "scatter_add"})  # fmt: skip
_SEE_THROUGH = frozenset({"multi_head_attention_forward"})  # python-level F functions with matmuls inside
_LOW = (torch.float16, torch.bfloat16)


class _StepPolicy(TorchFunctionMode):
    """Autocast's per-op dtype policy (when `low` is set) and fused sdpa kernels (when `fused_sdpa`)."""

    def __init__(self, low: torch.dtype | None, fused_sdpa: bool) -> None:
        super().__init__()
        self.low = low
        self.fused_sdpa = fused_sdpa
        self.cast_cache: dict[int, torch.Tensor] = {}
        self._clones: dict[Any, Callable] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if self.low is not None:
            if name in AUTOCAST_LOWER:
                args, kwargs = self._cast(args, kwargs, self.low)
            elif name in AUTOCAST_FP32:
                if name.startswith("cross_entropy"):
                    return self._cross_entropy(func, args, kwargs)
                args, kwargs = self._cast(args, kwargs, torch.float32, only=_LOW)
            elif name in AUTOCAST_FP32_OUTPUT:
                return self._fp32_output(func, name, args, kwargs)
            elif name in AUTOCAST_BANNED:
                raise ChronosError(
                    f"{name} is unsafe under autocast (torch raises too); use {name}_with_logits"
                )
            elif name in AUTOCAST_PROMOTE:
                widest = max((t.dtype for t in _flat((args, kwargs.values())) if _castable(t)),
                             key=lambda d: d.itemsize, default=None)  # fmt: skip
                if widest is not None:
                    args, kwargs = self._cast(args, kwargs, widest)
        if name == "dropout":
            return _dropout(func, args, kwargs)
        if self.fused_sdpa and name == "scaled_dot_product_attention":
            return _fused_sdpa(*args, **kwargs)
        if name in _SEE_THROUGH and isinstance(func, FunctionType):
            with self:
                return self._clone(func)(*args, **kwargs)
        return func(*args, **kwargs)

    def _cast_one(self, t: Any, dtype: torch.dtype, only: tuple | None) -> Any:
        if not isinstance(t, torch.Tensor) or not _castable(t) or t.dtype == dtype:
            return t
        if only is not None and t.dtype not in only:
            return t
        if t.is_leaf and t.requires_grad:  # autocast caches casts of parameters per forward
            cached = self.cast_cache.get(id(t))
            if cached is None or cached.dtype != dtype:
                cached = self.cast_cache[id(t)] = t.to(dtype)
            return cached
        return t.to(dtype)

    def _cast(self, args: tuple, kwargs: dict, dtype: torch.dtype, only: tuple | None = None) -> tuple:
        def cast(obj: Any) -> Any:
            if isinstance(obj, (list, tuple)):
                return type(obj)(cast(x) for x in obj)
            return self._cast_one(obj, dtype, only)

        return cast(tuple(args)), {k: cast(v) for k, v in kwargs.items()}

    def _fp32_output(self, func: Callable, name: str, args: tuple, kwargs: dict) -> Any:
        """Autocast's fp32_set_opt_dtype: an fp32 result from one kernel when no dtype is given."""
        x = args[0] if args else None
        if not isinstance(x, torch.Tensor) or x.dtype not in _LOW or kwargs.get("dtype") is not None:
            return func(*args, **kwargs)
        if name in ("softmax", "log_softmax"):
            dim = args[1] if len(args) > 1 else kwargs.get("dim")
            if dim is None or len(args) > 3:
                return func(*self._cast(args, kwargs, torch.float32)[0], **kwargs)
            return _softmax_fp32(x, dim, log=name == "log_softmax")
        return func(*args, **{**kwargs, "dtype": torch.float32})

    def _cross_entropy(self, func: Callable, args: tuple, kwargs: dict) -> Any:
        """cross_entropy = log_softmax (one half-to-float kernel under autocast) + nll_loss."""
        names = ("input", "target", "weight", "size_average", "ignore_index", "reduce", "reduction")
        bound = dict(zip(names, args, strict=False)) | kwargs
        x, target = bound.get("input"), bound.get("target")
        simple = (
            isinstance(x, torch.Tensor)
            and x.dim() == 2
            and x.dtype in _LOW
            and isinstance(target, torch.Tensor)
            and target.dtype == torch.long
            and not bound.get("label_smoothing")
            and bound.get("size_average") is None
            and bound.get("reduce") is None
        )
        if not simple:
            args, kwargs = self._cast(args, kwargs, torch.float32, only=_LOW)
            return func(*args, **kwargs)
        weight = bound.get("weight")
        return F.nll_loss(
            _softmax_fp32(x, 1, log=True),
            target,
            weight.float() if isinstance(weight, torch.Tensor) else None,
            ignore_index=bound.get("ignore_index", -100),
            reduction=bound.get("reduction", "mean"),
        )

    def _clone(self, func: FunctionType) -> Callable:
        """`func` with its torch-function check switched off, so its inner calls reach this mode."""
        clone = self._clones.get(func)
        if clone is None:
            scope = dict(func.__globals__)
            for check in ("has_torch_function", "has_torch_function_unary", "has_torch_function_variadic"):
                scope[check] = _never
            clone = FunctionType(func.__code__, scope, func.__name__, func.__defaults__, func.__closure__)
            clone.__kwdefaults__ = func.__kwdefaults__
            self._clones[func] = clone
        return clone


def _softmax_fp32(x: torch.Tensor, dim: int, log: bool) -> torch.Tensor:
    """softmax with an fp32 result as CUDA runs it: one half-to-float kernel for fp16, a cast then
    an fp32 softmax for bf16 (CUDA's half_to_float path takes fp16 only)."""
    kernel = torch._log_softmax if log else torch._softmax
    if x.dtype == torch.float16:
        return kernel(x, dim, True)
    return kernel(x.float(), dim, False)


def _dropout(func: Callable, args: tuple, kwargs: dict) -> Any:
    """Out-of-place training dropout as the one fused kernel CUDA runs (`native_dropout`); on meta
    torch would run its unfused bernoulli/div/mul form."""
    x = args[0] if args else kwargs.get("input")
    p = args[1] if len(args) > 1 else kwargs.get("p", 0.5)
    train = args[2] if len(args) > 2 else kwargs.get("training", kwargs.get("train", True))
    inplace = args[3] if len(args) > 3 else kwargs.get("inplace", False)
    if isinstance(x, torch.Tensor) and train and not inplace and 0 < p < 1 and x.numel() > 0:
        return torch.native_dropout(x, p, True)[0]
    return func(*args, **kwargs)


def _never(*_args: Any) -> bool:
    return False


def _castable(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.dtype != torch.float64


def _fused_sdpa(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """The fused kernel a CUDA GPU (sm80+) would pick: flash for fp16/bf16 without a mask, else
    memory-efficient (grouped-query k/v repeated for it, as torch does)."""
    if query.dim() != 4 or key.dim() != 4:
        return F.scaled_dot_product_attention(
            query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa
        )
    if attn_mask is None and query.dtype in _LOW and query.shape[-1] <= 256:
        return torch.ops.aten._scaled_dot_product_flash_attention(
            query, key, value, dropout_p, is_causal, False, scale=scale
        )[0]
    heads, kv_heads = query.shape[1], key.shape[1]
    if kv_heads != heads:
        key = key.repeat_interleave(heads // kv_heads, dim=1)
        value = value.repeat_interleave(heads // kv_heads, dim=1)
    bias = attn_mask
    if bias is not None:
        if bias.dtype == torch.bool:
            bias = torch.where(bias, 0.0, float("-inf")).to(query.dtype)
        elif bias.dtype != query.dtype:
            bias = bias.to(query.dtype)
        while bias.dim() < 4:
            bias = bias.unsqueeze(0)
        bias = bias.expand(query.shape[0], heads, query.shape[2], key.shape[2])
    grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    return torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, bias, grad, dropout_p, is_causal, scale=scale
    )[0]


# --------------------------------------------------------------------------------------------------
# One step


@dataclass
class Step:
    """A model ready to trace: a forward callable on meta inputs, its meta parameters, a loss."""

    module: nn.Module
    forward: Callable[[], Any]
    params: list[torch.Tensor]
    targets: torch.Tensor | None = None
    hf: bool = False
    restore: list[Callable[[], None]] = field(default_factory=list)

    def reset(self, training: dict[nn.Module, bool]) -> None:
        """Undo what tracing or simulating the step changed: train/eval flags (`training`: each
        module's flag before), the meta gradients, and the step's own patches (`restore`)."""
        for m, flag in training.items():
            m.training = flag
        for p in self.params:
            p.grad = None
        for undo in self.restore:
            undo()


def loss_of(output: Any, targets: torch.Tensor | None) -> torch.Tensor:
    """The training loss: HF's own `.loss`; cross-entropy for [batch, classes] logits; else the mean."""
    loss = getattr(output, "loss", None)
    if isinstance(loss, torch.Tensor):
        return loss
    if isinstance(output, dict):
        output = list(output.values())
    tensor = next((t for t in _flat(output) if t.is_floating_point()), None)
    if tensor is None:
        raise ChronosError("the model's output has no floating-point tensor to take a loss of")
    if tensor.dim() == 2 and targets is not None and tensor.shape[0] == targets.shape[0]:
        return F.cross_entropy(tensor, targets)
    return tensor.mean()


def _run_step(step: Step, precision: str, optimizer: str, mode: str, attn: str) -> pd.DataFrame:
    frame = _trace_rows(step, precision, optimizer, mode, attn)
    # what data parallelism all-reduces: the trainable parameters (frame.attrs survive copy and pickle)
    frame.attrs["parameters"] = int(sum(p.numel() for p in step.params if p.requires_grad))
    if step.hf:  # what tensor parallelism splits: a transformer's width, depth and heads
        config = step.module.config
        for attr, names in _HF_SHAPE.items():
            value = next(
                (getattr(config, n) for n in names if isinstance(getattr(config, n, None), int)), None
            )
            if value:
                frame.attrs[attr] = int(value)
    return frame


_HF_SHAPE = {
    "hidden_size": ("hidden_size", "n_embd", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads"),
}


def _trace_rows(step: Step, precision: str, optimizer: str, mode: str, attn: str) -> pd.DataFrame:
    recorder = _Recorder(tf32=precision == "tf32")
    low = {"amp": torch.float16, "bf16": torch.bfloat16}.get(precision)
    policy = _StepPolicy(low, attn == "sdpa")
    module = step.module
    training = {m: m.training for m in module.modules()}
    try:
        if mode == "inference":
            module.eval()
            with torch.no_grad(), recorder, policy:
                step.forward()
            return _frame(recorder.rows)
        module.train()
        scaler = _GradScaler() if precision == "amp" else None
        with recorder:
            with policy:
                loss = loss_of(step.forward(), step.targets)
            if scaler is not None:
                loss = scaler.scale(loss)
            recorder.phase = "backward"
            loss.backward()
        if optimizer != "none":
            opt = _optimizer(optimizer, step.params)
            with recorder:  # the first step creates the state; trace the second, as in steady training
                recorder.recording = False
                opt.step()
            recorder.recording = True
            with recorder:
                recorder.phase = "optimizer"
                if scaler is not None:
                    scaler.unscale(step.params)
                opt.step()
                if scaler is not None:
                    scaler.update()
        return _frame(recorder.rows)
    except ChronosError:
        raise
    except Exception as error:
        raise ChronosError(
            f"tracing {type(module).__name__} failed: {type(error).__name__}: {error}"
        ) from None
    finally:
        step.reset(training)


def _optimizer(name: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    trainable = [p for p in params if p.requires_grad and p.grad is not None]
    if name == "sgd":
        return torch.optim.SGD(trainable, lr=0.01, momentum=0.9, foreach=True)
    if name == "adam":
        return torch.optim.Adam(trainable, lr=1e-3, foreach=True)
    return torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.01, foreach=True)


class _GradScaler:
    """The kernels of torch.amp.GradScaler on meta: scale the loss, unscale and inf-check the gradients
    (one foreach kernel), update the scale. Its persistent state is made before tracing."""

    def __init__(self) -> None:
        self.scale_tensor = torch.full((), AMP_LOSS_SCALE, device="meta")
        self.growth_tracker = torch.zeros((), dtype=torch.int32, device="meta")
        self.found_inf = torch.zeros((), device="meta")

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale_tensor

    def unscale(self, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params if p.grad is not None]
        inv_scale = self.scale_tensor.double().reciprocal().float()
        self.found_inf = torch.full((), 0.0, device="meta")
        torch._amp_foreach_non_finite_check_and_unscale_(grads, self.found_inf, inv_scale)

    def update(self) -> None:
        torch._amp_update_scale_(self.scale_tensor, self.growth_tracker, self.found_inf, 2.0, 0.5, 2000)


# --------------------------------------------------------------------------------------------------
# Building models on meta


class _SkipInit(TorchDispatchMode):
    """Skips in-place initialisation ops on meta tensors while a model is built (they change nothing)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if torch.Tag.inplace in func.tags and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def _build_on_meta(builder: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"), _SkipInit():
        return builder()


def _meta_tensor(t: torch.Tensor) -> torch.Tensor:
    if t.is_meta:
        return t
    return torch.empty(t.shape, dtype=t.dtype, device="meta")


def _to_meta(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return _meta_tensor(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_meta(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _to_meta(v) for k, v in obj.items()}
    return obj


def _call(fn: Callable, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return fn(**inputs)
    if isinstance(inputs, (list, tuple)):
        return fn(*inputs)
    return fn(inputs)


def _is_hf(module: nn.Module) -> bool:
    """A Hugging Face model, or native_hf's twin of one (fed and read the same way)."""
    return isinstance(module, native_hf.NativeModel) or any(
        c.__name__ == "PreTrainedModel" for c in type(module).__mro__
    )


def _hf_inputs(module: nn.Module, batch: int, seq_len: int | None, train: bool = True) -> dict:
    config = module.config
    length = seq_len or min(DEFAULT_SEQ_LEN, _max_positions(config))
    ids = torch.zeros((batch, length), dtype=torch.long, device="meta")
    inputs: dict[str, Any] = {"input_ids": ids, "use_cache": False}
    if getattr(config, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = ids.clone()
    if train:
        inputs["labels"] = ids
    return inputs


def _max_positions(config: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_SEQ_LEN


def _module_step(
    model: nn.Module,
    example_input: Any,
    batch_size: int | None,
    seq_len: int | None,
    input_shape: tuple[int, ...] | None,
    attn: str,
    mode: str = "train",
) -> Step:
    """A Step for a user module (its weights untouched: real modules run with meta parameters)."""
    tensors = list(model.parameters()) + list(model.buffers())
    restore: list[Callable[[], None]] = []
    if all(t.is_meta for t in tensors):
        runner: Callable = model
        params = list(model.parameters())
    else:
        state = {n: _meta_tensor(p).requires_grad_(p.requires_grad) for n, p in model.named_parameters()}
        buffers = {n: _meta_tensor(b) for n, b in model.named_buffers()}
        params = list(state.values())

        def runner(*args: Any, **kwargs: Any) -> Any:
            return torch.func.functional_call(model, {**state, **buffers}, args, kwargs)

    hf = _is_hf(model)
    if hf:
        config = model.config
        previous = getattr(config, "_attn_implementation", None)
        config._attn_implementation = attn
        restore.append(lambda: setattr(config, "_attn_implementation", previous))
    if example_input is not None:
        inputs = _to_meta(example_input)
    elif hf:
        inputs = _hf_inputs(model, batch_size or DEFAULT_BATCH, seq_len, train=mode == "train")
    elif input_shape is not None and batch_size is not None:
        inputs = torch.empty((batch_size, *input_shape), device="meta")
    else:
        raise ChronosError("an nn.Module needs example_input, or input_shape and batch_size")
    first = next(_flat(list(inputs.values()) if isinstance(inputs, dict) else inputs), None)
    batch = int(first.shape[0]) if first is not None and first.dim() else 1
    targets = torch.zeros(batch, dtype=torch.long, device="meta")
    return Step(model, lambda: _call(runner, inputs), params, targets, hf, restore)


def _model_key(model: str) -> tuple[str, str, str]:
    """(kind, name, content hash) of a string model; raises ChronosError for unknown names/paths."""
    text = model.strip()
    if text.lower().startswith("timm:"):
        name = text[5:].strip()
        if not name:
            raise ChronosError("timm model name missing: use 'timm:NAME', e.g. 'timm:resnet50'")
        return "timm", name, ""
    if text.lower().startswith("hf:"):
        name = text[3:].strip()
        path = HF_CONFIG_DIR / f"{name}.json"
        if path.is_file():
            return "hf", name, _file_hash(path)
        if not _looks_like_path(name):
            raise unknown_choice("hf config", name, shipped_hf_configs())
        text = name
    if _looks_like_path(text):
        path = Path(text).expanduser()
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ChronosError(f"HF config {text!r} not found (expected a config.json or a folder with one)")
        return "config", str(path.resolve()), _file_hash(path)
    canonical = Models.resolve(text)
    if canonical is None:
        known = [*Models.names(), *(f"hf:{n}" for n in shipped_hf_configs()), "timm:NAME", "PATH/config.json"]
        raise unknown_choice("model", model, known, limit=60)
    return "zoo", canonical, ""


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.endswith(".json") or Path(text).expanduser().exists()


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def _read_hf_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ChronosError(f"HF config {str(path)!r} is not readable JSON: {error}") from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise ChronosError(f"HF config {str(path)!r} has no 'model_type'")
    return raw


def _load_hf_config(path: Path, attn: str) -> Any:
    from transformers import AutoConfig

    raw = _read_hf_json(path)
    fields = {k: v for k, v in raw.items() if not k.startswith("_") and k not in ("torch_dtype", "dtype")}
    try:
        config = AutoConfig.for_model(**fields)
    except (ValueError, KeyError) as error:
        raise ChronosError(f"HF config {str(path)!r}: {error}") from None
    config._attn_implementation = attn
    return config


def _hf_model_class(config: Any) -> Any:
    """The class to build: config.architectures[0] when transformers has it, else by architecture kind."""
    import transformers
    from transformers.models.auto import modeling_auto as auto

    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls
    kind = config.model_type
    if getattr(config, "is_encoder_decoder", False):
        return transformers.AutoModelForSeq2SeqLM
    masked = kind in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    if masked and not getattr(config, "is_decoder", False):
        return transformers.AutoModelForMaskedLM
    if kind in auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def _build_hf(path: Path, attn: str) -> nn.Module:
    """The model of a config.json on meta: rebuilt natively where `native_hf` copies the architecture
    (the same trace, without transformers' import), else by transformers."""
    raw = _read_hf_json(path)
    try:
        native = native_hf.build(raw, attn)
        return native if native is not None else _build_transformers(path, attn)
    except ChronosError:
        raise
    except Exception as error:  # noqa: BLE001 - the library's own reason, on one line
        raise ChronosError(f"HF config {str(path)!r} cannot be built: {first_line(error)}") from None


def _build_transformers(path: Path, attn: str) -> nn.Module:
    config = _load_hf_config(path, attn)
    cls = _hf_model_class(config)
    if hasattr(cls, "from_config"):
        return _build_on_meta(lambda: cls.from_config(config, attn_implementation=attn))
    return _build_on_meta(lambda: cls._from_config(config, attn_implementation=attn))


def _build_timm(name: str, input_shape: tuple | None, dataset: str | None) -> tuple[nn.Module, tuple]:
    import timm

    kwargs: dict[str, Any] = {}
    spec = Datasets.get(dataset) if dataset is not None else None
    if spec is not None:
        kwargs["num_classes"] = spec.num_classes
    if not timm.is_model(name):
        known = timm.list_models()
        close = difflib.get_close_matches(name, known, n=8, cutoff=0.5)
        raise ChronosError(
            f"Unknown timm model {name!r}. Known: {', '.join(close) or ', '.join(known[:8])}, ... "
            f"({len(known)} in all: timm.list_models())"
        )
    module = _build_on_meta(lambda: timm.create_model(name, pretrained=False, **kwargs))
    shape = input_shape
    if shape is None:
        cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None) or {}
        shape = tuple(cfg.get("input_size", (3, 224, 224)))
    return module, tuple(shape)


def build_step(
    model: str,
    *,
    batch_size: int = DEFAULT_BATCH,
    seq_len: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    attn_implementation: str = "sdpa",
    dataset: str | None = None,
    train: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    build_hf: Callable[[Path, str], nn.Module] | None = None,
) -> Step:
    """Build a string model on meta with its example batch (what `trace_step` traces).

    `model_kwargs` go to a zoo model's builder; `build_hf(config_path, attn)` replaces the Hugging
    Face builder (e.g. a cached one)."""
    kind, name, _ = _model_key(model)
    attn = attn_implementation
    if kind in ("hf", "config"):
        path = HF_CONFIG_DIR / f"{name}.json" if kind == "hf" else Path(name)
        module = (build_hf or _build_hf)(path, attn)
        if seq_len is None and dataset is not None:
            seq_len = Datasets.get(dataset).seq_len
        inputs = _hf_inputs(module, batch_size, seq_len, train)
        return Step(module, lambda: module(**inputs), list(module.parameters()), None, True)
    if kind == "timm":
        module, shape = _build_timm(name, input_shape, dataset)
        x = torch.empty((batch_size, *shape), device="meta")
    else:
        spec = Models.get(name)
        if spec.framework != "torch":
            raise ChronosError(f"model {name} is a {spec.framework} model; only torch models are traced")
        data = spec.dataset(dataset)
        if input_shape is not None:
            data = data.with_input_shape(input_shape)
        elif seq_len is not None and data.modality in ("text", "sequence"):
            data = data.with_input_shape((seq_len, *data.input_shape[1:]))
        kwargs = dict(model_kwargs or {})
        module = _build_on_meta(lambda: spec.build(data, **kwargs))
        x = spec.example_input(data, batch_size=batch_size, device="meta", **kwargs)
    targets = torch.zeros(batch_size, dtype=torch.long, device="meta")
    return Step(module, lambda: module(x), list(module.parameters()), targets)


# --------------------------------------------------------------------------------------------------
# Cache


def _source_hash() -> str:
    native = sorted(Path(__file__).parent.glob("native_*.py"))  # native_hf and its builders
    sources = Path(__file__).read_bytes() + b"".join(p.read_bytes() for p in native)
    return hashlib.sha256(sources).hexdigest()[:16]


@functools.cache
def _versions() -> tuple[str, ...]:
    found = []
    for package in ("torch", "transformers", "timm"):
        try:
            found.append(f"{package}={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{package}=none")
    return (*found, f"opgraph={_SOURCE_HASH}")


_SOURCE_HASH = _source_hash()


def _disk_path(key: tuple, shape: tuple, options: tuple) -> Path:
    text = repr((key, shape, options, _versions()))
    return cache_dir() / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.pkl"


@functools.lru_cache(maxsize=64)
def _cached_trace(key: tuple, shape: tuple, options: tuple) -> pd.DataFrame:
    path = _disk_path(key, shape, options)
    if path.is_file():
        try:
            with path.open("rb") as handle:
                frame = pickle.load(handle)
            if isinstance(frame, pd.DataFrame) and tuple(frame.columns) == COLUMNS:
                return frame
        except Exception:  # a broken or foreign file: trace again and overwrite it
            pass
    kind, name, _ = key
    batch, seq_len, input_shape, dataset = shape
    precision, optimizer, mode, attn = options
    model = {"zoo": name, "timm": f"timm:{name}", "hf": f"hf:{name}", "config": name}[kind]
    step = build_step(
        model,
        batch_size=batch,
        seq_len=seq_len,
        input_shape=input_shape,
        attn_implementation=attn,
        dataset=dataset,
        train=mode == "train",
    )
    frame = _run_step(step, precision, optimizer, mode, attn)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as handle:
            pickle.dump(frame, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:  # a read-only cache dir only costs speed
        pass
    return frame


__all__ = [
    "ATTN_IMPLEMENTATIONS",
    "COLUMNS",
    "FAMILIES",
    "MODES",
    "OPTIMIZERS",
    "PRECISIONS",
    "Step",
    "build_step",
    "cache_dir",
    "clear_cache",
    "group_ops",
    "loss_of",
    "shipped_hf_configs",
    "summarize",
    "trace_step",
]
