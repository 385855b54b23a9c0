"""Predicted peak GPU memory of one training step, simulated on the meta device.

`estimate_training_memory(model, batch_size=..., precision=..., optimizer=..., attn_implementation=...)`
runs one whole step (forward + loss, backward, optimizer step) on shape-only meta tensors, with the
op policy of `chronos_core.features.opgraph` (the kernels a CUDA GPU runs: fused flash /
memory-efficient attention for `attn_implementation="sdpa"`, autocast's casts for "amp"/"bf16",
CUDA's fused dropout with a 1-byte mask), and follows every tensor storage from its allocation to
its release (a weak reference on each storage), like the caching allocator sees them. It returns a
`MemoryEstimate`: the sizes of parameters, gradients, optimizer states, master weights, activations
(what autograd saves for backward), the largest temporary, an overhead allowance, and the peak.

What is measured and how:

* activations: the distinct storages autograd saves during the forward (`saved_tensors_hooks`,
  deduplicated by storage, so views such as the q/k/v split of one projection count once);
  parameters and buffers saved for backward are not activations; the input batch is (it is on the
  GPU for the whole step). With "sdpa" the fused kernels save q, k, v, the output and a logsumexp
  (O(s) per head), no s x s matrix; torch on meta would decompose sdpa into the math path (which
  saves the probabilities), so the opgraph policy dispatches the kernel a GPU picks (flash for
  fp16/bf16 without a mask, memory-efficient otherwise). "eager" (HF's matmul + softmax attention)
  saves the s x s scores/probabilities, the dropout mask and the dropped probabilities.
* the peak: the largest total of live storages during the step, on top of what lives throughout
  (parameters, buffers, optimizer states, master weights, the input batch). The step is the usual
  loop `zero_grad(set_to_none=True); out = model(x); loss.backward(); opt.step()`: gradients do not
  exist during the forward, the output (e.g. the logits) stays referenced during backward, and the
  optimizer's foreach temporaries (Adam's sqrt(v), one parameter-sized list) are live with the
  gradients. `at_peak` is the composition at that moment and sums to `peak_bytes`; `transient` is
  the largest total of temporaries (neither saved activations, gradients nor weight copies) at any
  moment; `upper_bound_bytes` adds every part as if all were live at once.
* each storage is rounded up to 512 bytes, the CUDA caching allocator's block size
  (c10/cuda/CUDACachingAllocator.cpp, kMinBlockSize).
* overhead: CUDA_CONTEXT_BYTES (0.5 GiB: the CUDA context, cuBLAS/cuDNN handles and workspaces,
  outside torch's allocator; 0.3-0.5 GB with CUDA 12's lazy module loading, more on older stacks)
  plus FRAGMENTATION (5%) of the allocated peak for the caching allocator's rounding to its 2 MiB /
  20 MiB segments and fragmentation (reserved exceeds allocated by a few % in steady training).

Precision recipes (`precision` as in opgraph, `recipe` for the mixed-precision variants):

* "fp32", "tf32": everything fp32. Adam: 4 (param) + 4 (grad) + 8 (m, v) = 16 bytes/param.
* "amp" / "bf16" with `recipe="autocast"` (the default: torch.autocast fp16 + GradScaler / bf16):
  parameters, gradients and optimizer states stay fp32 (the fp32 parameters are the master copy,
  so `master_weights` = 0): 16 B/param with Adam, plus autocast's cached fp16/bf16 copies of the
  weights (`weight_copies`, 2 B/param, live from their first use in the forward until backward has
  used them). Activations are mostly 16-bit.
* `recipe="master"`: the Megatron / DeepSpeed / ZeRO recipe (Rajbhandari et al. 2020): the model in
  fp16/bf16 (2 B params + 2 B grads) and the optimizer on fp32 master weights (4 B) with fp32 m, v
  (8 B): 16 B/param with Adam, the ZeRO paper's figure. The step makes fp32 copies of the gradients.
* `recipe="pure"`: everything in fp16/bf16, optimizer states too (torch's Adam keeps states in the
  parameters' dtype): 8 B/param with Adam.

Memory sizes in GB are GiB (2**30 bytes): NVIDIA's nominal sizes are (an "80 GB" A100 has 81920
MiB). `fits(memory_gb)` compares the peak with USABLE_FRACTION (98%) of it, about what
torch.cuda.get_device_properties reports as total_memory (A100-80GB 79.2 GiB, RTX 3090 23.7 GiB;
a T4 with ECC on has 14.7 of 16).
"""

