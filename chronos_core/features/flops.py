"""FLOPs of a torch model on the meta device: torch's FlopCounterMode, per layer, plus hand formulas.

Convention (same as torch's FlopCounterMode and the CHRONOS tables): a multiply-add is 2 FLOPs and
only matrix products count (conv, linear, attention matmuls, recurrent gate matmuls); bias adds,
norms, activations and pooling are not in the totals. Norm, pool, activation and embedding layers
still get an elementwise count in their inventory rows (`in_total` False), from hand formulas:

* Linear: 2 * in * out per output row; Conv: 2 * Cin/groups * prod(kernel) per output element.
* MultiheadAttention: q/k/v and output projections, plus 2 * 2 * Lq * Lk * E for scores and A@V.
* LSTM/GRU/RNN: 2 * gates * H * (I + H) per step, layer and direction (gates 4 / 3 / 1).
* Norms: 4 per element with an affine transform, 2 without; activations 1; pools prod(kernel)
  per output element (adaptive pools: 1 per input element); embeddings 0 (a lookup).

Where the counter sees nothing inside a conv/linear/attention/RNN layer (an op it does not know),
the hand formula replaces it and the backward pass is taken as twice the forward. LSTM/GRU/RNN
layers always take that path: on meta they unroll step by step (seconds per layer), so the trace
swaps in a shape-only stand-in. Torch's convolution_backward formula over-counts the weight
gradient of grouped convs by `groups`; the counter here uses a corrected one.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from chronos_core.errors import ChronosError

LAYER_TYPES = ("conv", "linear", "attention", "norm", "embedding", "rnn", "pool", "activation", "other")
MATMUL_TYPES = frozenset({"conv", "linear", "attention", "rnn"})
_RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm)
_POOLS = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.pooling._LPPoolNd,
)


def layer_type(module: nn.Module) -> str:
    """Coarse class of a module: one of LAYER_TYPES (a `chronos_layer_type` attribute overrides)."""
    explicit = getattr(module, "chronos_layer_type", None)
    if explicit in LAYER_TYPES:
        return explicit
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "linear"
    if isinstance(module, nn.MultiheadAttention):
        return "attention"
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
        return "rnn"
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding"
    if isinstance(module, _NORMS):
        return "norm"
    if isinstance(module, _POOLS):
        return "pool"
    if type(module).__module__ == "torch.nn.modules.activation":
        return "activation"
    name = type(module).__name__.lower()
    if "attention" in name:
        return "attention"
    if name.endswith("norm"):
        return "norm"
    return "other"


def is_atomic(module: nn.Module) -> bool:
    """Modules traced as one unit: leaves, attention and recurrent layers (their children are internal)."""
    return not any(True for _ in module.children()) or isinstance(
        module, (nn.MultiheadAttention, nn.RNNBase, nn.RNNCellBase)
    )


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)
    elif hasattr(obj, "data") and isinstance(getattr(obj, "data", None), torch.Tensor):  # PackedSequence
        yield obj.data


def _first(obj: Any) -> torch.Tensor | None:
    return next(_tensors(obj), None)


def _seq_batch(x: torch.Tensor, batch_first: bool, batched_dims: int = 3) -> tuple[int, int]:
    """(length, batch) of an attention/RNN input; unbatched inputs have batch 1."""
    if x.dim() < batched_dims:
        return int(x.shape[0]), 1
    return (int(x.shape[1]), int(x.shape[0])) if batch_first else (int(x.shape[0]), int(x.shape[1]))


def _mha_flops(m: nn.MultiheadAttention, args: tuple, kwargs: dict) -> int:
    names = ("query", "key", "value")
    q, k = (args[i] if len(args) > i else kwargs.get(names[i]) for i in range(2))
    if q is None:
        return 0
    k = q if k is None else k
    lq, n = _seq_batch(q, m.batch_first)
    lk, _ = _seq_batch(k, m.batch_first)
    e = m.embed_dim
    projections = 2 * n * (lq * e * e + lk * m.kdim * e + lk * m.vdim * e + lq * e * e)
    return projections + 2 * 2 * n * lq * lk * e


def _rnn_flops(m: nn.RNNBase, x: torch.Tensor) -> int:
    if isinstance(x, torch.Tensor) and x.dim() >= 2:
        steps, batch = _seq_batch(x, m.batch_first, batched_dims=3)
        tokens = steps * batch
    else:  # packed data: rows are time steps of all sequences
        tokens = int(x.shape[0])
    gates, h = _RNN_GATES[m.mode], m.hidden_size
    out = m.proj_size or h
    dirs = 2 if m.bidirectional else 1
    total = 0
    for layer in range(m.num_layers):
        inp = m.input_size if layer == 0 else out * dirs
        per_step = 2 * gates * h * (inp + out) + (2 * h * out if m.proj_size else 0)
        total += dirs * per_step
    return total * tokens


def hand_flops(module: nn.Module, args: tuple, kwargs: dict | None, output: Any) -> int:
    """FLOPs of one call by formula (see module docstring); 0 for layers without arithmetic."""
    kwargs = kwargs or {}
    out = _first(output)
    inp = _first(args) if args else _first(kwargs)
    if out is None:
        return 0
    if isinstance(module, nn.Linear):
        return 2 * module.in_features * out.numel()
    if isinstance(module, nn.Bilinear):
        return 2 * module.in1_features * module.in2_features * out.numel()
    if isinstance(module, nn.modules.conv._ConvNd):
        k = math.prod(module.kernel_size)
        if module.transposed and inp is not None:
            return 2 * inp.numel() * (module.out_channels // module.groups) * k
        return 2 * (module.in_channels // module.groups) * k * out.numel()
    if isinstance(module, nn.MultiheadAttention):
        return _mha_flops(module, args, kwargs)
    if isinstance(module, nn.RNNBase):
        return _rnn_flops(module, inp) if inp is not None else 0
    if isinstance(module, nn.RNNCellBase):
        gates = {nn.LSTMCell: 4, nn.GRUCell: 3}.get(type(module), 1)
        rows = out.numel() // module.hidden_size
        return 2 * gates * module.hidden_size * (module.input_size + module.hidden_size) * rows
    if isinstance(module, nn.EmbeddingBag):
        return inp.numel() * module.embedding_dim if inp is not None else 0
    kind = layer_type(module)
    if kind == "norm":
        affine = getattr(module, "affine", getattr(module, "elementwise_affine", True))
        if isinstance(module, nn.LocalResponseNorm):
            return module.size * out.numel()
        return (4 if affine else 2) * out.numel()
    if kind == "activation":
        return out.numel()
    if kind == "pool":
        if "Adaptive" in type(module).__name__:
            return inp.numel() if inp is not None else out.numel()
        kernel = module.kernel_size
        return (
            math.prod(kernel if isinstance(kernel, tuple) else (kernel,) * max(out.dim() - 2, 1))
            * out.numel()
        )
    return 0


def _conv_backward_flop(
    grad_out_shape,
    x_shape,
    w_shape,
    _bias,
    _stride,
    _padding,
    _dilation,
    transposed,
    *args,
    out_shape=None,
    **kw,
) -> int:
    """Input and weight gradients of a conv each cost one forward (groups included)."""
    output_mask = args[2] if len(args) > 2 else kw.get("output_mask", (True, True, True))
    forward = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape), transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


_CUSTOM_FLOPS = {torch.ops.aten.convolution_backward: _conv_backward_flop}


def _rnn_stand_in(module: nn.RNNBase, original: Any) -> Any:
    """Shape-only forward for an RNN layer (kept in the autograd graph of its input and weights)."""

    def forward(input: Any, hx: Any = None) -> Any:
        if isinstance(input, PackedSequence) or not isinstance(input, torch.Tensor):
            return original(input, hx)
        x = input if input.dim() == 3 else input.unsqueeze(0 if module.batch_first else 1)
        batch, steps = (x.shape[0], x.shape[1]) if module.batch_first else (x.shape[1], x.shape[0])
        dirs = 2 if module.bidirectional else 1
        out_size = module.proj_size or module.hidden_size
        anchor = x.sum() * 0
        for name in module._flat_weights_names:
            anchor = anchor + getattr(module, name).sum() * 0
        out_shape = (batch, steps, dirs * out_size) if module.batch_first else (steps, batch, dirs * out_size)
        output = x.new_zeros(out_shape) + anchor
        h = x.new_zeros((module.num_layers * dirs, batch, out_size)) + anchor
        hidden: Any = h
        if module.mode == "LSTM":
            hidden = (h, x.new_zeros((module.num_layers * dirs, batch, module.hidden_size)) + anchor)
        if input.dim() != 3:
            output = output.squeeze(0 if module.batch_first else 1)
            hidden = tuple(t.squeeze(1) for t in hidden) if isinstance(hidden, tuple) else hidden.squeeze(1)
        return output, hidden

    return forward


@dataclass
class Trace:
    """Result of one traced forward (and backward) pass: per-call rows and totals for the whole batch."""

    rows: list[dict] = field(default_factory=list)
    flops_fwd: int = 0
    flops_bwd: int = 0
    batch_size: int = 1
    param_count: int = 0

    @property
    def flops_train(self) -> int:
        return self.flops_fwd + self.flops_bwd


def _to_meta(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj if obj.device.type == "meta" else torch.empty(obj.shape, dtype=obj.dtype, device="meta")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_meta(x) for x in obj)
    if isinstance(obj, dict):
        return {k: _to_meta(v) for k, v in obj.items()}
    return obj


def _call(fn: Any, inputs: Any) -> Any:
    if isinstance(inputs, dict):
        return fn(**inputs)
    if isinstance(inputs, (list, tuple)):
        return fn(*inputs)
    return fn(inputs)


def _batch_of(inputs: Any) -> int:
    first = _first(inputs)
    return int(first.shape[0]) if first is not None and first.dim() > 0 else 1


def _meta_runner(model: nn.Module) -> tuple[Any, nn.Module]:
    """A callable that runs `model` with meta parameters, and the module whose hooks will fire."""
    tensors = list(model.parameters()) + list(model.buffers())
    if all(t.device.type == "meta" for t in tensors):
        return model, model
    state = {
        n: torch.empty_like(p, device="meta").requires_grad_(p.requires_grad)
        for n, p in model.named_parameters()
    }
    state.update({n: torch.empty_like(b, device="meta") for n, b in model.named_buffers()})

    def run(*args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(model, state, args, kwargs)

    return run, model


def trace_model(model: nn.Module, example_input: Any, backward: bool = True) -> Trace:
    """Run `model` once on meta tensors under FlopCounterMode; one row per layer call.

    Works on meta-built models directly and on real models through `torch.func.functional_call` with
    meta parameters (the user's weights are not touched). The model runs in train mode.
    """
    try:
        return _trace(model, example_input, backward)
    except ChronosError:
        raise
    except Exception as first_error:  # functional_call can fail on tensors kept outside params/buffers
        if all(t.device.type == "meta" for t in list(model.parameters()) + list(model.buffers())):
            raise ChronosError(
                f"{type(model).__name__} failed on inputs {_shapes(example_input)}: {first_error}"
            ) from None
        try:
            return _trace(copy.deepcopy(model).to("meta"), example_input, backward)
        except Exception as error:
            raise ChronosError(
                f"{type(model).__name__} failed on inputs {_shapes(example_input)}: {error}"
            ) from None


def _shapes(inputs: Any) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in _tensors(inputs)]


def _trace(model: nn.Module, example_input: Any, backward: bool) -> Trace:
    inputs = _to_meta(example_input)
    runner, root = _meta_runner(model)
    names = {id(m): n for n, m in root.named_modules()}
    counter = FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS)
    rows: list[dict] = []
    frames: list[list[int]] = []
    calls: Counter = Counter()
    fallback = [0]

    def total() -> int:
        return sum(counter.flop_counts["Global"].values())

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        frames.append([total(), 0])

    def post_hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        start, child = frames.pop()
        inclusive = total() - start
        if frames:
            frames[-1][1] += inclusive
        atomic = is_atomic(module)
        counted = inclusive if atomic else inclusive - child
        call = calls[id(module)]
        calls[id(module)] += 1
        own = module.parameters(recurse=atomic)
        params = sum(p.numel() for p in own) if call == 0 else 0
        if not atomic and counted == 0 and params == 0:
            return
        kind = layer_type(module)
        flops, source, in_total = counted, "counter", True
        if atomic and kind in MATMUL_TYPES and counted == 0:
            flops = hand_flops(module, args, kwargs, output)
            source = "formula"
            fallback[0] += flops
        elif atomic and counted == 0 and kind in ("norm", "pool", "activation", "embedding"):
            flops, source, in_total = hand_flops(module, args, kwargs, output), "formula", False
        out = _first(output)
        rows.append(
            {
                "name": names.get(id(module), type(module).__name__) or type(module).__name__,
                "type": type(module).__name__,
                "layer_type": kind,
                "call": call,
                "leaf": atomic,
                "params": params,
                "flops_fwd": int(flops),
                "flops_source": source,
                "in_total": in_total,
                "output_shape": tuple(out.shape) if out is not None else (),
                "output_elems": sum(t.numel() for t in _tensors(output)) if atomic else 0,
                "module": module,
            }
        )

    handles = []
    seen: set[int] = set()
    stand_ins: list[nn.Module] = []

    def register(module: nn.Module) -> None:
        if id(module) in seen:
            return
        seen.add(id(module))
        handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
        handles.append(module.register_forward_hook(post_hook, with_kwargs=True))
        if isinstance(module, nn.RNNBase) and "forward" not in module.__dict__:
            module.forward = _rnn_stand_in(module, module.forward)
            stand_ins.append(module)
        if not is_atomic(module):
            for child in module.children():
                register(child)

    register(root)
    training = {m: m.training for m in root.modules()}
    root.train()
    try:
        with counter:
            output = _call(runner, inputs)
            fwd_counted = total()
            bwd = 0
            loss_source = next(
                (t for t in _tensors(output) if t.is_floating_point() and t.requires_grad), None
            )
            if backward and loss_source is not None:
                loss_source.float().sum().backward()
                bwd = total() - fwd_counted
    finally:
        for h in handles:
            h.remove()
        for module in stand_ins:
            del module.forward
        for m, mode in training.items():
            m.training = mode
    return Trace(
        rows=rows,
        flops_fwd=fwd_counted + fallback[0],
        flops_bwd=bwd + (2 * fallback[0] if backward and loss_source is not None else 0),
        batch_size=_batch_of(inputs),
        param_count=sum(p.numel() for p in root.parameters()),
    )


def count_flops(model: nn.Module, example_input: Any, backward: bool = True) -> tuple[int, int]:
    """(forward FLOPs, forward+backward FLOPs) for the whole example batch."""
    trace = trace_model(model, example_input, backward=backward)
    return trace.flops_fwd, trace.flops_train
