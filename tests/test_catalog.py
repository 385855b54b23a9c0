"""Catalog lookups: forgiving spellings, attribute access, custom entries, clear errors."""

from __future__ import annotations

import pytest

from chronos_core import ChronosError, Datasets, Optimizers, custom_dataset
from chronos_core.catalog._catalog import Catalog, attribute_name, normalize_name


def test_normalize_drops_vendor_words_and_punctuation():
    assert normalize_name("NVIDIA Tesla T4") == "t4"
    assert normalize_name("NVIDIA H100 PCIe") == normalize_name("h100-pcie") == "h100pcie"
    assert normalize_name("GeForce RTX 4090") == "rtx4090"


def test_attribute_names_are_identifiers():
    assert attribute_name("A100-PCIe-80GB") == "A100_PCIe_80GB"
    assert attribute_name("SGD-momentum") == "SGD_momentum"
    assert attribute_name("3090").isidentifier()


def test_catalog_lookup_alias_attribute_and_error():
    cat = Catalog("thing", {"Alpha-1": 1, "Beta": 2}, aliases={"first": "Alpha-1"})
    assert cat.get("alpha 1") == cat.Alpha_1 == cat["FIRST"] == 1
    assert "beta" in cat and "gamma" not in cat
    assert "Alpha_1" in dir(cat)
    with pytest.raises(ChronosError, match=r"Unknown thing 'gamma'\. Known: Alpha-1, Beta"):
        cat.get("gamma")
    with pytest.raises(AttributeError):
        cat.__wrapped__  # noqa: B018  dunder lookups must not hit the catalog
    with pytest.raises(KeyError):
        Catalog("thing", {"a": 1}, aliases={"x": "missing"})


def test_datasets_match_the_chronos_spellings():
    assert Datasets.Cifar100 is Datasets.get("cifar-100") is Datasets.CIFAR100
    assert Datasets.ImageNet.train_size == 1_281_167 and Datasets.ImageNet.input_shape == (3, 224, 224)
    assert Datasets.TinyImageNet.num_classes == 200
    assert Datasets.SST2.modality == "text" and Datasets.SST2.seq_len == 128
    for name in ["MNIST", "FashionMNIST", "STL10", "IMDB", "AG_NEWS", "CIFAR10"]:
        assert name in Datasets


def test_steps_per_epoch():
    assert Datasets.CIFAR10.steps_per_epoch(128) == 391
    assert Datasets.CIFAR10.steps_per_epoch(128, drop_last=True) == 390
    with pytest.raises(ChronosError, match="batch_size must be positive"):
        Datasets.CIFAR10.steps_per_epoch(0)


def test_custom_dataset_is_registered_and_validated():
    spec = custom_dataset("my-scans", 12_000, (1, 128, 128), 3)
    assert Datasets.get("My Scans") is spec and spec.steps_per_epoch(1000) == 12
    with pytest.raises(ChronosError, match="modality"):
        custom_dataset("bad", 10, (3,), 2, modality="video")
    with pytest.raises(ChronosError, match="train_size"):
        custom_dataset("bad", 0, (3,), 2)


def test_optimizer_state_and_build():
    import torch

    assert Optimizers.SGD.state_bytes_per_param == 0
    assert Optimizers.AdamW.state_bytes_per_param == 8
    assert Optimizers.get("sgdm").momentum == 0.9
    params = [torch.nn.Parameter(torch.zeros(3))]
    for spec in Optimizers:
        opt = spec.build(params, lr=0.1)
        assert isinstance(opt, torch.optim.Optimizer)
    with pytest.raises(ChronosError, match="Unknown optimizer 'lion'"):
        Optimizers.get("lion")
