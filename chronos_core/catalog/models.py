"""Model zoo: named architectures that build a randomly initialised network sized for a dataset.

Sizes follow the CHRONOS epoch-time tables wherever they define a model, so parameter counts of a
`build` match their `param_count` column exactly:

* ResNet50, MobileNetV2: torchvision models with `num_classes` replaced and the ImageNet stem kept
  (CHRONOS feeds 32x32 and 96x96 images through the unmodified stem).
* VGG16: torchvision `vgg16_bn` (their 13 BatchNorm layers), classifier resized.
* ViT: torchvision ViT-B/16 at 224x224 (CHRONOS resizes CIFAR/STL images to 224, seq_len 196).
* MLP-Mixer / ResMLP: conv patch stem + blocks + mean pool + head with their table's dims.
* DistilBERT: pre-LN encoder with their dims (d_model 256, 6 layers, 8 heads, d_ff 1024); the vocab
  that reproduces their counts is in `CHRONOS_TEXT_VOCAB`.
* KerasCNN / SimpleCNN: the A100 CIFAR-10 project's Keras CNN and its torch twin.

Beyond the zoo, `get_model`/`resolve_model` take Hugging Face and timm models as ExternalModelSpec:
`"hf:NAME"` (a config shipped in `hf_configs/`: gpt2 .. gpt2-xl, bert-base/large-uncased, opt-125m,
opt-350m, opt-1.3b, t5-small, t5-base, tinyllama-1.1b, llama-3.2-1b; also without the prefix),
`"hf:PATH"` or the path of any config.json, and `"timm:NAME"` (anything `timm.create_model` builds).
They are always built on the meta device.

Weights are never downloaded. Build under `torch.device("meta")` to get a shape-only model.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from chronos_core.catalog._catalog import Catalog
from chronos_core.catalog.datasets import Datasets, DatasetSpec
from chronos_core.errors import ChronosError, first_line

FAMILIES = ("CNN", "MLP", "Transformer", "RNN")
FRAMEWORKS = ("torch", "keras")

# Token vocabularies that reproduce the CHRONOS DistilBERT param_count with this encoder (128 learned
# positions, final LayerNorm): SST2 8,275,970 and IMDB 12,419,586 parameters at seq_len 128.
CHRONOS_TEXT_VOCAB = {"SST2": 13_686, "IMDB": 29_872}


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """A named architecture; `build(dataset)` returns a fresh, randomly initialised model."""

    name: str
    family: str
    framework: str
    builder: Callable[..., Any]
    default_kwargs: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    modalities: tuple[str, ...] = ("image",)
    default_dataset: str = "CIFAR10"
    input_shape_fn: Callable[[DatasetSpec, Mapping[str, Any]], tuple[int, ...]] | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ChronosError(f"Unknown model family {self.family!r}. Known: {', '.join(FAMILIES)}")
        if self.framework not in FRAMEWORKS:
            raise ChronosError(f"Unknown framework {self.framework!r}. Known: {', '.join(FRAMEWORKS)}")
        object.__setattr__(self, "default_kwargs", MappingProxyType(dict(self.default_kwargs)))

    def dataset(self, dataset: DatasetSpec | str | None = None) -> DatasetSpec:
        """The dataset spec to size the model for (the model's default when None), modality-checked."""
        spec = Datasets.get(dataset if dataset is not None else self.default_dataset)
        if self.modalities and spec.modality not in self.modalities:
            raise ChronosError(
                f"Model {self.name} takes {'/'.join(self.modalities)} data; "
                f"dataset {spec.name} is {spec.modality}"
            )
        return spec

    def options(self, **overrides: Any) -> dict[str, Any]:
        """Builder keyword arguments: defaults updated with `overrides` (unknown names rejected)."""
        unknown = sorted(set(overrides) - set(self.default_kwargs) - {"num_classes"})
        if unknown:
            known = ", ".join(sorted(self.default_kwargs)) or "none"
            raise ChronosError(f"Model {self.name} has no option {unknown[0]!r}. Options: {known}")
        return {**self.default_kwargs, **overrides}

    def _prepare(self, dataset: DatasetSpec | str | None, overrides: dict) -> tuple[DatasetSpec, dict]:
        spec = self.dataset(dataset)
        num_classes = overrides.pop("num_classes", None)
        if num_classes is not None:
            spec = replace(spec, num_classes=int(num_classes))
        return spec, self.options(**overrides)

    def build(self, dataset: DatasetSpec | str | None = None, **overrides: Any) -> Any:
        """A new model (nn.Module or keras.Model) sized for `dataset`; weights are random."""
        spec, kwargs = self._prepare(dataset, dict(overrides))
        return self.builder(spec, **kwargs)

    def input_shape(self, dataset: DatasetSpec | str | None = None, **overrides: Any) -> tuple[int, ...]:
        """Per-sample input shape the built model consumes, in torch layout ((C, H, W) for images)."""
        spec, kwargs = self._prepare(dataset, dict(overrides))
        if self.input_shape_fn is not None:
            return tuple(self.input_shape_fn(spec, kwargs))
        return tuple(spec.input_shape)

    def input_dtype(self, dataset: DatasetSpec | str | None = None) -> torch.dtype:
        """torch.long for token ids (text datasets), float32 otherwise."""
        return torch.long if self.dataset(dataset).modality == "text" else torch.float32

    def example_input(
        self,
        dataset: DatasetSpec | str | None = None,
        batch_size: int = 2,
        device: str | torch.device = "meta",
        **overrides: Any,
    ) -> torch.Tensor:
        """An input batch of the right shape and dtype (empty: values are irrelevant on meta)."""
        shape = (int(batch_size), *self.input_shape(dataset, **overrides))
        dtype = self.input_dtype(dataset)
        if dtype == torch.long:
            return torch.zeros(shape, dtype=dtype, device=device)
        return torch.empty(shape, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return f"ModelSpec({self.name!r}, family={self.family!r}, framework={self.framework!r})"


# --------------------------------------------------------------------------------------------------
# torchvision CNNs


def _channels(dataset: DatasetSpec) -> int:
    return int(dataset.input_shape[0])


def _torchvision(dataset: DatasetSpec, arch: str, **kwargs: Any) -> nn.Module:
    import torchvision.models as tvm

    small_stem = kwargs.pop("small_input_stem", False)
    if arch == "vgg16":
        arch = "vgg16_bn" if kwargs.pop("batch_norm", True) else "vgg16"
    model = getattr(tvm, arch)(weights=None, num_classes=dataset.num_classes, **kwargs)
    c = _channels(dataset)
    if arch.startswith("resnet"):
        if small_stem:
            model.conv1 = nn.Conv2d(c, 64, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
        elif c != 3:
            model.conv1 = nn.Conv2d(c, 64, 7, 2, 3, bias=False)
    elif c != 3 and arch.startswith("vgg"):
        model.features[0] = nn.Conv2d(c, 64, 3, padding=1)
    elif c != 3 and arch in ("mobilenet_v2", "efficientnet_b0"):
        old = model.features[0][0]
        model.features[0][0] = nn.Conv2d(c, old.out_channels, 3, 2, 1, bias=False)
    elif c != 3 and arch == "densenet121":
        model.features.conv0 = nn.Conv2d(c, 64, 7, 2, 3, bias=False)
    return model


def _tv_builder(arch: str) -> Callable[..., nn.Module]:
    def build(dataset: DatasetSpec, **kwargs: Any) -> nn.Module:
        return _torchvision(dataset, arch, **kwargs)

    build.__name__ = f"build_{arch}"
    return build


# --------------------------------------------------------------------------------------------------
# The A100 project's CNN: `depth` blocks of [Conv3x3-ReLU, Conv3x3-ReLU, MaxPool2], then
# Flatten-Dense(128)-Dense(classes); filters double per block from `base_filters`.


def _cnn_spatial(dataset: DatasetSpec, depth: int) -> tuple[int, int, int]:
    if dataset.modality != "image" or len(dataset.input_shape) != 3:
        raise ChronosError(
            f"KerasCNN/SimpleCNN need (C, H, W) images; {dataset.name} is {dataset.input_shape}"
        )
    c, h, w = dataset.input_shape
    if h >> depth < 1 or w >> depth < 1:
        raise ChronosError(
            f"depth {depth} halves {h}x{w} images to nothing; use depth <= {int(math.log2(min(h, w)))}"
        )
    return c, h >> depth, w >> depth


def build_simple_cnn(
    dataset: DatasetSpec, depth: int = 3, base_filters: int = 32, dense_units: int = 128
) -> nn.Module:
    """Torch twin of the Keras CNN (same layers, same parameter count)."""
    c, h, w = _cnn_spatial(dataset, depth)
    layers: list[nn.Module] = []
    for i in range(depth):
        f = base_filters * 2**i
        layers += [nn.Conv2d(c, f, 3, padding=1), nn.ReLU(), nn.Conv2d(f, f, 3, padding=1), nn.ReLU()]
        layers.append(nn.MaxPool2d(2))
        c = f
    layers += [
        nn.Flatten(),
        nn.Linear(c * h * w, dense_units),
        nn.ReLU(),
        nn.Linear(dense_units, dataset.num_classes),
    ]
    return nn.Sequential(*layers)


def build_keras_cnn(
    dataset: DatasetSpec, depth: int = 3, base_filters: int = 32, dense_units: int = 128
) -> Any:
    """The A100 CIFAR-10 project's tf.keras CNN (params match its runs_agg.csv for every depth/width)."""
    _cnn_spatial(dataset, depth)
    from chronos_core._env import tensorflow

    tf = tensorflow()

    keras = tf.keras
    c, h, w = dataset.input_shape
    model = keras.Sequential(name=f"keras_cnn_d{depth}_f{base_filters}")
    model.add(keras.Input(shape=(h, w, c)))
    for i in range(depth):
        f = base_filters * 2**i
        model.add(keras.layers.Conv2D(f, 3, padding="same", activation="relu"))
        model.add(keras.layers.Conv2D(f, 3, padding="same", activation="relu"))
        model.add(keras.layers.MaxPooling2D(2))
    model.add(keras.layers.Flatten())
    model.add(keras.layers.Dense(dense_units, activation="relu"))
    model.add(keras.layers.Dense(dataset.num_classes, activation="softmax"))
    return model


# --------------------------------------------------------------------------------------------------
# MLP family (isotropic: patch stem, N tokens of width D)


class PatchStem(nn.Module):
    """Non-overlapping patches -> tokens (B, N, D) with a strided conv (floor on ragged borders)."""

    def __init__(self, in_channels: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


def _num_patches(dataset: DatasetSpec, patch_size: int) -> int:
    if dataset.modality != "image" or len(dataset.input_shape) != 3:
        raise ChronosError(f"MLP models need (C, H, W) images; {dataset.name} is {dataset.input_shape}")
    _, h, w = dataset.input_shape
    n = (h // patch_size) * (w // patch_size)
    if n < 1:
        raise ChronosError(f"patch_size {patch_size} is larger than the {h}x{w} images of {dataset.name}")
    return n


class MlpBlock(nn.Sequential):
    """Linear-GELU-Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class MixerBlock(nn.Module):
    def __init__(self, num_tokens: int, dim: int, token_mlp_dim: int, channel_mlp_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mlp = MlpBlock(num_tokens, token_mlp_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = MlpBlock(dim, channel_mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Affine(nn.Module):
    """ResMLP's per-channel scale and shift (its 'norm')."""

    chronos_layer_type = "norm"

    def __init__(self, dim: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x + self.beta


class ResMLPBlock(nn.Module):
    def __init__(self, num_tokens: int, dim: int, channel_mlp_dim: int):
        super().__init__()
        self.norm1 = Affine(dim)
        self.token_mix = nn.Linear(num_tokens, num_tokens)
        self.norm2 = Affine(dim)
        self.channel_mlp = MlpBlock(dim, channel_mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.token_mix(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class AxialShift(nn.Module):
    """Shift channel groups by -s//2..s//2 positions along one spatial axis (cyclic, AS-MLP style)."""

    def __init__(self, shift_size: int, dim: int):
        super().__init__()
        self.shift_size, self.dim = shift_size, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = x.chunk(self.shift_size, dim=-1)
        half = self.shift_size // 2
        return torch.cat([torch.roll(c, i - half, dims=self.dim) for i, c in enumerate(chunks)], dim=-1)


class ASMLPBlock(nn.Module):
    """Axial-shift token mixing (height and width branches) + channel MLP, on (B, H, W, D) maps."""

    def __init__(self, dim: int, channel_mlp_dim: int, shift_size: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.proj_in = nn.Linear(dim, dim)
        self.act = nn.GELU()
        self.shift_h, self.shift_w = AxialShift(shift_size, 1), AxialShift(shift_size, 2)
        self.mix_h, self.mix_w = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.proj_out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_mlp = MlpBlock(dim, channel_mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.proj_in(self.norm1(x)))
        y = self.mix_h(self.shift_h(y)) + self.mix_w(self.shift_w(y))
        x = x + self.proj_out(self.act(y))
        return x + self.channel_mlp(self.norm2(x))


class IsotropicMLP(nn.Module):
    """Patch stem -> blocks -> norm -> mean over tokens -> linear head (Mixer, ResMLP, AS-MLP)."""

    def __init__(self, stem: nn.Module, blocks: list[nn.Module], norm: nn.Module, head: nn.Module, grid=None):
        super().__init__()
        self.stem, self.blocks, self.norm, self.head = stem, nn.Sequential(*blocks), norm, head
        self.grid = grid  # (h, w) when blocks work on 2-D token maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grid is not None:
            x = x.reshape(x.shape[0], *self.grid, x.shape[-1])
        x = self.norm(self.blocks(x))
        return self.head(x.flatten(1, -2).mean(dim=1))


def build_mixer(
    dataset: DatasetSpec,
    patch_size: int = 8,
    embed_dim: int = 128,
    depth: int = 8,
    token_mlp_dim: int = 128,
    channel_mlp_dim: int = 512,
) -> nn.Module:
    """MLP-Mixer (Tolstikhin et al. 2021)."""
    n = _num_patches(dataset, patch_size)
    blocks = [MixerBlock(n, embed_dim, token_mlp_dim, channel_mlp_dim) for _ in range(depth)]
    stem = PatchStem(_channels(dataset), embed_dim, patch_size)
    return IsotropicMLP(stem, blocks, nn.LayerNorm(embed_dim), nn.Linear(embed_dim, dataset.num_classes))


def build_resmlp(
    dataset: DatasetSpec,
    patch_size: int = 8,
    embed_dim: int = 128,
    depth: int = 12,
    channel_mlp_dim: int = 512,
) -> nn.Module:
    """ResMLP (Touvron et al. 2021): Affine norms, one linear token-mixing layer, no layer-scale."""
    n = _num_patches(dataset, patch_size)
    blocks = [ResMLPBlock(n, embed_dim, channel_mlp_dim) for _ in range(depth)]
    stem = PatchStem(_channels(dataset), embed_dim, patch_size)
    return IsotropicMLP(stem, blocks, Affine(embed_dim), nn.Linear(embed_dim, dataset.num_classes))


def build_asmlp(
    dataset: DatasetSpec,
    patch_size: int = 4,
    embed_dim: int = 128,
    depth: int = 8,
    channel_mlp_dim: int = 512,
    shift_size: int = 5,
) -> nn.Module:
    """AS-MLP-like isotropic axial-shift MLP (Lian et al. 2022, without the hierarchical stages)."""
    _num_patches(dataset, patch_size)
    _, h, w = dataset.input_shape
    blocks = [ASMLPBlock(embed_dim, channel_mlp_dim, shift_size) for _ in range(depth)]
    stem = PatchStem(_channels(dataset), embed_dim, patch_size)
    head = nn.Linear(embed_dim, dataset.num_classes)
    return IsotropicMLP(stem, blocks, nn.LayerNorm(embed_dim), head, grid=(h // patch_size, w // patch_size))


# --------------------------------------------------------------------------------------------------
# Transformers


def build_vit(
    dataset: DatasetSpec,
    image_size: int = 224,
    patch_size: int = 16,
    depth: int = 12,
    num_heads: int = 12,
    embed_dim: int = 768,
    mlp_dim: int = 3072,
) -> nn.Module:
    """torchvision VisionTransformer; images are resized to `image_size` (as CHRONOS does)."""
    from torchvision.models import VisionTransformer

    if image_size % patch_size:
        raise ChronosError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
    model = VisionTransformer(
        image_size, patch_size, depth, num_heads, embed_dim, mlp_dim, num_classes=dataset.num_classes
    )
    if _channels(dataset) != 3:
        model.conv_proj = nn.Conv2d(_channels(dataset), embed_dim, patch_size, patch_size)
    return model


def _vit_input(dataset: DatasetSpec, kwargs: Mapping[str, Any]) -> tuple[int, ...]:
    return (_channels(dataset), kwargs["image_size"], kwargs["image_size"])


class TextEncoderClassifier(nn.Module):
    """Token + learned position embeddings, pre-LN encoder layers, final LN, classifier on token 0."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        num_classes: int,
        d_model: int,
        depth: int,
        n_heads: int,
        d_ff: int,
        dropout: float,
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Embedding(max_len, d_model)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, n_heads, d_ff, dropout, activation=nn.GELU(), batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(d_model)
        self.classifier = nn.Linear(d_model, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        for layer in self.layers:
            x = layer(x)
        return self.classifier(self.norm(x)[:, 0])


def _text_sizes(dataset: DatasetSpec, vocab_size: int | None, max_len: int | None) -> tuple[int, int]:
    vocab = vocab_size or dataset.vocab_size
    if not vocab:
        raise ChronosError(f"Dataset {dataset.name} has no vocab_size; pass vocab_size=...")
    return int(vocab), int(max_len or dataset.input_shape[0])


def build_distilbert(
    dataset: DatasetSpec,
    vocab_size: int | None = None,
    max_len: int | None = None,
    d_model: int = 256,
    depth: int = 6,
    n_heads: int = 8,
    d_ff: int = 1024,
    dropout: float = 0.1,
) -> nn.Module:
    """DistilBERT-like encoder classifier with the CHRONOS table's dims."""
    vocab, length = _text_sizes(dataset, vocab_size, max_len)
    return TextEncoderClassifier(vocab, length, dataset.num_classes, d_model, depth, n_heads, d_ff, dropout)


def _text_input(dataset: DatasetSpec, kwargs: Mapping[str, Any]) -> tuple[int, ...]:
    return (int(kwargs.get("max_len") or dataset.input_shape[0]),)


# --------------------------------------------------------------------------------------------------
# Recurrent classifiers


class RNNClassifier(nn.Module):
    """[Embedding] -> LSTM/GRU -> linear head on the last time step.

    Token ids (B, T) are embedded; sequences (B, T, F) or (B, T) go straight in; images (B, C, H, W)
    are read row by row as (B, H, C*W).
    """

    def __init__(
        self,
        cell: str,
        num_classes: int,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bidirectional: bool,
        vocab_size: int | None = None,
    ):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, input_size) if vocab_size else None
        rnn_cls = {"LSTM": nn.LSTM, "GRU": nn.GRU}[cell]
        self.rnn = rnn_cls(input_size, hidden_size, num_layers, batch_first=True, bidirectional=bidirectional)
        self.head = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x)
        elif x.dim() == 4:
            x = x.permute(0, 2, 1, 3).flatten(2)
        elif x.dim() == 2:
            x = x.unsqueeze(-1)
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _rnn_builder(cell: str, bidirectional: bool) -> Callable[..., nn.Module]:
    def build(
        dataset: DatasetSpec,
        embed_dim: int = 128,
        hidden_size: int = 256,
        num_layers: int = 2,
        vocab_size: int | None = None,
    ) -> nn.Module:
        shape = dataset.input_shape
        if dataset.modality == "text":
            vocab, _ = _text_sizes(dataset, vocab_size, None)
            return RNNClassifier(
                cell, dataset.num_classes, embed_dim, hidden_size, num_layers, bidirectional, vocab
            )
        features = shape[0] * shape[2] if len(shape) == 3 else (shape[1] if len(shape) == 2 else 1)
        return RNNClassifier(cell, dataset.num_classes, features, hidden_size, num_layers, bidirectional)

    build.__name__ = f"build_{'bi' if bidirectional else ''}{cell.lower()}"
    return build


# --------------------------------------------------------------------------------------------------
# Catalog

_ANY = ("image", "text", "sequence")
_RNN_KW = {"embed_dim": 128, "hidden_size": 256, "num_layers": 2, "vocab_size": None}
_CNN_KW = {"depth": 3, "base_filters": 32, "dense_units": 128}
_MIXER_KW = {"patch_size": 8, "embed_dim": 128, "depth": 8, "token_mlp_dim": 128, "channel_mlp_dim": 512}
_VIT_B = {
    "image_size": 224,
    "patch_size": 16,
    "depth": 12,
    "num_heads": 12,
    "embed_dim": 768,
    "mlp_dim": 3072,
}
_VIT_S = {**_VIT_B, "num_heads": 6, "embed_dim": 384, "mlp_dim": 1536}
_DEIT_TI = {**_VIT_B, "num_heads": 3, "embed_dim": 192, "mlp_dim": 768}
_TEXT_KW = {"vocab_size": None, "max_len": None, "d_model": 256, "depth": 6, "n_heads": 8, "d_ff": 1024}
_TEXT_KW["dropout"] = 0.1

_SPECS = [
    ModelSpec("VGG16", "CNN", "torch", _tv_builder("vgg16"), {"batch_norm": True},
              "torchvision vgg16_bn (CHRONOS 'vgg16': 13 BatchNorms), classifier sized to the dataset"),
    ModelSpec("ResNet18", "CNN", "torch", _tv_builder("resnet18"), {"small_input_stem": False},
              "torchvision resnet18; small_input_stem=True swaps in a 3x3 stride-1 stem without max-pool"),
    ModelSpec("ResNet50", "CNN", "torch", _tv_builder("resnet50"), {"small_input_stem": False},
              "torchvision resnet50 with the ImageNet stem kept on small images (as CHRONOS)"),
    ModelSpec("MobileNetV2", "CNN", "torch", _tv_builder("mobilenet_v2"), {},
              "torchvision mobilenet_v2, width 1.0"),
    ModelSpec("DenseNet121", "CNN", "torch", _tv_builder("densenet121"), {}, "torchvision densenet121"),
    ModelSpec("EfficientNet-B0", "CNN", "torch", _tv_builder("efficientnet_b0"), {},
              "torchvision efficientnet_b0"),
    ModelSpec("SimpleCNN", "CNN", "torch", build_simple_cnn, _CNN_KW,
              "torch twin of the A100 project's Keras CNN (identical parameter counts)"),
    ModelSpec("KerasCNN", "CNN", "keras", build_keras_cnn, _CNN_KW,
              "A100 CIFAR-10 project's tf.keras CNN: depth x [Conv3x3, Conv3x3, MaxPool], Dense(128), Dense"),
    ModelSpec("MLP-Mixer", "MLP", "torch", build_mixer, _MIXER_KW, "MLP-Mixer with CHRONOS's small dims"),
    ModelSpec("ResMLP", "MLP", "torch", build_resmlp,
              {"patch_size": 8, "embed_dim": 128, "depth": 12, "channel_mlp_dim": 512},
              "ResMLP with CHRONOS's dims (Affine norms, linear token mixing)"),
    ModelSpec("AS-MLP", "MLP", "torch", build_asmlp,
              {"patch_size": 4, "embed_dim": 128, "depth": 8, "channel_mlp_dim": 512, "shift_size": 5},
              "isotropic axial-shift MLP (AS-MLP-like)"),
    ModelSpec("ViT", "Transformer", "torch", build_vit, _VIT_B,
              "ViT-B/16 at 224x224 (CHRONOS 'ViT'; images resized)", input_shape_fn=_vit_input),
    ModelSpec("ViT-Small", "Transformer", "torch", build_vit, _VIT_S, "ViT-S/16 at 224x224",
              input_shape_fn=_vit_input),
    ModelSpec("DeiT-Tiny", "Transformer", "torch", build_vit, _DEIT_TI, "DeiT-Ti (ViT-Ti/16) at 224x224",
              input_shape_fn=_vit_input),
    ModelSpec("DistilBERT", "Transformer", "torch", build_distilbert, _TEXT_KW,
              "DistilBERT-like pre-LN encoder with CHRONOS dims; vocab from the dataset",
              modalities=("text",), default_dataset="SST2", input_shape_fn=_text_input),
    ModelSpec("LSTM", "RNN", "torch", _rnn_builder("LSTM", False), _RNN_KW, "LSTM classifier",
              modalities=_ANY, default_dataset="SST2"),
    ModelSpec("GRU", "RNN", "torch", _rnn_builder("GRU", False), _RNN_KW, "GRU classifier",
              modalities=_ANY, default_dataset="SST2"),
    ModelSpec("BiLSTM", "RNN", "torch", _rnn_builder("LSTM", True), _RNN_KW, "bidirectional LSTM classifier",
              modalities=_ANY, default_dataset="SST2"),
]  # fmt: skip

Models: Catalog[ModelSpec] = Catalog(
    "model",
    {spec.name: spec for spec in _SPECS},
    aliases={
        "vgg16_bn": "VGG16",
        "mixer": "MLP-Mixer",
        "mlpmixer": "MLP-Mixer",
        "effnet-b0": "EfficientNet-B0",
        "vit_b_16": "ViT",
        "ViT-B/16": "ViT",
        "ViT-Base": "ViT",
        "vit_s_16": "ViT-Small",
        "ViT-S/16": "ViT-Small",
        "DeiT-Ti": "DeiT-Tiny",
        "distilbert-like": "DistilBERT",
        "bi-lstm": "BiLSTM",
        "a100_cnn": "KerasCNN",
        "keras_cnn": "KerasCNN",
        "torch_cnn": "SimpleCNN",
    },
)


# --------------------------------------------------------------------------------------------------
# User models


def is_keras_model(obj: object) -> bool:
    """True for a keras.Model, without importing tensorflow."""
    return any(
        c.__module__.split(".")[0] in ("keras", "tf_keras", "tensorflow") and c.__name__ in ("Model", "Layer")
        for c in type(obj).__mro__
    )


def _guess_family_torch(module: nn.Module) -> str:
    mods = list(module.modules())
    names = " ".join(type(m).__name__.lower() for m in mods)
    if any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in mods):
        return "RNN"
    if (
        any(isinstance(m, nn.MultiheadAttention) for m in mods)
        or "attention" in names
        or "transformer" in names
    ):
        return "Transformer"
    if any(isinstance(m, nn.modules.conv._ConvNd) for m in mods):
        return "CNN"
    return "MLP"


def _guess_family_keras(model: Any) -> str:
    def walk(layer: Any) -> list[Any]:
        subs = getattr(layer, "layers", None) or []
        return [layer] + [x for s in subs for x in walk(s)]

    names = " ".join(type(x).__name__.lower() for x in walk(model))
    if any(k in names for k in ("lstm", "gru", "simplernn", "rnn")):
        return "RNN"
    if "attention" in names:
        return "Transformer"
    if "conv" in names:
        return "CNN"
    return "MLP"


def model_from_user(obj: Any, name: str | None = None) -> ModelSpec:
    """Wrap a user's nn.Module or keras.Model as a ModelSpec (family guessed from its layer types).

    `build` returns the very object passed in; it must already fit the dataset it is used with.
    """
    if isinstance(obj, ModelSpec):
        return obj
    if isinstance(obj, nn.Module):
        framework, family = "torch", _guess_family_torch(obj)
    elif is_keras_model(obj):
        framework, family = "keras", _guess_family_keras(obj)
    else:
        raise ChronosError(
            f"Expected a model name, ModelSpec, torch.nn.Module or keras.Model; got {type(obj).__name__}"
        )

    def builder(dataset: DatasetSpec) -> Any:
        return obj

    label = name or (getattr(obj, "name", None) if framework == "keras" else None) or type(obj).__name__
    return ModelSpec(
        str(label),
        family,
        framework,
        builder,
        {},
        f"user {framework} model {type(obj).__name__}",
        modalities=(),
    )


def resolve_model(model: str | ModelSpec | Any) -> ModelSpec:
    """A catalog name ('hf:NAME', 'timm:NAME' and config.json paths too), a ModelSpec or a user
    model -> ModelSpec."""
    if isinstance(model, str):
        return get_model(model)
    return model_from_user(model)


def canonical_model(name: str) -> str:
    """The catalog name of a model ('resnet50' and 'ResNet50' are one architecture), else the name."""
    return Models.resolve(str(name)) or str(name)


# --------------------------------------------------------------------------------------------------
# Hugging Face and timm models: built on the meta device from a config, never a weight downloaded

HF_PREFIX, TIMM_PREFIX = "hf:", "timm:"
# Short names for shipped configs (any shipped config's own name works without the prefix too).
HF_ALIASES = {
    "gpt2-small": "gpt2",
    "bert-base": "bert-base-uncased",
    "bert-large": "bert-large-uncased",
    "tinyllama": "tinyllama-1.1b",
    "llama-3.2": "llama-3.2-1b",
}
# Relative-position models: their config's position count is no hard limit on the sequence length.
RELATIVE_POSITIONS = frozenset({"t5", "mt5", "umt5", "longt5"})
_HF_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length")


def hf_config_dir() -> Path:
    """Where the shipped Hugging Face configs live (chronos_core/catalog/hf_configs)."""
    return Path(__file__).resolve().parent / "hf_configs"


def shipped_hf_configs() -> list[str]:
    """Names usable as 'hf:NAME' (and without the prefix): the shipped config.json files."""
    return sorted(p.stem for p in hf_config_dir().glob("*.json"))


def _norm(text: str) -> str:
    return "".join(ch for ch in str(text).lower() if ch.isalnum())


def shipped_hf_name(name: str) -> str | None:
    """The shipped config a name means ('GPT2-Large', 'bert-large', 'tinyllama'), or None."""
    key = _norm(name)
    for stem in shipped_hf_configs():
        if _norm(stem) == key:
            return stem
    for alias, stem in HF_ALIASES.items():
        if _norm(alias) == key and (hf_config_dir() / f"{stem}.json").is_file():
            return stem
    return None


def _looks_like_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(".json") or Path(text).expanduser().exists()


@dataclass(frozen=True, eq=False, repr=False)
class ExternalModelSpec(ModelSpec):
    """A Hugging Face `transformers` model (a config.json) or a `timm` model, as a ModelSpec.

    `build(dataset)` makes it on the meta device (shapes only: no memory, no weights, nothing
    downloaded). HF models on a token corpus (a dataset with `train_tokens`) get their config's
    architecture (GPT-2: GPT2LMHeadModel, BERT: BertForMaskedLM, T5: T5ForConditionalGeneration) and
    their language-modelling loss (labels = the input ids; T5's decoder reads the same ids); on a
    labelled text dataset (SST2, IMDB, ...) they get the `...ForSequenceClassification` head with the
    dataset's classes. timm models take images resized to their pretrained config's input size.
    """

    source: str = ""  # 'hf:gpt2-large', 'timm:vit_base_patch16_224' or a config.json path
    kind: str = "hf"  # 'hf' or 'timm'
    config_path: str = ""  # HF: the config.json
    model_type: str = ""  # HF: config model_type
    max_positions: int | None = None  # HF: positions in its config (None: not given)
    image_size: tuple[int, int] = (224, 224)  # timm: (H, W) of its pretrained config
    encoder_decoder: bool = False  # HF: T5-style (its decoder reads the ids too)

    # compute_features may cache static features of these specs (one instance per source)
    cache_static = True

    @property
    def hard_position_limit(self) -> bool:
        """True when sequences longer than `max_positions` cannot run (learned or rotary positions)."""
        return self.max_positions is not None and self.model_type not in RELATIVE_POSITIONS

    def default_seq_len(self, dataset: DatasetSpec) -> int:
        """The dataset's sequence length, capped at the model's positions."""
        length = int(dataset.seq_len or LM_DEFAULT_SEQ_LEN)
        return min(length, self.max_positions) if self.max_positions else length

    def example_input(
        self,
        dataset: DatasetSpec | str | None = None,
        batch_size: int = 2,
        device: str | torch.device = "meta",
        **overrides: Any,
    ) -> Any:
        """timm: an image batch; HF: the keyword inputs of one training step (ids and labels)."""
        if self.kind == "timm":
            return super().example_input(dataset, batch_size, device, **overrides)
        spec = self.dataset(dataset)
        shape = (int(batch_size), *self.input_shape(spec, **overrides))
        ids = torch.zeros(shape, dtype=torch.long, device=device)
        inputs: dict[str, Any] = {"input_ids": ids}
        if spec.is_language_modelling:
            inputs["labels"] = ids
            if self.encoder_decoder:
                inputs["decoder_input_ids"] = ids
        else:
            inputs["labels"] = torch.zeros(int(batch_size), dtype=torch.long, device=device)
        return inputs


LM_DEFAULT_SEQ_LEN = 512  # an HF model on a dataset without a sequence length (as the op tracer)


@functools.lru_cache(maxsize=64)
def _hf_raw_cached(path: str, mtime: float) -> dict:
    import json

    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ChronosError(f"HF config {path!r} is not readable JSON: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise ChronosError(f"HF config {path!r} has no 'model_type'; is it a Hugging Face config.json?")
    return raw


def _hf_raw(path: str) -> dict:
    import os

    return _hf_raw_cached(path, os.path.getmtime(path))


class _MetaScalars(TorchDispatchMode):
    """`.item()` on a meta tensor answers True/1/1.0, the ordinary branch of HF's data checks (as the
    op tracer does), so FLOP counting runs HF models on meta."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        if func is torch.ops.aten._local_scalar_dense.default and args[0].is_meta:
            if args[0].dtype == torch.bool:
                return True
            return 1.0 if args[0].dtype.is_floating_point else 1
        return func(*args, **(kwargs or {}))


def _answer_meta_items(module: nn.Module) -> nn.Module:
    forward = module.forward

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        with _MetaScalars():
            return forward(*args, **kwargs)

    module.forward = run
    return module


def _hf_builder(path: str) -> Callable[..., nn.Module]:
    def build(dataset: DatasetSpec) -> nn.Module:
        try:
            import transformers
        except ImportError:
            raise ChronosError("Hugging Face models need the `transformers` package") from None
        from transformers.models.auto import modeling_auto as auto

        from chronos_core.features.opgraph import _build_on_meta, _hf_model_class, _load_hf_config

        config = _load_hf_config(Path(path), "sdpa")
        config.use_cache = False  # training: no key/value cache
        cls = _hf_model_class(config)
        if not dataset.is_language_modelling:  # labelled text: the sequence-classification head
            name = auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES.get(config.model_type)
            if name and hasattr(transformers, name):
                cls = getattr(transformers, name)
                config.num_labels = dataset.num_classes
                if getattr(config, "pad_token_id", None) is None:  # last-token pooling needs one
                    config.pad_token_id = getattr(config, "eos_token_id", None) or 0
        try:
            module = _build_on_meta(lambda: cls._from_config(config, attn_implementation="sdpa"))
        except Exception as error:  # noqa: BLE001 - transformers' own message, on one line
            raise ChronosError(
                f"HF config {path!r}: {cls.__name__} cannot be built: {first_line(error)}"
            ) from None
        return _answer_meta_items(module)

    return build


def _timm_builder(name: str) -> Callable[..., nn.Module]:
    def build(dataset: DatasetSpec) -> nn.Module:
        import timm

        from chronos_core.features.opgraph import _build_on_meta

        kwargs = {"num_classes": dataset.num_classes, "in_chans": _channels(dataset)}
        return _build_on_meta(lambda: timm.create_model(name, pretrained=False, **kwargs))

    return build


def _timm_input(dataset: DatasetSpec, kwargs: Mapping[str, Any], size: tuple[int, int]) -> tuple[int, ...]:
    return (_channels(dataset), *size)


def hf_model_spec(text: str) -> ExternalModelSpec:
    """'hf:NAME' (a shipped config), 'hf:PATH', or a path to a config.json (or a folder with one)."""
    body = text.strip()
    if body.lower().startswith(HF_PREFIX):
        body = body[len(HF_PREFIX) :].strip()
    if not body:
        shipped = ", ".join(shipped_hf_configs())
        raise ChronosError(f"hf model name missing: use 'hf:NAME' (shipped: {shipped})")
    stem = shipped_hf_name(body)
    if stem is not None:
        return _hf_spec(str(hf_config_dir() / f"{stem}.json"), f"{HF_PREFIX}{stem}")
    if not _looks_like_path(body):
        raise ChronosError(
            f"Unknown hf config {body!r}. Shipped: {', '.join(shipped_hf_configs())}; or give the path of "
            "any Hugging Face config.json (e.g. hf:./my-model/config.json); nothing is downloaded"
        )
    path = Path(body).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ChronosError(f"HF config {body!r} not found (expected a config.json or a folder with one)")
    return _hf_spec(str(path.resolve()), str(path))


def _hf_spec(path: str, label: str) -> ExternalModelSpec:
    import os

    return _hf_spec_cached(path, os.path.getmtime(path), label)


@functools.lru_cache(maxsize=64)
def _hf_spec_cached(path: str, mtime: float, label: str) -> ExternalModelSpec:
    raw = _hf_raw(path)
    positions = next(
        (int(raw[k]) for k in _HF_POSITION_KEYS if isinstance(raw.get(k), int) and raw[k] > 0), None
    )
    arch = (raw.get("architectures") or [raw["model_type"]])[0]
    return ExternalModelSpec(
        label,
        "Transformer",
        "torch",
        _hf_builder(path),
        {},
        f"Hugging Face {arch} from {raw.get('_source', path)} (meta device, no weights)",
        modalities=("text",),
        default_dataset="WikiText-103",
        source=label if label.startswith(HF_PREFIX) else path,
        kind="hf",
        config_path=path,
        model_type=str(raw["model_type"]),
        max_positions=positions,
        encoder_decoder=bool(raw.get("is_encoder_decoder", False)),
    )


def timm_model_spec(text: str) -> ExternalModelSpec:
    """'timm:NAME': any model timm can create with pretrained=False (built on meta)."""
    name = text.strip()[len(TIMM_PREFIX) :].strip() if text.strip().lower().startswith(TIMM_PREFIX) else text
    if not name:
        raise ChronosError("timm model name missing: use 'timm:NAME', e.g. 'timm:vit_base_patch16_224'")
    return _timm_spec(name)


@functools.lru_cache(maxsize=64)
def _timm_spec(name: str) -> ExternalModelSpec:
    try:
        import timm
    except ImportError:
        raise ChronosError("timm models need the `timm` package (pip install timm)") from None
    if not timm.is_model(name):
        import difflib

        known = timm.list_models()
        close = difflib.get_close_matches(name, known, n=8, cutoff=0.5)
        shown = ", ".join(close) if close else "none close"
        raise ChronosError(
            f"Unknown timm model {name!r}. Close matches: {shown} ({len(known)} models in timm.list_models())"
        )
    module = _timm_builder(name)(Datasets.get("ImageNet"))
    cfg = getattr(module, "pretrained_cfg", None) or {}
    size = tuple(int(d) for d in (cfg.get("input_size") or (3, 224, 224))[-2:])
    return ExternalModelSpec(
        f"{TIMM_PREFIX}{name}",
        _guess_family_torch(module),
        "torch",
        _timm_builder(name),
        {},
        f"timm {name} at {size[0]}x{size[1]} (its pretrained config's input size; meta device, no weights)",
        modalities=("image",),
        default_dataset="ImageNet",
        input_shape_fn=functools.partial(_timm_input, size=size),
        source=f"{TIMM_PREFIX}{name}",
        kind="timm",
        image_size=size,
    )


def external_model(text: str) -> ExternalModelSpec | None:
    """The HF/timm spec a string names ('hf:...', 'timm:...', a config.json path, or a shipped
    config's short name such as 'gpt2-large'), or None when it names none of these."""
    body = text.strip()
    low = body.lower()
    if low.startswith(TIMM_PREFIX):
        return timm_model_spec(body)
    if low.startswith(HF_PREFIX):
        return hf_model_spec(body)
    stem = shipped_hf_name(body)
    if stem is not None:
        return hf_model_spec(stem)
    return hf_model_spec(body) if _looks_like_path(body) else None


def get_model(name: str) -> ModelSpec:
    """A zoo name, 'hf:NAME' / a shipped config's name / a config.json path, or 'timm:NAME'."""
    if not isinstance(name, str):
        raise ChronosError(f"model must be a name, a ModelSpec or a model object, got {name!r}")
    text = name.strip()
    explicit = text.lower().startswith((HF_PREFIX, TIMM_PREFIX)) or "/" in text or "\\" in text
    if not explicit and not text.lower().endswith(".json") and Models.resolve(text) is not None:
        return Models.get(text)
    spec = external_model(text)
    if spec is not None:
        return spec
    zoo = ", ".join(Models.names())
    hf = ", ".join(f"hf:{n}" for n in shipped_hf_configs())
    raise ChronosError(
        f"Unknown model {name!r}. Known: {zoo}; Hugging Face: {hf} (or hf:PATH/config.json); "
        "timm: timm:NAME (e.g. timm:vit_base_patch16_224)"
    )