from __future__ import annotations

import functools
import weakref
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode, _len_torch_dispatch_stack

from chronos_core.catalog.datasets import Datasets
from chronos_core.errors import ChronosError
from chronos_core.features import opgraph as og

RECIPES = ("autocast", "master", "pure")
BLOCK_BYTES = 512  # CUDA caching allocator: every block is a multiple of 512 bytes
CUDA_CONTEXT_BYTES = 2**29  # 0.5 GiB outside the allocator: context, cuBLAS/cuDNN handles, workspaces
FRAGMENTATION = 0.05  # reserved-but-unused share of the allocator's peak
USABLE_FRACTION = 0.98  # of the nominal GiB, what the driver leaves to a process
GIB = 2**30
_LOW = {"amp": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step's GPU memory. Parts are whole sizes; `at_peak` sums to the peak."""

    model: str
    batch_size: int
    precision: str
    optimizer: str
    attn_implementation: str
    mode: str
    recipe: str
    param_count: int  # all parameters (trainable or not)
    parameters: int
    buffers: int
    gradients: int
    optimizer_states: int
    master_weights: int
    weight_copies: int  # autocast's low-precision copies of the weights (recipe "autocast")
    activations: int  # saved for backward at the end of the forward, input batch included
    transient: int  # the largest total of temporaries live at one moment
    overhead: int  # CUDA context + fragmentation allowance
    peak_bytes: int
    step_peak: int  # allocated during the step at the peak, above what lives throughout
    peak_phase: str  # forward, backward or optimizer
    at_peak: tuple[tuple[str, int], ...]  # (part, bytes) live at the peak, overhead included

    @property
    def peak_gb(self) -> float:
        return self.peak_bytes / GIB

    @property
    def state_bytes(self) -> int:
        """Parameters + gradients + optimizer states + master weights (what ZeRO's 16 B/param counts)."""
        return self.parameters + self.gradients + self.optimizer_states + self.master_weights

    def sharded(self, n: int) -> MemoryEstimate:
        """One GPU's share when n GPUs split the model (tensor or pipeline parallel): every part but
        the CUDA context and fragmentation allowance divided by n. Under pipeline parallelism each
        stage keeps 1/n of the layers and their activations for every micro-batch, so this is close;
        under tensor parallelism the residual stream's activations are repeated on every GPU, so it
        is a lower bound."""
        if n <= 1:
            return self
        parts = (
            "parameters", "buffers", "gradients", "optimizer_states", "master_weights", "weight_copies",
            "activations", "transient", "step_peak",
        )  # fmt: skip
        shared = {name: -(-getattr(self, name) // n) for name in parts}
        at_peak = tuple((part, b if part == "overhead" else -(-b // n)) for part, b in self.at_peak)
        return replace(self, **shared, at_peak=at_peak, peak_bytes=sum(b for _, b in at_peak))

    @property
    def upper_bound_bytes(self) -> int:
        """Every part as if live at once (no credit for gradients and activations not overlapping)."""
        return (
            self.parameters + self.buffers + self.gradients + self.optimizer_states + self.master_weights
            + self.weight_copies + self.activations + self.transient + self.overhead
        )  # fmt: skip

    def fits(self, memory_gb: float) -> bool:
        """Whether the peak fits a GPU of `memory_gb` nominal GB (GiB), USABLE_FRACTION of it usable."""
        return self.peak_bytes <= float(memory_gb) * GIB * USABLE_FRACTION

    def does_not_fit(self, memory_gb: float, gpu: str = "this GPU") -> str | None:
        """None when it fits, else the one-line reason ("does not fit on GPU: needs X GB, ...")."""
        if self.fits(memory_gb):
            return None
        return (
            f"does not fit on {gpu}: needs {self.peak_gb:.1f} GB at batch {self.batch_size} "
            f"({self.precision}, {self.optimizer}), GPU has {float(memory_gb):g} GB"
        )

    def describe(self) -> str:
        parts = ", ".join(f"{name} {value / GIB:.2f}" for name, value in self.at_peak if value)
        return (
            f"{self.model} {self.mode} batch {self.batch_size} {self.precision}/{self.optimizer}/"
            f"{self.attn_implementation}: peak {self.peak_gb:.2f} GB in the {self.peak_phase} ({parts})"
        )

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at_peak"] = dict(self.at_peak)
        out["peak_gb"] = self.peak_gb
        out["upper_bound_bytes"] = self.upper_bound_bytes
        return out


def estimate_training_memory(
    model: nn.Module | str,
    *,
    batch_size: int,
    seq_len: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
    attn_implementation: str = "sdpa",
    mode: str = "train",
    dataset: str | None = None,
    example_input: Any = None,
    recipe: str = "autocast",
    model_kwargs: dict[str, Any] | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> MemoryEstimate:
    """Peak GPU memory of one training (or inference) step; see the module docstring.

    `model` as in `opgraph.trace_step`: an nn.Module (with `example_input`, or `input_shape` and
    `batch_size`), a zoo name (sized for `dataset`, built with `model_kwargs`), "timm:NAME",
    "hf:NAME" or a config.json path. Results for named models are cached per configuration.
    `block_bytes`: the allocator's rounding (512 on CUDA; 1 for exact tensor bytes, as on a CPU).
    """
    precision = og._choice("precision", precision, og.PRECISIONS)
    optimizer = og._choice("optimizer", optimizer, og.OPTIMIZERS)
    mode = og._choice("mode", mode, og.MODES)
    attn = og._choice("attn_implementation", attn_implementation, og.ATTN_IMPLEMENTATIONS)
    recipe = og._choice("recipe", recipe, RECIPES)
    if recipe != "autocast" and precision not in _LOW:
        raise ChronosError(f"recipe {recipe!r} is a 16-bit recipe: use precision 'amp' or 'bf16'")
    batch_size = og._positive("batch_size", batch_size)
    if batch_size is None:
        raise ChronosError("batch_size is required")
    seq_len = og._positive("seq_len", seq_len)
    if input_shape is not None:
        input_shape = tuple(og._positive("input_shape entry", int(d)) for d in input_shape)
    if mode == "inference":
        optimizer = "none"
    block = og._positive("block_bytes", block_bytes)
    options = (precision, optimizer, mode, attn, recipe, block)
    if isinstance(model, str):
        if example_input is not None:
            raise ChronosError("example_input is for nn.Module models; size a named model with batch_size")
        key = og._model_key(model)
        if dataset is not None:
            dataset = Datasets.get(dataset).name
        items = tuple(sorted((model_kwargs or {}).items()))
        return _cached_estimate(key, batch_size, seq_len, input_shape, dataset, items, options)
    if not isinstance(model, nn.Module):
        raise ChronosError(
            f"model must be an nn.Module, a zoo name, 'timm:NAME', 'hf:NAME' or a config.json path; "
            f"got {type(model).__name__}"
        )
    step = og._module_step(model, example_input, batch_size, seq_len, input_shape, attn, mode)
    return _simulate(step, type(model).__name__, batch_size, *options)


def clear_cache() -> None:
    """Forget cached estimates and built models."""
    _cached_estimate.cache_clear()
    _built_hf.cache_clear()


# --------------------------------------------------------------------------------------------------
# Building named models (opgraph's builders; zoo models also take model_kwargs)


@functools.lru_cache(maxsize=4)
def _built_hf(kind: str, name: str, digest: str, attn: str) -> nn.Module:
    path = og.HF_CONFIG_DIR / f"{name}.json" if kind == "hf" else Path(name)
    return og._build_hf(path, attn)


def _named_step(
    key: tuple[str, str, str],
    batch: int,
    seq_len: int | None,
    input_shape: tuple | None,
    dataset: str | None,
    kwargs: dict,
    attn: str,
    train: bool,
) -> og.Step:
    """opgraph's step of a named model (Hugging Face models built once per configuration)."""
    kind, name, digest = key
    model = {"hf": f"hf:{name}", "timm": f"timm:{name}"}.get(kind, name)
    return og.build_step(
        model, batch_size=batch, seq_len=seq_len, input_shape=input_shape, attn_implementation=attn,
        dataset=dataset, train=train, model_kwargs=kwargs,
        build_hf=lambda _path, attn_: _built_hf(kind, name, digest, attn_),
    )  # fmt: skip


@functools.lru_cache(maxsize=256)
def _cached_estimate(
    key: tuple, batch: int, seq_len: int | None, input_shape: tuple | None, dataset: str | None,
    items: tuple, options: tuple,
) -> MemoryEstimate:  # fmt: skip
    precision, optimizer, mode, attn, recipe, block = options
    step = _named_step(key, batch, seq_len, input_shape, dataset, dict(items), attn, mode == "train")
    label = key[1] if key[0] != "hf" else f"hf:{key[1]}"
    return _simulate(step, label, batch, *options)


# --------------------------------------------------------------------------------------------------
# The allocator simulation


class _Shortcuts(TorchDispatchMode):
    """Runs meta ops with opgraph's shortcuts (in-place ops return their target, repeated calls reuse
    output metadata) and answers `.item()` on meta as opgraph does."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is og._aten._local_scalar_dense.default and args[0].is_meta:
            return og._meta_scalar(args[0].dtype)
        if _len_torch_dispatch_stack() == 0:
            return og._run_meta(func, og._op_info(func), args, kwargs)
        return func(*args, **kwargs)


class _Tracker(_Shortcuts):
    """Follows every meta storage an op creates, from allocation to release (a weak reference)."""

    def __init__(self, block: int = BLOCK_BYTES) -> None:
        super().__init__()
        self.block = block
        self.sizes: list[int] = []  # per record, rounded bytes
        self.kinds: list[str] = []  # per record: transient, activation, gradient, weight_copy
        self.ops: list[Any] = []  # per record, the op that made it
        self.events: list[int] = []  # record id + 1 when allocated, -(record id + 1) when released
        self.marks: list[tuple[int, str]] = [(0, "forward")]
        self.live: dict[int, tuple[weakref.ref, int]] = {}  # id(storage) -> (ref, record id)

    def phase(self, name: str) -> None:
        self.marks.append((len(self.events), name))

    def record_of(self, t: torch.Tensor) -> int | None:
        entry = self.live.get(id(t.untyped_storage()))
        return None if entry is None else entry[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = super().__torch_dispatch__(func, types, args, kwargs)
        aliases = og._op_info(func).returns_alias
        if not any(aliases):  # fresh outputs only: views and in-place results share a known storage
            for t in og._flat(out):
                if t.is_meta:
                    self._track(t, func)
        return out

    def _track(self, t: torch.Tensor, func: Any) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self.live:
            return
        rid = len(self.sizes)
        self.sizes.append(_rounded(storage.nbytes(), self.block))
        self.kinds.append("transient")
        self.ops.append(func)
        self.events.append(rid + 1)
        self.live[key] = (weakref.ref(storage, functools.partial(self._release, key, rid)), rid)

    def _release(self, key: int, rid: int, _ref: Any) -> None:
        entry = self.live.get(key)
        if entry is not None and entry[1] == rid:
            del self.live[key]
        self.events.append(-(rid + 1))


def _rounded(nbytes: int, block: int = BLOCK_BYTES) -> int:
    return -(-int(nbytes) // block) * block


def _tensor_bytes(tensors: Any, block: int = BLOCK_BYTES) -> int:
    seen: set[int] = set()
    total = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor) or not t.is_meta:
            continue
        storage = t.untyped_storage()
        if id(storage) not in seen:
            seen.add(id(storage))
            total += _rounded(storage.nbytes(), block)
    return total


def _make_state(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> None:
    """Create the optimizer's state (its first step) outside the simulation, as in steady training."""
    for p in params:
        p.grad = torch.empty_like(p)
    with _Shortcuts():
        opt.step()
    for p in params:
        p.grad = None


def _simulate(
    step: og.Step, label: str, batch: int, precision: str, optimizer: str, mode: str, attn: str,
    recipe: str, block: int = BLOCK_BYTES,
) -> MemoryEstimate:  # fmt: skip
    module = step.module
    low = _LOW.get(precision)
    training = {m: m.training for m in module.modules()}
    originals: dict[torch.Tensor, torch.Tensor] = {}
    tracker = _Tracker(block)
    rounded = functools.partial(_rounded, block=block)
    try:
        params = list(step.params)
        if low is not None and recipe != "autocast":  # the model itself in 16 bit
            for p in params:
                originals[p] = p.data
                p.data = torch.empty_like(p.data, dtype=low) if p.is_floating_point() else p.data
        policy = og._StepPolicy(low if recipe == "autocast" else None, attn == "sdpa")
        trainable = [p for p in params if p.requires_grad]
        param_ids = {id(p.untyped_storage()) for p in params}
        buffers = [b for b in module.buffers() if b.is_meta]
        param_ids |= {id(b.untyped_storage()) for b in buffers}
        parameters = _tensor_bytes(params, block)
        buffer_bytes = _tensor_bytes(buffers, block)
        masters: list[torch.Tensor] = []
        opt = None
        if mode == "train" and optimizer != "none" and trainable:
            if recipe == "master":
                masters = [torch.empty_like(p, dtype=torch.float32).requires_grad_() for p in trainable]
            opt_params = masters or trainable
            opt = _optimizer(optimizer, opt_params)
            _make_state(opt, opt_params)
        states = [t for s in (opt.state.values() if opt else ()) for t in s.values()]
        optimizer_states = _tensor_bytes(states, block)
        master_weights = _tensor_bytes(masters, block)
        scaler = og._GradScaler() if precision == "amp" and mode == "train" else None
        inputs: dict[int, int] = {}
        copies: set[int] = set()

        def pack(t: torch.Tensor) -> torch.Tensor:
            if not t.is_meta:
                return t
            storage = t.untyped_storage()
            key = id(storage)
            entry = tracker.live.get(key)
            if entry is not None:
                if tracker.kinds[entry[1]] == "transient":
                    if len(copies) != len(policy.cast_cache):
                        copies.clear()
                        copies.update(id(c.untyped_storage()) for c in policy.cast_cache.values())
                    tracker.kinds[entry[1]] = "weight_copy" if key in copies else "activation"
            elif key not in param_ids:
                inputs[key] = rounded(storage.nbytes())
            return t

        if mode == "inference":
            module.eval()
            with torch.no_grad(), tracker, policy:
                out = step.forward()
            del out
        else:
            module.train()
            with tracker:
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), policy:
                    out = step.forward()
                    loss = og.loss_of(out, step.targets)
                policy.cast_cache.clear()  # autocast drops its cache on exit; saved copies live on
                if scaler is not None:
                    loss = scaler.scale(loss)
                tracker.phase("backward")
                loss.backward()
                del loss
                for p in trainable:
                    rid = tracker.record_of(p.grad) if p.grad is not None else None
                    if rid is not None:
                        tracker.kinds[rid] = "gradient"
                tracker.phase("optimizer")
                if opt is not None:
                    _optimizer_step(opt, trainable, masters, scaler)
                del out
        gradients = _tensor_bytes((p.grad for p in trainable if p.grad is not None), block)
    except ChronosError:
        raise
    except Exception as error:
        raise ChronosError(
            f"simulating {type(module).__name__}'s memory failed: {type(error).__name__}: {error}"
        ) from None
    finally:
        for p, data in originals.items():
            p.data = data
        step.reset(training)
    tracker.live.clear()  # drop the weak references: later releases are not this step's
    return _account(
        tracker, label, batch, (precision, optimizer, attn, mode, recipe),
        sum(p.numel() for p in step.params),
        {"parameters": parameters, "buffers": buffer_bytes, "master_weights": master_weights,
         "optimizer_states": optimizer_states, "inputs": sum(inputs.values()), "gradients": gradients},
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# The same step for real, on the CPU (validation)


def measure_on_cpu(
    module: nn.Module, example_input: Any, targets: torch.Tensor | None = None, optimizer: str = "adamw"
) -> dict[str, int]:
    """Bytes of a real fp32 training step on the CPU, to check the estimate (see benchmarks/memory_check.py).

    One step makes the optimizer's state; on the second (after `zero_grad(set_to_none=True)`):
    activations = distinct storages autograd saves in the forward (saved_tensors_hooks, keyed by
    data_ptr; parameters and buffers excluded, the input batch included); parameters, gradients and
    optimizer states after the step; `step_peak` = the peak of torch.profiler's "Total Allocated"
    during forward, backward and step, above its value at the start (profile_memory=True; -1 when the
    profiler gives nothing).
    """
    import json
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    module.train()
    opt = _optimizer(og._choice("optimizer", optimizer, og.OPTIMIZERS), list(module.parameters()))
    fixed = {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()]}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in fixed:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    def step(hooks: bool) -> None:
        opt.zero_grad(set_to_none=True)
        if hooks:
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                out = og._call(module, example_input)
                loss = og.loss_of(out, targets)
        else:
            out = og._call(module, example_input)
            loss = og.loss_of(out, targets)
        loss.backward()
        del loss
        opt.step()
        del out

    step(hooks=False)
    step(hooks=True)
    opt.zero_grad(set_to_none=True)
    peak = -1
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
                step(hooks=False)
            path = f"{tmp}/trace.json"
            prof.export_chrome_trace(path)
            with open(path) as handle:
                events = json.load(handle).get("traceEvents", [])
            memory = sorted((e for e in events if e.get("name") == "[memory]"), key=lambda e: e["ts"])
            if memory:  # the counter runs on across profiler sessions: relative to the first event
                base = memory[0]["args"]["Total Allocated"] - memory[0]["args"]["Bytes"]
                peak = max(e["args"]["Total Allocated"] for e in memory) - base
        except (RuntimeError, OSError, KeyError, ValueError):
            peak = -1
    params = [p for p in module.parameters()]
    states = [t for s in opt.state.values() for t in s.values() if isinstance(t, torch.Tensor) and t.dim()]
    return {
        "parameters": sum(p.numel() * p.element_size() for p in params),
        "gradients": sum(p.grad.numel() * p.grad.element_size() for p in params if p.grad is not None),
        "optimizer_states": sum(t.numel() * t.element_size() for t in states),
        "activations": sum(saved.values()),
        "step_peak": int(peak),
    }


def _optimizer(name: str, params: list[torch.Tensor]) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=0.01, momentum=0.9, foreach=True)
    if name == "adam":
        return torch.optim.Adam(params, lr=1e-3, foreach=True)
    return torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, foreach=True)


def _optimizer_step(
    opt: torch.optim.Optimizer, trainable: list, masters: list, scaler: og._GradScaler | None
) -> None:
    if masters:  # fp32 copies of the 16-bit gradients for the fp32 master step, then copy back
        for m, p in zip(masters, trainable, strict=True):
            m.grad = p.grad.float() if p.grad is not None else None
        if scaler is not None:
            scaler.unscale(masters)
        opt.step()
        with torch.no_grad():
            for m, p in zip(masters, trainable, strict=True):
                p.copy_(m)
                m.grad = None
    else:
        if scaler is not None:
            scaler.unscale(trainable)
        opt.step()
    if scaler is not None:
        scaler.update()


def _account(
    tracker: _Tracker, label: str, batch: int, options: tuple, count: int, static: dict[str, int]
) -> MemoryEstimate:
    precision, optimizer, attn, mode, recipe = options
    sizes, kinds = tracker.sizes, tracker.kinds
    live = peak = transient = other = 0
    peak_at = 0
    for i, event in enumerate(tracker.events):
        rid = abs(event) - 1
        delta = sizes[rid] if event > 0 else -sizes[rid]
        live += delta
        if kinds[rid] == "transient":
            other += delta
            transient = max(transient, other)
        if live > peak:
            peak, peak_at = live, i + 1
    parts = {"gradient": 0, "activation": 0, "weight_copy": 0, "transient": 0}
    for event in tracker.events[:peak_at]:
        rid = abs(event) - 1
        parts[kinds[rid]] += sizes[rid] if event > 0 else -sizes[rid]
    phase = "forward"
    for index, name in tracker.marks:
        if index < peak_at:
            phase = name
    activations = static["inputs"] + sum(s for s, k in zip(sizes, kinds, strict=True) if k == "activation")
    copies = sum(s for s, k in zip(sizes, kinds, strict=True) if k == "weight_copy")
    persistent = (
        static["parameters"] + static["buffers"] + static["master_weights"] + static["optimizer_states"]
        + static["inputs"]
    )  # fmt: skip
    allocated = persistent + peak
    overhead = CUDA_CONTEXT_BYTES + int(round(FRAGMENTATION * allocated))
    at_peak = (
        ("parameters", static["parameters"] + static["buffers"]),
        ("gradients", parts["gradient"]),
        ("optimizer_states", static["optimizer_states"]),
        ("master_weights", static["master_weights"]),
        ("weight_copies", parts["weight_copy"]),
        ("activations", static["inputs"] + parts["activation"]),
        ("transient", parts["transient"]),
        ("overhead", overhead),
    )
    return MemoryEstimate(
        model=label, batch_size=batch, precision=precision, optimizer=optimizer, attn_implementation=attn,
        mode=mode, recipe=recipe, param_count=int(count), parameters=static["parameters"],
        buffers=static["buffers"], gradients=static["gradients"], optimizer_states=static["optimizer_states"],
        master_weights=static["master_weights"], weight_copies=copies, activations=activations,
        transient=transient, overhead=overhead, peak_bytes=allocated + overhead, step_peak=peak,
        peak_phase=phase, at_peak=at_peak,
    )  # fmt: skip


__all__ = [
    "CUDA_CONTEXT_BYTES",
    "FRAGMENTATION",
    "RECIPES",
    "USABLE_FRACTION",
    "MemoryEstimate",
    "clear_cache",
    "estimate_training_memory",
    "measure_on_cpu",
]
