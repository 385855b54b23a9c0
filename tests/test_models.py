"""Model zoo: catalog lookups, builds on the meta device, parameter counts equal to the public tables."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from chronos_core import ChronosError, Datasets
from chronos_core.catalog.models import CHRONOS_TEXT_VOCAB, Models, ModelSpec, model_from_user, resolve_model

TABLE_DIR = Path("chronos") / "epoch_time_prediction" / "data"
MLP_DIMS = ("patch_size", "embed_dim", "depth", "token_mlp_dim", "channel_mlp_dim")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def chronos_cases(mirror: Path) -> list[tuple[str, object, dict, int]]:
    """(model, dataset spec, build overrides, table param_count) for each distinct CHRONOS config."""
    cases = []
    for table in ("CNN", "MLP", "Transformer"):
        df = pd.read_csv(mirror / TABLE_DIR / f"{table}.csv")
        for _, row in df.drop_duplicates(["model", "dataset", "param_count"]).iterrows():
            dataset = Datasets.get(row["dataset"])
            overrides: dict = {}
            if table == "Transformer":
                seq_len = int(row["seq_len"])
                if row["model"] == "DistilBERT":
                    dataset = dataset.with_input_shape((seq_len,))
                    overrides = {"vocab_size": CHRONOS_TEXT_VOCAB[row["dataset"]], "max_len": seq_len}
                    overrides.update({k: int(row[k]) for k in ("d_model", "depth", "n_heads", "d_ff")})
                else:  # ViT-B/16 at 224: the table's dims are our defaults
                    spec = Models.get(row["model"])
                    assert (row["d_model"], row["n_heads"], row["d_ff"], row["depth"]) == (768, 12, 3072, 12)
                    assert (
                        spec.default_kwargs["image_size"] // spec.default_kwargs["patch_size"]
                    ) ** 2 == seq_len
            else:
                shape = tuple(ast.literal_eval(row["input_shape"]))
                assert shape == dataset.input_shape and int(row["num_classes"]) == dataset.num_classes
                if table == "MLP":
                    spec = Models.get(row["model"])
                    overrides = {k: int(row[k]) for k in MLP_DIMS if k in spec.default_kwargs}
            cases.append((row["model"], dataset, overrides, int(row["param_count"])))
    return cases


def test_catalog_names_aliases_and_errors():
    names = ["VGG16", "ResNet18", "ResNet50", "MobileNetV2", "DenseNet121", "EfficientNet-B0", "MLP-Mixer"]
    names += ["ResMLP", "AS-MLP", "ViT", "DeiT-Tiny", "DistilBERT", "LSTM", "GRU", "BiLSTM", "KerasCNN"]
    for name in names + ["SimpleCNN", "ViT-Small"]:
        assert name in Models
    # CHRONOS spellings resolve
    assert Models.get("resnet50") is Models.ResNet50 and Models.get("vgg16") is Models.VGG16
    assert Models.get("mixer") is Models.MLP_Mixer and Models.get("mobilenetv2") is Models.MobileNetV2
    assert Models.get("vit_b_16") is Models.ViT and Models["deit-ti"] is Models.DeiT_Tiny
    with pytest.raises(ChronosError, match=r"Unknown model 'resnet9000'\. Known: .*ResNet50"):
        Models.get("resnet9000")
    families = {spec.name: spec.family for spec in Models}
    assert families["ViT"] == "Transformer" and families["LSTM"] == "RNN" and families["ResMLP"] == "MLP"
    assert Models.KerasCNN.framework == "keras" and Models.SimpleCNN.framework == "torch"


def test_spec_validation_and_options():
    with pytest.raises(ChronosError, match="family"):
        ModelSpec("x", "GAN", "torch", lambda ds: None)
    with pytest.raises(ChronosError, match="framework"):
        ModelSpec("x", "CNN", "jax", lambda ds: None)
    with pytest.raises(ChronosError, match=r"no option 'widht'\. Options: .*depth"):
        Models.SimpleCNN.build("CIFAR10", widht=3)
    with pytest.raises(ChronosError, match="takes image data; dataset SST2 is text"):
        Models.ResNet18.build("SST2")
    with pytest.raises(ChronosError, match="takes text data"):
        Models.DistilBERT.build("CIFAR10")
    with pytest.raises(ChronosError, match="depth 6 halves"):
        Models.SimpleCNN.build("CIFAR10", depth=6)


@pytest.mark.parametrize(
    "name, dataset",
    [("ResNet18", "CIFAR10"), ("ResNet18", "MNIST"), ("ResNet50", "TinyImageNet"), ("VGG16", "CIFAR100"),
     ("MobileNetV2", "STL10"), ("DenseNet121", "CIFAR10"), ("EfficientNet-B0", "FashionMNIST"),
     ("MLP-Mixer", "CIFAR10"), ("ResMLP", "MNIST"), ("AS-MLP", "CIFAR100"), ("ViT", "CIFAR10"),
     ("DeiT-Tiny", "MNIST"), ("DistilBERT", "AG_NEWS"), ("LSTM", "MNIST"), ("GRU", "MNIST1D"),
     ("BiLSTM", "FashionMNIST"), ("SimpleCNN", "MNIST")],
)  # fmt: skip
def test_builds_run_on_meta(name, dataset):
    spec = Models.get(name)
    with torch.device("meta"):
        model = spec.build(dataset)
        x = spec.example_input(dataset, batch_size=2)
        out = model(x)
    assert tuple(out.shape) == (2, Datasets.get(dataset).num_classes)
    assert x.dtype == (torch.long if Datasets.get(dataset).modality == "text" else torch.float32)


def test_input_shapes_and_overrides():
    assert Models.ViT.input_shape("CIFAR10") == (3, 224, 224)  # CHRONOS resizes to 224
    assert Models.ViT.input_shape("CIFAR10", image_size=32, patch_size=4) == (3, 32, 32)
    assert Models.DistilBERT.input_shape("IMDB") == (256,) and Models.DistilBERT.input_shape(
        "IMDB", max_len=64
    ) == (64,)
    assert Models.ResNet18.input_shape("STL10") == (3, 96, 96)
    with torch.device("meta"):
        assert Models.ResNet18.build("CIFAR10", num_classes=7).fc.out_features == 7
        small = Models.ResNet18.build("CIFAR10", small_input_stem=True)
        assert small.conv1.kernel_size == (3, 3) and isinstance(small.maxpool, nn.Identity)
        assert Models.VGG16.build("CIFAR10", batch_norm=False).features[1].__class__ is nn.ReLU
    assert isinstance(Models.ResNet18.build("CIFAR10").conv1.weight, nn.Parameter)  # real CPU build


def test_chronos_param_counts_exact(mirror):
    """Every (model, dataset, width) in the CHRONOS epoch-time tables: our build has their param_count."""
    cases = chronos_cases(mirror)
    assert len(cases) == 18  # 6 CNN, 8 MLP (two widths each), 4 Transformer
    with torch.device("meta"):
        for model, dataset, overrides, expected in cases:
            built = Models.get(model).build(dataset, **overrides)
            assert n_params(built) == expected, (model, dataset.name, overrides)


def test_keras_cnn_and_torch_twin_match_a100_params(mirror):
    runs = pd.read_csv(mirror / "a100_cifar10_cnn" / "runs_agg.csv")
    configs = runs[["depth", "base_filters", "params"]].drop_duplicates()
    assert len(configs) == 16
    for depth, base, params in configs.itertuples(index=False):
        with torch.device("meta"):
            twin = Models.SimpleCNN.build("CIFAR10", depth=int(depth), base_filters=int(base))
        assert n_params(twin) == params, (depth, base)
        if base <= 32:  # keras allocates real weights: check the small ones
            keras_model = Models.KerasCNN.build("CIFAR10", depth=int(depth), base_filters=int(base))
            assert keras_model.count_params() == params, (depth, base)
    assert Models.KerasCNN.build("CIFAR10", depth=2, base_filters=16).count_params() == 280_218


def test_model_from_user_torch_and_keras():
    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(100, 8)
            self.rnn = nn.GRU(8, 8, batch_first=True)

    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 2))
    enc = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    assert model_from_user(conv).family == "CNN" and model_from_user(mlp).family == "MLP"
    assert model_from_user(TinyLM()).family == "RNN" and model_from_user(enc).family == "Transformer"
    spec = model_from_user(mlp, name="mine")
    assert spec.name == "mine" and spec.framework == "torch" and spec.build("CIFAR10") is mlp
    assert resolve_model("resnet50") is Models.ResNet50 and resolve_model(spec) is spec
    with pytest.raises(ChronosError, match="Expected a model name"):
        model_from_user(42)

    keras_model = Models.KerasCNN.build("MNIST", depth=2, base_filters=8)
    wrapped = model_from_user(keras_model)
    assert wrapped.framework == "keras" and wrapped.family == "CNN"
