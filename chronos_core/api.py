"""`TrainingTimePredictor`: epoch time, epochs to convergence and total time (and $) of one run.

    import chronos_core as chronos
    p = chronos.TrainingTimePredictor(model=chronos.Models.VGG16, dataset=chronos.Datasets.Cifar100,
            optimizer=chronos.Optimizers.SGD, batch_size=32, learning_rate=0.001, precision=16,
            gpu=chronos.Devices.T4)
    p.predict_epoch_time()        # seconds per epoch (an Estimate: a float with .lo/.hi, 80%)
    p.predict_number_of_epochs()  # epochs to convergence (early stopping, patience/min_delta)
    p.predict_total_time()        # seconds, with .cost_usd where the GPU has a price

Epoch time is the iteration time times the steps per epoch. Which model gives the iteration time
(`summary()["time_model"]`, `explain()["time_model"]`):

* zoo models (`chronos_core.catalog.models.Models`): the whole-model regressor
  (`chronos_core.predict.default_model`, hardware-aware, trained on the CHRONOS tables and our own
  measurements) applied to the configuration's computational features; on a GPU those tables lack,
  its compute time is blended with the kernel model's (geometric mean). A step larger than any of
  the model's in those tables (training FLOPs per sample: ResNet-50 on ImageNet, where the tables
  stop at 64x64 images) goes to the kernel model instead: on such steps held out of every fit it
  misses by 18.2% against the regressor's 24.9% (seen GPUs; 23.5% against 29.9% on unseen ones).
* Hugging Face / timm models (`"hf:gpt2-large"`, a config.json path, `"timm:vit_base_patch16_224"`)
  and user torch models larger than anything in those tables (more than TABLE_MAX_PARAMS parameters
  or TABLE_MAX_FLOPS_PER_BATCH training FLOPs per batch): the kernel model. The regressor never saw
  a 100M+-parameter language model or such a step, so the step is traced op by op on the meta
  device and each op priced on the GPU (`chronos_core.predict.step`), plus the host's per-step
  overhead, with the kernel model's held-out 80% interval. The loader wait is 0 on token corpora
  (pre-tokenized data: a memory-mapped read of batch x seq_len ids) and the regressor's loader
  model otherwise (images, labelled text).
* `gpu="cpu"`: the run is measured on the spot on this machine (a few iterations of the real
  training loop) unless `measure=False`; Hugging Face / timm models are priced on GPUs only.

Text models take a sequence length (`seq_len=`, default: the dataset's, capped at the model's
positions); token corpora (WikiText-103, OpenWebText) are cut into train_tokens // seq_len
sequences, and summaries give tokens/s (batch_size x seq_len / iteration time).
Epochs come from the learned curve prior (`chronos_core.convergence.curve_prior`): the zero-shot
meta-regressor as prior, updated by the validation losses a running job has already seen.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from chronos_core import validation as v
from chronos_core.catalog.datasets import Datasets, DatasetSpec, custom_dataset
from chronos_core.catalog.optimizers import Optimizers, OptimizerSpec
from chronos_core.errors import ChronosError, unknown_choice

# The largest configuration in the time regressor's training tables (CHRONOS CNN/Transformer tables,
# our measurements, the A100 project): VGG16 with an ImageNet-size head, and a batch's training FLOPs.
TABLE_MAX_PARAMS = 135_088_392
TABLE_MAX_FLOPS_PER_BATCH = 9.77e12
TIME_MEASURED = "measured here"
TIME_WHOLE = "whole-model regressor"
TIME_KERNEL = "kernel model (traced step priced op by op)"
PRECISIONS = {"32": 32, "fp32": 32, "float32": 32, "16": 16, "fp16": 16, "float16": 16, "amp": 16,
              "bf16": "bf16", "bfloat16": "bf16"}  # fmt: skip
COVERAGE = 0.8


class Estimate(float):
    """A prediction: behaves as a float (the point estimate) and carries an 80% interval and a unit."""

    lo: float
    hi: float
    unit: str

    def __new__(cls, value: float, lo: float, hi: float, unit: str = "") -> Estimate:
        out = super().__new__(cls, float(value))
        out.lo, out.hi, out.unit = float(lo), float(hi), unit
        return out

    def as_dict(self) -> dict[str, float | str]:
        return {"value": float(self), "lo": self.lo, "hi": self.hi, "unit": self.unit}

    def __repr__(self) -> str:
        return f"{float(self):.4g} {self.unit} (80%: {self.lo:.4g}..{self.hi:.4g})".replace("  ", " ")


class TotalTime(Estimate):
    """Total training time in seconds, with the dollar cost (and its interval) where a price is known."""

    cost_usd: float
    cost_usd_lo: float
    cost_usd_hi: float

    def as_dict(self) -> dict[str, float | str]:
        return {**super().as_dict(), "cost_usd": self.cost_usd, "cost_usd_lo": self.cost_usd_lo,
                "cost_usd_hi": self.cost_usd_hi}  # fmt: skip

    def __repr__(self) -> str:
        cost = "" if math.isnan(self.cost_usd) else f", ${self.cost_usd:.2f}"
        return f"{float(self) / 3600:.3g} h (80%: {self.lo / 3600:.3g}..{self.hi / 3600:.3g} h{cost})"


def combine(a: Estimate, b: Estimate, unit: str) -> Estimate:
    """Product of two independent estimates; interval half-widths add in quadrature in log space."""
    value = float(a) * float(b)

    def width(e: Estimate, side: float) -> float:
        return abs(math.log(side / float(e))) if side > 0 and float(e) > 0 else 0.0

    lo = value * math.exp(-math.hypot(width(a, a.lo), width(b, b.lo)))
    hi = value * math.exp(math.hypot(width(a, a.hi), width(b, b.hi)))
    return Estimate(value, lo, hi, unit)


# ---------------------------------------------------------------------------------------------- inputs


def parse_precision(value: Any) -> int | str:
    """16 / 32 / 'bf16' (and common spellings) -> 16, 32 or 'bf16'."""
    key = str(value).strip().lower()
    if key not in PRECISIONS:
        raise unknown_choice("precision", value, ["16", "32", "fp16", "fp32", "bf16", "amp"])
    return PRECISIONS[key]


def _positive(name: str, value: Any, integer: bool = False) -> float:
    """A positive finite number (a positive integer when `integer`; bools refused)."""
    return float(v.positive_int(name, value)) if integer else v.positive_float(name, value)


_DATASET_FIELDS = (
    "name",
    "train_size",
    "input_shape",
    "num_classes",
    "modality",
    "vocab_size",
    "train_tokens",
)


def _custom_dataset_spec(fields: dict[str, Any]) -> DatasetSpec:
    """A dict dataset, every field checked; errors start with 'dataset' so they name the argument."""
    from chronos_core.catalog.datasets import MODALITIES

    unknown = sorted(set(fields) - set(_DATASET_FIELDS), key=str)
    if unknown:
        raise ChronosError(f"dataset: unknown field(s) {unknown}. Accepted: {', '.join(_DATASET_FIELDS)}")
    need = {"train_size", "input_shape", "num_classes"}
    if "train_tokens" in fields:  # a token corpus: its sequences follow from the tokens
        need = {"input_shape", "num_classes"}
    if not need <= set(fields):
        raise ChronosError(f"dataset: a custom dataset needs {', '.join(sorted(need))}; got {sorted(fields)}")
    name = fields.get("name", "custom")
    if not isinstance(name, str) or not name.strip():
        raise ChronosError(f"dataset: name must be a non-empty string, got {name!r}")
    existing = Datasets.resolve(name)
    if existing is not None and Datasets.get(existing).source != "user":
        raise ChronosError(
            f"dataset: name {name!r} is the catalog dataset {existing!r}; pass {existing!r} itself or give"
            " the custom dataset another name"
        )
    shape = fields["input_shape"]
    if isinstance(shape, str | bytes) or not isinstance(shape, Sequence | np.ndarray) or not len(shape):
        raise ChronosError(
            f"dataset: input_shape must be a non-empty list of positive integers, got {shape!r}"
        )
    dims = tuple(v.positive_int(f"dataset: input_shape[{i}]", d) for i, d in enumerate(shape))
    vocab = fields.get("vocab_size")
    tokens = fields.get("train_tokens")
    modality = v.choice(
        "dataset: modality", fields.get("modality", "text" if tokens else "image"), MODALITIES
    )
    if tokens is not None:
        tokens = v.positive_int("dataset: train_tokens", tokens)
        if modality != "text" or len(dims) != 1:
            raise ChronosError(
                "dataset: train_tokens is for text corpora: modality 'text', input_shape (seq_len,)"
            )
        if tokens < dims[0]:
            raise ChronosError(
                f"dataset: train_tokens {tokens} is fewer than one sequence of {dims[0]} tokens"
            )
    return custom_dataset(
        name=name.strip(),
        train_size=0 if tokens else v.positive_int("dataset: train_size", fields["train_size"]),
        input_shape=dims,
        num_classes=v.positive_int("dataset: num_classes", fields["num_classes"]),
        modality=modality,
        vocab_size=None if vocab is None else v.positive_int("dataset: vocab_size", vocab),
        train_tokens=tokens,
    )


def resolve_dataset(dataset: Any) -> DatasetSpec:
    """A catalog name/DatasetSpec, or a dict {name, train_size, input_shape, num_classes[, modality]}
    (a token corpus: {name, train_tokens, input_shape: (seq_len,), num_classes[, vocab_size]})."""
    if isinstance(dataset, DatasetSpec):
        return dataset
    if isinstance(dataset, dict):
        return _custom_dataset_spec(dataset)
    if not isinstance(dataset, str):
        raise ChronosError(f"dataset must be a catalog name, a DatasetSpec or a dict, got {dataset!r}")
    return Datasets.get(dataset)


def resolve_optimizer(optimizer: Any, momentum: float | None = None) -> OptimizerSpec:
    """A catalog optimizer; SGD follows the CHRONOS tables (momentum 0.9, one state buffer per
    parameter) unless `momentum=0` asks for plain SGD."""
    if not isinstance(optimizer, OptimizerSpec | str):
        raise ChronosError(f"optimizer must be a name or an OptimizerSpec, got {optimizer!r}")
    spec = optimizer if isinstance(optimizer, OptimizerSpec) else Optimizers.get(optimizer)
    if momentum is not None and not (0 <= v.finite_float("momentum", momentum) < 1):
        raise ChronosError(f"momentum must be in [0, 1), got {momentum!r}")
    if spec.name in ("SGD", "SGD-momentum"):
        plain = momentum == 0 if momentum is not None else False
        return Optimizers.get("SGD" if plain else "SGD-momentum")
    return spec


def resolve_gpu(gpu: Any):
    """'cpu' (this machine), a catalog name or DeviceSpec, or a dict of specs for a custom GPU."""
    from chronos_core.catalog.devices import Devices, DeviceSpec, custom_device, local_cpu

    if isinstance(gpu, DeviceSpec):
        return gpu
    if isinstance(gpu, dict):
        specs = dict(gpu)
        name = specs.pop("name", "custom-gpu")
        if not isinstance(name, str):
            raise ChronosError(f"gpu: name must be a string, got {name!r}")
        for key, val in specs.items():
            if isinstance(val, bool | np.bool_) or (isinstance(val, float) and not math.isfinite(val)):
                raise ChronosError(f"gpu: field {key} must be a positive finite number, got {val!r}")
        try:  # same name again: replaced
            return custom_device(name, **{str(k): val for k, val in specs.items()})
        except ChronosError as exc:
            raise ChronosError(f"gpu: {exc}") from None
    if not isinstance(gpu, str):
        raise ChronosError(f"gpu must be a catalog name, 'cpu', a DeviceSpec or a dict, got {gpu!r}")
    if gpu.strip().lower() in ("cpu", "local", "localhost"):
        return local_cpu()
    return Devices.get(gpu)


def resolve_model(model: Any):
    """A zoo name or ModelSpec; `"hf:NAME"` (a shipped config: gpt2, gpt2-large, bert-base-uncased,
    ...; also without the prefix), `"hf:PATH"` or a path to any Hugging Face config.json;
    `"timm:NAME"` (any timm model); or a user torch.nn.Module / keras.Model."""
    from chronos_core.catalog.models import ModelSpec, get_model

    if isinstance(model, ModelSpec) or not isinstance(model, str):
        return model
    return get_model(model)


def _external(model: Any) -> bool:
    """A Hugging Face or timm model (built on meta from its config)."""
    from chronos_core.catalog.models import ExternalModelSpec

    return isinstance(model, ExternalModelSpec)


def _model_name(model: Any) -> str:
    return getattr(model, "name", None) if not _is_module(model) else type(model).__name__


def _is_module(model: Any) -> bool:
    return not hasattr(model, "family") or not hasattr(model, "builder")


def _family(model: Any, features: dict[str, Any]) -> str:
    """The catalog family, or for a user model the dominant layer kind in its inventory."""
    if not _is_module(model):
        return model.family
    for kind, family in (("attention", "Transformer"), ("rnn", "RNN"), ("conv", "CNN")):
        if features.get(f"count_{kind}_layers", 0) > 0:
            return family
    return "MLP"


def resolve_host(host: str | None) -> str | None:
    """The canonical provider name for `host` (any case), None for an unknown host."""
    from chronos_core.predict.columns import HOST_PROVIDERS

    if host is None or (isinstance(host, str) and not host.strip()):
        return None
    for known in HOST_PROVIDERS:
        if str(host).strip().lower() == known.lower():
            return known
    known_list = ", ".join(HOST_PROVIDERS)
    raise ChronosError(f"Unknown host {host!r}. Known: {known_list} (or none for another host)")


def device_row(spec) -> dict[str, Any]:
    """Canonical device columns for a DeviceSpec (catalog name, gpu_* columns, tensor peaks)."""
    from chronos_core.catalog.devices import canonical_device_columns

    return {
        "device": spec.name,
        **canonical_device_columns(spec.as_dict()),
        "gpu_fp16_tensor_tflops": spec.peak_fp16_tensor_tflops,
        "gpu_tf32_tensor_tflops": spec.peak_tf32_tensor_tflops,
        "gpu_compute_capability": spec.compute_capability,
    }


# ---------------------------------------------------------------------------------------------- predictor


class DoesNotFit(ChronosError):
    """The run's predicted peak memory exceeds the GPU's (`need_gb`, `have_gb`, in GiB)."""

    def __init__(self, message: str, need_gb: float, have_gb: float) -> None:
        super().__init__(message)
        self.need_gb, self.have_gb = need_gb, have_gb


@dataclass
class _Measured:
    batch_ms: Estimate
    compute_ms: float
    loader_ms: float
    row: dict[str, Any]


class TrainingTimePredictor:
    """Predict epoch time, epochs to convergence and total time of one training run, before running it.

    Arguments follow the CHRONOS README: `model` (catalog name or ModelSpec, `"hf:NAME"` / a
    config.json path / `"timm:NAME"`, or any nn.Module / keras.Model), `dataset` (catalog
    name/DatasetSpec or dict with train_size, input_shape, num_classes), `optimizer`, `batch_size`,
    `learning_rate`, `precision` (16 = AMP fp16, 32, 'bf16'),
    `gpu` (catalog name/DeviceSpec, a dict of specs for a custom GPU, or 'cpu' for this machine).
    SGD means SGD with momentum 0.9, as in the CHRONOS tables (their 'SGD' rows carry one optimizer
    state buffer per parameter); pass `momentum=0` for plain SGD.
    `patience`/`min_delta`/`max_epochs` define convergence (early stopping on validation loss).
    `measure`: on gpu='cpu', time a few real iterations here instead of predicting (default True).
    `model_kwargs` go to the zoo builder (e.g. depth=5 for the A100 project's CNN).
    `host`: the cloud the GPU's host runs in ('RunPod', 'GCP'), which decides the loader wait;
    None for a host the public tables do not cover.
    `seq_len`: tokens per sequence for text datasets (default: the dataset's, capped at a Hugging
    Face model's positions); a token corpus is cut into train_tokens // seq_len sequences.
    `num_gpus`: GPUs of one node; batch_size is the global batch and the cost counts every GPU.
    `parallel` (`chronos_core.predict.parallel`): 'dp' (default, DDP: each GPU runs batch_size /
    num_gpus and the gradients' all-reduce backward cannot hide is added), 'tp' (Megatron-LM tensor
    parallel, Hugging Face transformers: every GEMM split num_gpus ways, two activation all-reduces
    per layer each way) or 'pp' (GPipe pipeline parallel over `microbatches` micro-batches, default 1).
    Under tp and pp the kernel model's ratio of the parallel step to the one-GPU step scales this
    run's one-GPU compute time; memory is one GPU's share (states and activations / num_gpus).
    The time model follows the model (module docstring): the whole-model regressor for zoo models,
    the kernel model for Hugging Face / timm models and user models beyond the regressor's tables.
    """

    def __init__(
        self,
        model: Any,
        dataset: Any,
        optimizer: Any = "SGD",
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        precision: int | str = 32,
        gpu: Any = "cpu",
        *,
        patience: int = 5,
        min_delta: float = 1e-4,
        max_epochs: int = 200,
        momentum: float | None = None,
        measure: bool = True,
        model_kwargs: dict[str, Any] | None = None,
        host: str | None = None,
        seq_len: int | None = None,
        num_gpus: int = 1,
        parallel: str = "dp",
        microbatches: int | None = None,
    ) -> None:
        self.model = resolve_model(model)
        self.dataset = self._sized_dataset(resolve_dataset(dataset), seq_len)
        self.optimizer = resolve_optimizer(optimizer, momentum)
        self.batch_size = v.positive_int("batch_size", batch_size)
        self.learning_rate = v.positive_float("learning_rate", learning_rate)
        self.precision = parse_precision(precision)
        self.gpu = resolve_gpu(gpu)
        self.patience = v.positive_int("patience", patience)
        self.min_delta = v.non_negative_float("min_delta", min_delta)
        self.max_epochs = v.positive_int("max_epochs", max_epochs)
        if not isinstance(measure, bool | np.bool_):
            raise ChronosError(f"measure must be True or False, got {measure!r}")
        self.measure = bool(measure)
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise ChronosError(f"model_kwargs must be a dict, got {model_kwargs!r}")
        self.model_kwargs = dict(model_kwargs or {})
        self.host = resolve_host(host)
        self._features: dict[str, Any] | None = None
        self._measured: _Measured | None = None
        self._time_pred: pd.DataFrame | None = None
        self._ops: pd.DataFrame | None = None
        self._memory: Any = None  # MemoryEstimate, False where it cannot be simulated
        self.parallel, self.num_gpus, self.microbatches = self._check_parallel(
            num_gpus, parallel, microbatches
        )
        self._replicas: dict[int, TrainingTimePredictor] = {}
        self._check_memory = True  # False on the one-GPU time base of a tensor/pipeline-parallel run
        self._ratio: float | None = None  # `_parallel_ratio`, computed once

    def _check_parallel(self, num_gpus: Any, parallel: Any, microbatches: Any) -> tuple[str, int, int]:
        """(scheme, GPUs, micro-batches), each checked with a one-line error."""
        from chronos_core.predict.parallel import check_plan, link_gbs

        scheme, n, m = check_plan(
            parallel, num_gpus, microbatches, self.batch_size, pp_name="parallel='pp'", where="this run"
        )
        if n > 1 and self.on_cpu:
            raise ChronosError(f"num_gpus {num_gpus!r} applies to GPUs; gpu='cpu' is one machine (use 1)")
        if scheme != "dp" and (self.on_cpu or not self._torch_model):
            raise ChronosError(
                f"parallel {scheme!r} is priced op by op: it needs a PyTorch model on a catalog GPU "
                "(use parallel='dp' for Keras models and gpu='cpu')"
            )
        if n > 1:
            link_gbs(self.gpu)  # a GPU whose interconnect nobody knows fails here, in one line
        return scheme, n, m

    @property
    def _sharded(self) -> bool:
        """Tensor or pipeline parallel over more than one GPU or micro-batch."""
        return self.parallel != "dp" and (self.num_gpus > 1 or self.microbatches > 1)

    def _at_batch(self, batch_size: int) -> TrainingTimePredictor:
        """This run on one GPU at `batch_size` (caches kept per batch)."""
        if batch_size not in self._replicas:
            replica = copy.copy(self)
            replica.batch_size = batch_size
            replica.parallel, replica.num_gpus, replica.microbatches = "dp", 1, 1
            replica._features = replica._measured = replica._time_pred = replica._ops = replica._memory = None
            replica._replicas, replica._ratio = {}, None
            self._replicas[batch_size] = replica
        return self._replicas[batch_size]

    def per_gpu(self) -> TrainingTimePredictor:
        """The one-GPU run whose traced step each GPU's work comes from: batch_size / num_gpus (data
        parallel), the whole batch (tensor parallel: each GPU runs its shard of it), one micro-batch
        (pipeline parallel); itself on one GPU."""
        if self.num_gpus == 1 and not self._sharded:
            return self
        from chronos_core.predict.parallel import per_gpu_batch

        return self._at_batch(per_gpu_batch(self.batch_size, self.parallel, self.num_gpus, self.microbatches))

    def _one_gpu(self) -> TrainingTimePredictor:
        """The time base: the replica data parallel reads; under tp and pp this run on one GPU, whose
        memory need not fit (each GPU holds a share: `memory_estimate`)."""
        if not self._sharded:
            return self.per_gpu()
        base = self._at_batch(self.batch_size)
        base._check_memory = False
        return base

    def _parallel_ratio(self) -> float:
        """The kernel model's step on the tensor- or pipeline-parallel plan over its one-GPU step at
        the whole batch (same host), communication included."""
        from chronos_core.predict.kernel_default import default_kernel_model
        from chronos_core.predict.parallel import on_gpus, per_gpu_graph
        from chronos_core.predict.step import host_for, predict_steps

        if self._ratio is None:
            whole = self._at_batch(self.batch_size)._step_ops()[0]
            graph = per_gpu_graph(self.per_gpu()._step_ops()[0], self.parallel, self.num_gpus)
            host = host_for(self.host, amp=self.precision == 16)
            one, part = predict_steps(
                [(whole, self.gpu.name), (graph, self.gpu.name)], default_kernel_model(), host
            )
            plan = on_gpus(part, graph, self.parallel, self.num_gpus, self.microbatches, self.gpu.name)
            self._ratio = plan["pred_step_ms"] / one["pred_step_ms"]
        return self._ratio

    def _allreduce_ms(self) -> float:
        """The gradient all-reduce (ms) that backward does not hide; backward is taken as 2/3 of the
        per-GPU compute (it runs twice the forward's FLOPs)."""
        from chronos_core.predict.parallel import data_parallel_ms

        replica = self.per_gpu()
        compute = float(replica._predicted()["pred_compute_ms"].iloc[0])
        params = float(replica.features()["param_count"])
        return data_parallel_ms(params, self.num_gpus, self.gpu, compute * 2 / 3)["exposed_ms"]

    def _sized_dataset(self, dataset: DatasetSpec, seq_len: Any) -> DatasetSpec:
        """The dataset at the run's sequence length: `seq_len` when given, else the dataset's
        (capped at a Hugging Face model's positions); a token corpus is re-cut into sequences."""
        if _external(self.model):
            dataset = self.model.dataset(dataset)  # modality first: 'hf:gpt2 takes text data; ...'
        if seq_len is None:
            if _external(self.model) and self.model.kind == "hf":
                length = self.model.default_seq_len(dataset)
                return dataset if length == dataset.seq_len else dataset.with_seq_len(length)
            return dataset
        length = v.positive_int("seq_len", seq_len)
        if dataset.seq_len is None:
            raise ChronosError(
                f"seq_len applies to text and sequence datasets; {dataset.name} is {dataset.modality} "
                f"(input_shape {tuple(dataset.input_shape)})"
            )
        if _external(self.model) and self.model.kind == "hf" and self.model.hard_position_limit:
            if length > self.model.max_positions:
                raise ChronosError(
                    f"seq_len {length} exceeds the {self.model.max_positions} positions of "
                    f"{self.model.name}; use seq_len <= {self.model.max_positions}"
                )
        return dataset if length == dataset.seq_len else dataset.with_seq_len(length)

    # ------------------------------------------------------------------ features and rows
    @property
    def seq_len(self) -> int | None:
        """Tokens (or steps) per sample for text and sequence datasets, else None."""
        return self.dataset.seq_len

    @property
    def on_cpu(self) -> bool:
        return self.gpu.kind == "cpu"

    @property
    def measures_here(self) -> bool:
        """Timed on the spot: only this machine's own CPU (a dict CPU is predicted from its specs)."""
        return (
            self.on_cpu
            and self.measure
            and self.gpu.source == "detected on this machine"
            and not _external(self.model)
        )

    @property
    def _torch_model(self) -> bool:
        if _is_module(self.model):
            return type(self.model).__module__.split(".")[0] != "keras" and hasattr(self.model, "parameters")
        return self.model.framework == "torch"

    @property
    def steps_per_epoch(self) -> int:
        return self.dataset.steps_per_epoch(self.batch_size)

    def features(self) -> dict[str, Any]:
        """Computational features of the configuration (FLOPs, bytes, layer mix), computed once."""
        if self._features is None:
            from chronos_core.features import compute_features

            try:
                self._features = compute_features(
                    self.model, self.dataset, self.batch_size, self.precision, self.optimizer,
                    **self.model_kwargs,
                )  # fmt: skip
            except ChronosError:
                raise
            except Exception as exc:  # noqa: BLE001 - a user model that does not fit the dataset
                why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ChronosError(
                    f"Cannot trace model {_model_name(self.model)!r} on {self.dataset.name} inputs of shape "
                    f"{self.dataset.input_shape}: {why}"
                ) from None
        return self._features

    def row(self) -> dict[str, Any]:
        """The configuration as one canonical time row (what the time model reads)."""
        feats = self.features()
        row = {
            "model": _model_name(self.model),
            "family": _family(self.model, feats),
            "dataset": self.dataset.name,
            "dataset_size": self.dataset.train_size,
            "input_shape": str(tuple(self.dataset.input_shape)),
            "num_classes": self.dataset.num_classes,
            "optimizer": self.optimizer.name,
            "learning_rate": self.learning_rate,
            "precision": 16 if self.precision in (16, "bf16") else 32,
            "amp": self.precision in (16, "bf16"),
            **{k: v for k, v in feats.items() if k != "batch_size"},
            "batch_size": self.batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            **device_row(self.gpu),
            "host_provider": self.host,
        }
        return row

    # ------------------------------------------------------------------ time
    def _measure_here(self) -> _Measured:
        from chronos_core.profiling.timers import TimingConfig, measure

        precision = {16: "16", 32: "32", "bf16": "bf16"}[self.precision]
        cfg = TimingConfig(
            model=self.model if _is_module(self.model) else self.model.name,
            dataset=self.dataset, batch_size=self.batch_size, precision=precision,
            optimizer=self.optimizer.name, learning_rate=self.learning_rate, device="cpu",
            repeats=3, warmup=2, iters=3, model_kwargs=self.model_kwargs,
        )  # fmt: skip
        row = measure(cfg, features=False)
        mean = float(row["batch_time_ms"])
        spread = max(1.2816 * float(row.get("batch_time_ms_cv", 0.0) or 0.0), 0.05)
        # multiplicative, so a noisy machine (cv near 1) widens the interval without a negative lower end
        est = Estimate(mean, mean / (1 + spread), mean * (1 + spread), "ms/iteration")
        return _Measured(est, float(row["compute_ms"]), float(row["loader_wait_ms"]), row)

    def _measure_keras_here(self, steps: int = 8, epochs: int = 4) -> _Measured:
        """A clone of the Keras model fit on synthetic data for a few epochs (epoch 1 dropped)."""
        from chronos_core._env import tensorflow
        from chronos_core.profiling.keras_timer import time_keras_epochs

        tf = tensorflow()
        model = self.model if _is_module(self.model) else self.model.build(self.dataset, **self.model_kwargs)
        clone = tf.keras.models.clone_model(model)
        shape = tuple(int(d) for d in clone.input_shape[1:])
        rng = np.random.default_rng(0)
        n = self.batch_size * steps
        x = rng.random((n, *shape), dtype=np.float32)
        y = rng.integers(0, self.dataset.num_classes, n)
        name = self.optimizer.name
        opt = (
            tf.keras.optimizers.SGD(self.learning_rate, momentum=0.9 if name == "SGD-momentum" else 0.0)
            if name.startswith("SGD")
            else name.lower()
        )
        timing = time_keras_epochs(clone, x, y, self.batch_size, epochs=epochs, optimizer=opt)
        per_step = np.asarray(timing.epoch_times_s[1:]) * 1000.0 / steps
        mean = float(per_step.mean())
        spread = max(1.2816 * float(per_step.std() / mean), 0.05)
        est = Estimate(mean, mean / (1 + spread), mean * (1 + spread), "ms/iteration")
        row = {"framework": "keras", "epoch_times_s": timing.epoch_times_s, "steps_per_timed_epoch": steps}
        return _Measured(est, mean, 0.0, row)

    def _trace_options(self) -> tuple[str, str]:
        """The op graph's precision and optimizer names for this run (SGD traced with its momentum)."""
        precision = {16: "amp", 32: "fp32", "bf16": "bf16", "tf32": "tf32"}.get(self.precision, "fp32")
        optimizer = {"SGD": "sgd", "SGD-momentum": "sgd", "Adam": "adam", "AdamW": "adamw"}.get(
            self.optimizer.name, "adamw"
        )
        return precision, optimizer

    def memory_estimate(self):  # noqa: ANN201 - MemoryEstimate, imported lazily (torch)
        """Predicted peak GPU memory of one training step (`chronos_core.features.memory`: parameters,
        gradients, optimizer states, saved activations, temporaries, allocator overhead), computed once;
        None on the CPU, for Keras models, and where the step cannot be simulated."""
        if self._sharded:
            whole = self._at_batch(self.batch_size).memory_estimate()
            return whole.sharded(self.num_gpus) if whole is not None else None
        if self.num_gpus > 1:
            return self.per_gpu().memory_estimate()
        if self._memory is None and not self.on_cpu and self._torch_model:
            precision, optimizer = self._trace_options()
            try:
                self._memory = _memory_estimate(
                    self.model, self.dataset, self.batch_size, precision, optimizer, self.model_kwargs
                )
            except Exception:  # noqa: BLE001 - a step the simulation cannot run: the rough check stands
                self._memory = False
        return self._memory or None

    def check_fits(self) -> None:
        """Refuse (one line, `DoesNotFit`) a run whose predicted peak training memory exceeds the GPU's:
        the simulated step of `memory_estimate()`, or for Keras models parameters, gradients, optimizer
        states and master weights plus the batch's activations. With num_gpus, what one GPU holds."""
        if self.num_gpus > 1 and not self._sharded:
            return self.per_gpu().check_fits()
        if self.on_cpu:
            return
        memory_gb = float(self.gpu.memory_gb)
        if not (math.isfinite(memory_gb) and memory_gb > 0):
            return
        est = self.memory_estimate()
        if est is not None:
            need_gb, what = est.peak_gb, f"peak of the {est.peak_phase}"
            fits = est.fits(memory_gb)
        else:
            feats = self.features()
            need = float(feats.get("total_state_bytes", 0)) + self.batch_size * float(
                feats.get("act_bytes_per_sample", 0)
            )
            need /= self.num_gpus  # tensor or pipeline parallel: each GPU's share
            need_gb, what = need / 2**30, "states + activations"
            fits = not (math.isfinite(need) and need > memory_gb * 2**30)
        if not fits:
            raise DoesNotFit(
                f"batch_size {self.batch_size} of {_model_name(self.model)} on {self.dataset.name} does not "
                f"fit on {self.gpu.name}: needs ~{need_gb:,.1f} GB ({what}), the GPU has {memory_gb:g} GB",
                need_gb=need_gb,
                have_gb=memory_gb,
            )

    def _predicted(self) -> pd.DataFrame:
        if self._time_pred is None:
            self._gpu_only()
            if self._check_memory:
                self.check_fits()
            if self._kernel_model_applies():
                kernel = self._kernel_prediction()
                if kernel is not None:
                    self._time_pred = kernel
                    return self._time_pred
            from chronos_core.predict.time_models import predict_time

            pred = predict_time(self.row())
            if not np.isfinite(pred["pred_batch_time_ms"].to_numpy(dtype=float)).all():
                raise ChronosError(
                    f"No time prediction for {_model_name(self.model)} on {self.gpu.name}: its specs lack "
                    "peak_fp32_tflops or memory_bandwidth_gbs"
                )
            pred = self._blend_kernel_model(pred)
            if "time_model" not in pred:
                pred = pred.assign(time_model=TIME_WHOLE)
            self._time_pred = pred
        return self._time_pred

    def _gpu_only(self) -> None:
        if self.on_cpu and _external(self.model):
            raise ChronosError(
                f"{self.model.name} is priced op by op on a GPU: pass gpu= a catalog GPU (e.g. A100, "
                "H100-SXM); gpu='cpu' times zoo and user models only"
            )

    def _kernel_model_applies(self) -> bool:
        """The rule (module docstring): Hugging Face / timm models, and user torch models beyond the
        regressor's tables, on a catalog GPU."""
        if self.on_cpu or not self._torch_model or self.gpu.name not in _catalog_gpus():
            return False
        if _external(self.model):
            return True
        if not _is_module(self.model):
            return self._beyond_tables()  # zoo models: the regressor (blended on unseen GPUs) within
        feats = self.features()
        return (
            float(feats.get("param_count", 0)) > TABLE_MAX_PARAMS
            or float(feats.get("flops_train_per_batch", 0)) > TABLE_MAX_FLOPS_PER_BATCH
        )

    def _beyond_tables(self) -> bool:
        """A zoo model's step larger (training FLOPs per sample) than any of that model's in the time
        tables, e.g. ResNet-50 on ImageNet: there the kernel model beats the regressor, which would
        extrapolate (notebook 08, `chronos_unseen_size.csv`)."""
        from chronos_core.predict.time_models import flops_ceilings

        ceiling = flops_ceilings().get(str(self.row().get("model")))
        flops = float(self.features().get("flops_train_per_sample", 0) or 0)
        return ceiling is not None and flops > ceiling

    def _kernel_prediction(self) -> pd.DataFrame | None:
        """Iteration time from the kernel model: the traced step's compute (median measured host)
        with its held-out 80% interval, plus the loader wait (0 on a token corpus, else the
        regressor's loader model). None when a user model cannot be traced (the regressor answers)."""
        from chronos_core.predict.step import step_interval

        try:
            compute = self._kernel_compute_ms()
        except ChronosError:
            if _external(self.model):
                raise
            return None
        if not (math.isfinite(compute) and compute > 0):
            raise ChronosError(
                f"No kernel-model time for {_model_name(self.model)} on {self.gpu.name}: its specs lack "
                "peak throughput or memory bandwidth"
            )
        q10, q90 = step_interval()
        if self.dataset.is_language_modelling:
            loader = 0.0  # pre-tokenized ids (a memory-mapped token file): no decode, no wait
        else:
            from chronos_core.predict.time_models import predict_time

            loader = float(predict_time(self.row())["pred_loader_ms"].iloc[0])
            loader = loader if math.isfinite(loader) and loader > 0 else 0.0
        return pd.DataFrame([{
            "pred_compute_ms": compute,
            "pred_compute_ms_lo": compute * math.exp(q10),
            "pred_compute_ms_hi": compute * math.exp(q90),
            "pred_loader_ms": loader,
            "pred_batch_time_ms": compute + loader,
            "pred_batch_time_ms_lo": compute * math.exp(q10) + loader,
            "pred_batch_time_ms_hi": compute * math.exp(q90) + loader,
            "time_model": TIME_KERNEL,
        }])  # fmt: skip

    @property
    def time_model(self) -> str:
        """Which model gives the iteration time: measured here, the whole-model regressor (or its
        blend with the kernel model on unseen GPUs) or the kernel model (module docstring)."""
        if self.measures_here:
            return TIME_MEASURED
        return str(self._one_gpu()._predicted()["time_model"].iloc[0])

    def _time_regime(self) -> str:
        from chronos_core.predict.time_models import default_model

        model = default_model()
        return str(model.regimes(pd.DataFrame([self.row()]))[0]) if hasattr(model, "regimes") else "seen"

    def _blend_kernel_model(self, pred: pd.DataFrame) -> pd.DataFrame:
        """On a GPU the time tables lack, the compute time is the geometric mean of the whole-model
        regressor and the kernel model (leave-one-GPU-out: 23% vs 25% and 26% alone, notebook 08);
        elsewhere the whole-model regressor stands (unseen configs: 13% against the kernel model's 20%)."""
        if self.on_cpu or not self._torch_model or self.gpu.name not in _catalog_gpus():
            return pred
        if not self._time_regime().startswith("unseen_gpu"):
            return pred
        try:
            kernel_ms = self._kernel_compute_ms()
        except ChronosError:
            return pred
        out = pred.copy()
        whole = float(out["pred_compute_ms"].iloc[0])
        compute = math.sqrt(whole * kernel_ms)
        batch = compute + float(out["pred_loader_ms"].iloc[0])
        ratio = batch / float(out["pred_batch_time_ms"].iloc[0])
        out["pred_compute_ms"] = compute
        out["pred_batch_time_ms"] = batch
        out["pred_batch_time_ms_lo"] = out["pred_batch_time_ms_lo"] * ratio
        out["pred_batch_time_ms_hi"] = out["pred_batch_time_ms_hi"] * ratio
        out["time_model"] = "geometric mean of whole-model and kernel-model compute"
        return out

    def _kernel_compute_ms(self) -> float:
        """The kernel model's step time with the median measured host of this cloud and precision."""
        from chronos_core.predict.kernel_default import default_kernel_model
        from chronos_core.predict.step import HostOverhead, host_for, host_step_ms, predict_ops

        ops, _ = self._step_ops()
        priced = predict_ops(ops, self.gpu.name, default_kernel_model(), HostOverhead(0.0, 0.0, 0.0))
        host = host_for(self.host, amp=self.precision == 16)
        return float(host_step_ms(priced["pred_ms"].sum(), priced["count"].fillna(1).sum(), host))

    def predict_iteration_time(self) -> Estimate:
        """Milliseconds per training iteration (loader wait + compute), with an 80% interval."""
        self._gpu_only()
        if self._sharded:  # the one-GPU compute scaled by the kernel model's parallel / one-GPU step
            self.check_fits()  # each GPU's share
            p = self._one_gpu()._predicted().iloc[0]
            extra = float(p["pred_compute_ms"]) * (self._parallel_ratio() - 1)
            it = float(p["pred_batch_time_ms"])
            k = (it + extra) / it
            return Estimate(
                it + extra, p["pred_batch_time_ms_lo"] * k, p["pred_batch_time_ms_hi"] * k, "ms/iteration"
            )
        if self.num_gpus > 1:
            it, comm = self.per_gpu().predict_iteration_time(), self._allreduce_ms()
            return Estimate(float(it) + comm, it.lo + comm, it.hi + comm, "ms/iteration")
        if self.measures_here:
            if self._measured is None:
                self._measured = self._measure_here() if self._torch_model else self._measure_keras_here()
            return self._measured.batch_ms
        p = self._predicted().iloc[0]
        return Estimate(p["pred_batch_time_ms"], p["pred_batch_time_ms_lo"], p["pred_batch_time_ms_hi"],
                        "ms/iteration")  # fmt: skip

    def predict_epoch_time(self) -> Estimate:
        """Seconds per epoch (steps per epoch x iteration time), with an 80% interval."""
        it = self.predict_iteration_time()
        k = self.steps_per_epoch / 1000.0
        return Estimate(float(it) * k, it.lo * k, it.hi * k, "s/epoch")

    def predict_tokens_per_second(self) -> Estimate | None:
        """Training throughput in tokens/s (batch_size x seq_len / iteration time) for text datasets
        (token ids), None otherwise; the interval follows the iteration time's."""
        if self.dataset.modality != "text" or not self.seq_len:
            return None
        it = self.predict_iteration_time()
        tokens = self.batch_size * self.seq_len * 1000.0
        return Estimate(tokens / float(it), tokens / it.hi, tokens / it.lo, "tokens/s")

    # ------------------------------------------------------------------ epochs
    def convergence_row(self) -> dict[str, Any]:
        """The configuration in the convergence schema (what the meta-regressor reads)."""
        feats = self.features()
        return {
            "model": _model_name(self.model),
            "family": _family(self.model, feats),
            "dataset": self.dataset.name,
            "dataset_size": self.dataset.train_size,
            "num_classes": self.dataset.num_classes,
            "param_count": feats["param_count"],
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer.name,
            "patience": self.patience,
            "min_delta": self.min_delta,
            "max_epochs": self.max_epochs,
        }

    def predict_number_of_epochs(self, observed_val_loss: Sequence[float] | None = None) -> Estimate:
        """Epochs until early stopping fires (patience, min_delta), with an 80% interval, at most max_epochs.

        `observed_val_loss`: the validation losses of the epochs a running job has finished; the
        prediction then conditions on them (the learned curve prior; re-plan a running job with it).
        """
        from chronos_core.convergence.curve_prior import default_curve_prior

        row = self.convergence_row()
        if observed_val_loss is not None:
            from chronos_core.convergence.data import parse_prefix

            row["val_loss_prefix"] = parse_prefix(list(observed_val_loss), where="observed_val_loss")
        out = default_curve_prior().predict(pd.DataFrame([row]), k=None).iloc[0]
        cap = float(self.max_epochs)
        return Estimate(min(out["pred"], cap), min(out["lo"], cap), min(out["hi"], cap), "epochs")

    def predict_remaining(self, observed_val_loss: Sequence[float]) -> dict[str, Any]:
        """Re-plan a running job from the validation losses of its finished epochs: the epochs still to
        come, their time and cost (80% intervals), and whether early stopping has already fired."""
        from chronos_core.convergence.curve_prior import default_curve_prior, remaining_epochs
        from chronos_core.convergence.data import parse_prefix

        losses = parse_prefix(list(observed_val_loss), where="observed_val_loss")
        if not losses:
            raise ChronosError("observed_val_loss: give the validation loss of at least one finished epoch")
        if len(losses) > self.max_epochs:
            raise ChronosError(
                f"observed_val_loss has {len(losses)} epochs, more than max_epochs {self.max_epochs}"
            )
        left = remaining_epochs(default_curve_prior(), self.convergence_row(), losses)
        if left["finished"]:
            left.update(remaining=0.0, remaining_lo=0.0, remaining_hi=0.0)
        cap = float(self.max_epochs - len(losses))
        epochs = Estimate(min(left["remaining"], cap), min(left["remaining_lo"], cap),
                          min(left["remaining_hi"], cap), "epochs")  # fmt: skip
        epoch = self.predict_epoch_time()  # ends multiplied: an interval that may reach 0 epochs stays sound
        seconds = Estimate(float(epoch) * float(epochs), epoch.lo * epochs.lo, epoch.hi * epochs.hi, "s")
        per_s = self._price_per_s()
        return {
            "epochs_seen": len(losses),
            "finished": left["finished"],
            "remaining_epochs": epochs.as_dict(),
            "remaining_time_s": seconds.as_dict(),
            "remaining_cost_usd": {
                "value": float(seconds) * per_s,
                "lo": seconds.lo * per_s,
                "hi": seconds.hi * per_s,
            },  # fmt: skip
        }

    def _price_per_s(self) -> float:
        """Dollars per second of the run: every GPU's hourly price (NaN where none is known)."""
        price = float(self.gpu.price_per_hr_usd) * self.num_gpus
        return price / 3600.0 if price > 0 else math.nan

    # ------------------------------------------------------------------ total
    def predict_total_time(self) -> TotalTime:
        """Seconds to convergence (epochs x epoch time) with .cost_usd from the GPU's $/hr (NaN if none)."""
        total = combine(self.predict_epoch_time(), self.predict_number_of_epochs(), "s")
        out = TotalTime(float(total), total.lo, total.hi, "s")
        per_s = self._price_per_s()
        out.cost_usd, out.cost_usd_lo, out.cost_usd_hi = float(out) * per_s, out.lo * per_s, out.hi * per_s
        return out

    def summary(self) -> dict[str, Any]:
        """All predictions as plain numbers (what `chronos predict --json` prints)."""
        epoch, epochs, total = (
            self.predict_epoch_time(),
            self.predict_number_of_epochs(),
            self.predict_total_time(),
        )
        out = {
            "model": _model_name(self.model),
            "dataset": self.dataset.name,
            "gpu": self.gpu.name,
            "batch_size": self.batch_size,
            "num_gpus": self.num_gpus,
            "parallel": self.parallel,
            "microbatches": self.microbatches,
            "precision": self.precision,
            "optimizer": self.optimizer.name,
            "learning_rate": self.learning_rate,
            "steps_per_epoch": self.steps_per_epoch,
            "time_source": "measured here" if self._measured is not None else "predicted",
            "epoch_time_s": epoch.as_dict(),
            "epochs": epochs.as_dict(),
            "total_time_s": total.as_dict(),
            "price_per_hr_usd": self.gpu.price_per_hr_usd,
            "time_model": self.time_model,
            "iteration_time_ms": self.predict_iteration_time().as_dict(),
            "param_count": int(self.features()["param_count"]),
        }
        if self.seq_len is not None:
            out["seq_len"] = self.seq_len
        tokens = self.predict_tokens_per_second()
        if tokens is not None:
            out["tokens_per_s"] = tokens.as_dict()
        if self.dataset.train_tokens is not None:
            out["train_tokens"] = self.dataset.train_tokens
        memory = self.memory_estimate()
        if memory is not None:
            out["peak_memory_gb"] = round(memory.peak_gb, 3)
            out["gpu_memory_gb"] = float(self.gpu.memory_gb)
        return out

    # ------------------------------------------------------------------ explanation
    def explain(self) -> dict[str, Any]:
        """Features, physics terms, intervals and the training data the prediction leans on."""
        from chronos_core.predict.physics import physics_frame

        row = self.per_gpu().row()  # the time terms: one GPU's step (data parallel: its share of the batch)
        phys = physics_frame(pd.DataFrame([row])).iloc[0].to_dict()
        summary = self.summary()
        out: dict[str, Any] = {"configuration": summary, "features": self.features()}
        out["time_model"] = {"name": summary["time_model"], "why": self._time_model_reason()}
        out["physics"] = {k: float(v) for k, v in phys.items() if isinstance(v, int | float | np.floating)}
        out["data"] = {
            "time": time_support(row),
            "convergence": convergence_support(self.convergence_row()),
        }
        if not self.on_cpu and self._torch_model and self.gpu.name in _catalog_gpus():
            try:
                out["operators"] = self.operators()
            except ChronosError as exc:  # a model the tracer cannot run: say so, keep the rest
                out["operators"] = {"error": str(exc)}
        if self._measured is not None:
            out["measured_here"] = {
                k: v for k, v in self._measured.row.items() if not str(k).endswith("_json")
            }
        else:
            from chronos_core.predict.time_models import default_model

            model = default_model()
            if summary["time_model"] == TIME_KERNEL:
                out["data"]["time"]["interval_regime"] = (
                    "kernel model: held-out step residuals (leave-one-GPU-out)"
                )
            elif hasattr(model, "regimes"):  # which calibrated interval the time prediction carries
                out["data"]["time"]["interval_regime"] = str(model.regimes(pd.DataFrame([row]))[0])
        return out

    def _time_model_reason(self) -> str:
        name = self.time_model
        if name == TIME_MEASURED:
            return "gpu='cpu': a few iterations of the real training loop were timed on this machine"
        if name == TIME_KERNEL:
            what = (
                f"{self.model.name} is a {'Hugging Face' if self.model.kind == 'hf' else 'timm'} model"
                if _external(self.model)
                else f"{_model_name(self.model)}'s step is larger than any in the regressor's tables"
            )
            loader = (
                "loader wait 0 (pre-tokenized token corpus)"
                if self.dataset.is_language_modelling
                else "loader wait from the regressor's loader model"
            )
            return (
                f"{what}: its training step was traced op by op on the meta device and each op priced "
                f"on {self.gpu.name} by the kernel model, plus the median measured host overhead; {loader}"
            )
        if name == TIME_WHOLE:
            return "a zoo model: the regressor trained on the CHRONOS tables and our measurements"
        return (
            f"{self.gpu.name} is not in the regressor's tables: its compute is blended with the kernel model"
        )

    def _step_ops(self) -> tuple[pd.DataFrame, str]:
        """The traced operators of one training step (computed once) and the optimizer traced."""
        if self.on_cpu:
            raise ChronosError("operators() prices a step on a GPU; gpu='cpu' is measured, not traced")
        if not self._torch_model:
            raise ChronosError("operators() traces torch models; Keras models are not traced op by op")
        precision, optimizer = self._trace_options()
        if self._ops is None:
            from chronos_core.features.opgraph import trace_step

            if _is_module(self.model):
                example = torch_example_input(self.dataset, self.batch_size)
                self._ops = trace_step(self.model, example, precision=precision, optimizer=optimizer)
            elif _external(self.model):
                self._ops = _external_ops(self.model, self.dataset, self.batch_size, precision, optimizer)
            else:
                self._ops = trace_step(
                    self.model.name,
                    batch_size=self.batch_size,
                    precision=precision,
                    optimizer=optimizer,
                    dataset=self.dataset.name,
                )
        return self._ops, optimizer

    def operators(self, top: int = 10) -> dict[str, Any]:
        """The step's operators priced by the kernel model: the step's parts (ms) and the `top` ops by
        predicted time, each with its bound (compute, memory, launch). GPUs and torch models only."""
        from chronos_core.predict.kernel_default import default_kernel_model
        from chronos_core.predict.step import predict_ops, step_totals, top_ops

        if self.num_gpus > 1 and not self._sharded:
            return self.per_gpu().operators(top)
        from chronos_core.predict.parallel import per_gpu_graph

        ops, optimizer = self.per_gpu()._step_ops()
        ops = per_gpu_graph(ops, self.parallel, self.num_gpus)  # tp: one GPU's shard; pp: one micro-batch
        priced = predict_ops(ops, self.gpu.name, default_kernel_model())
        return {
            "step_ms": {k: round(v, 4) for k, v in step_totals(priced).items()},
            "optimizer_traced": optimizer,
            "top_operators": top_ops(priced, n=top).round(4).to_dict(orient="records"),
        }

    def __repr__(self) -> str:
        seq = f", seq_len={self.seq_len}" if self.seq_len is not None else ""
        gpus = f", num_gpus={self.num_gpus}" if self.num_gpus > 1 else ""
        gpus += f", parallel={self.parallel!r}" if self.parallel != "dp" else ""
        gpus += f", microbatches={self.microbatches}" if self.microbatches > 1 else ""
        return (
            f"TrainingTimePredictor(model={_model_name(self.model)!r}, dataset={self.dataset.name!r}, "
            f"optimizer={self.optimizer.name!r}, batch_size={self.batch_size}, "
            f"learning_rate={self.learning_rate}, precision={self.precision!r}, "
            f"gpu={self.gpu.name!r}{seq}{gpus})"
        )


# ---------------------------------------------------------------------------------------------- support


def _catalog_gpus() -> set[str]:
    from chronos_core.catalog.devices import Devices

    return set(Devices.names())


@functools.lru_cache(maxsize=32)
def _traced_external(spec: Any, dataset: DatasetSpec, batch_size: int, precision: str, optimizer: str):
    from chronos_core.features.opgraph import trace_step

    module = spec.build(dataset)
    example = spec.example_input(dataset, batch_size=batch_size, device="meta")
    return trace_step(module, example, precision=precision, optimizer=optimizer)


def _external_ops(spec: Any, dataset: DatasetSpec, batch_size: int, precision: str, optimizer: str):
    """The traced step of a Hugging Face / timm model, built by its spec (the model `features()`
    counts: LM or classification head as the dataset asks), cached per configuration."""
    return _traced_external(spec, dataset, batch_size, precision, optimizer).copy()


_EXTERNAL_MEMORY: dict[tuple, Any] = {}  # Hugging Face / timm estimates by configuration, whatever the GPU


def _memory_estimate(
    model: Any, dataset: DatasetSpec, batch_size: int, precision: str, optimizer: str, model_kwargs: dict
):  # noqa: ANN202 - MemoryEstimate
    """The memory simulation of one configuration: a user module with a meta input batch, a Hugging
    Face / timm model as its spec builds it for the dataset, a zoo model by name (cached there)."""
    from chronos_core.features.memory import estimate_training_memory

    options = {"batch_size": batch_size, "precision": precision, "optimizer": optimizer}
    if _is_module(model):
        example = torch_example_input(dataset, batch_size)
        return estimate_training_memory(model, example_input=example, **options)
    if _external(model):
        key = (model.source, dataset, batch_size, precision, optimizer)
        if key not in _EXTERNAL_MEMORY:
            module, example = model.build(dataset), model.example_input(dataset, batch_size, device="meta")
            _EXTERNAL_MEMORY[key] = estimate_training_memory(module, example_input=example, **options)
        return _EXTERNAL_MEMORY[key]
    seq_len = dataset.seq_len if dataset.modality == "text" else None
    return estimate_training_memory(
        model.name, dataset=dataset.name, model_kwargs=model_kwargs, seq_len=seq_len, **options
    )


def torch_example_input(dataset: DatasetSpec, batch_size: int) -> Any:
    """A meta-device input batch of the dataset's shape (token ids for text)."""
    import torch

    shape = (batch_size, *dataset.input_shape)
    if dataset.modality == "text":
        return torch.zeros(shape, dtype=torch.long, device="meta")
    return torch.empty(shape, device="meta")


def _norm(values: pd.Series) -> pd.Series:
    return values.astype(str).str.lower().str.replace(r"[^a-z0-9]", "", regex=True)


def time_support(row: dict[str, Any]) -> dict[str, Any]:
    """How much measured data is near this row: same device, same model, same config, nearest configs."""
    from chronos_core.catalog.devices import Devices
    from chronos_core.predict.time_models import training_table

    table = training_table()
    devices = table["device"].astype(str).map(lambda d: Devices.resolve(d) or d)
    same_dev = devices == row["device"]
    name = "".join(ch for ch in str(row["model"]).lower() if ch.isalnum())
    same_model = _norm(table["model"]) == name
    same_data = _norm(table["dataset"]) == "".join(ch for ch in str(row["dataset"]).lower() if ch.isalnum())
    near = table[same_dev & same_model & same_data].copy()
    exact = near[(near["batch_size"] == row["batch_size"]) & (near["amp"].astype(bool) == bool(row["amp"]))]
    near["distance"] = (np.log2(near["batch_size"].astype(float) / row["batch_size"])).abs()
    cols = [c for c in ("source", "model", "dataset", "batch_size", "precision", "optimizer", "device",
                        "batch_time_ms") if c in near]  # fmt: skip
    return {
        "training_rows": len(table),
        "rows_on_this_device": int(same_dev.sum()),
        "rows_of_this_model": int(same_model.sum()),
        "rows_this_model_on_this_device": int(len(near)),
        "rows_this_config": int(len(exact)),
        "measured_batch_time_ms_this_config": (
            float(exact["batch_time_ms"].mean()) if len(exact) else None
        ),
        "nearest": near.sort_values("distance")[cols].head(5).to_dict("records"),
        "regime": (
            "interpolation: this exact configuration was measured" if len(exact)
            else "unseen configuration of a measured model on a measured device" if len(near)
            else "unseen model on a measured device" if same_dev.any()
            else "unseen device: only its datasheet specs are known"
        ),
    }  # fmt: skip


def convergence_support(row: dict[str, Any]) -> dict[str, Any]:
    """How many convergence runs resemble this one (same family, within 10x the parameters)."""
    from chronos_core.convergence.data import combined_table

    table = combined_table()
    fam = table["family"].astype(str) == row["family"] if "family" in table else pd.Series(False, table.index)
    params = pd.to_numeric(table["param_count"], errors="coerce")
    close = fam & ((np.log10(params) - math.log10(row["param_count"])).abs() <= 1)
    return {
        "training_runs": int(len(table)),
        "runs_same_family": int(fam.sum()),
        "runs_same_family_within_10x_params": int(close.sum()),
    }
