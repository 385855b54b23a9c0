"""Dataset descriptors (size, input shape, classes, modality); nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass

from chronos_core.catalog._catalog import Catalog
from chronos_core.errors import ChronosError

MODALITIES = ("image", "text", "sequence", "tabular")


@dataclass(frozen=True)
class DatasetSpec:
    """What a timing or convergence model needs to know about a dataset.

    `input_shape` is per sample: (C, H, W) for images, (seq_len,) of token ids for text,
    (seq_len, features) for sequences, (features,) for tabular data.
    """

    name: str
    train_size: int
    input_shape: tuple[int, ...]
    num_classes: int
    modality: str = "image"
    vocab_size: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ChronosError(f"Unknown modality {self.modality!r}. Known: {', '.join(MODALITIES)}")
        if self.train_size <= 0:
            raise ChronosError(f"Dataset train_size must be positive, got {self.train_size!r}")
        if self.num_classes < 1:
            raise ChronosError(f"Dataset num_classes must be >= 1, got {self.num_classes!r}")

    @property
    def seq_len(self) -> int | None:
        return self.input_shape[0] if self.modality in ("text", "sequence") else None

    def steps_per_epoch(self, batch_size: int, drop_last: bool = False) -> int:
        """Iterations in one pass over the training set."""
        if batch_size <= 0:
            raise ChronosError(f"batch_size must be positive, got {batch_size!r}")
        full, rest = divmod(self.train_size, batch_size)
        return full + (1 if rest and not drop_last else 0)

    def with_input_shape(self, input_shape: tuple[int, ...]) -> DatasetSpec:
        """The same dataset at another resolution or sequence length (e.g. 32x32 crops for timing)."""
        return DatasetSpec(
            self.name,
            self.train_size,
            tuple(input_shape),
            self.num_classes,
            self.modality,
            self.vocab_size,
            self.source,
        )


def custom_dataset(
    name: str,
    train_size: int,
    input_shape: tuple[int, ...],
    num_classes: int,
    modality: str = "image",
    vocab_size: int | None = None,
) -> DatasetSpec:
    """Describe a user's own dataset and register it so it can be named later (never under the name
    of a catalog dataset, which would change it for the rest of the process)."""
    existing = Datasets.resolve(name)
    if existing is not None and Datasets.get(existing).source != "user":
        raise ChronosError(f"{name!r} is the catalog dataset {existing!r}; give your dataset another name")
    spec = DatasetSpec(
        name,
        int(train_size),
        tuple(int(d) for d in input_shape),
        int(num_classes),
        modality,
        vocab_size,
        source="user",
    )
    return Datasets.add(name, spec)


_WORDPIECE_VOCAB = 30522  # bert-base-uncased / DistilBERT tokenizer

_SPECS = [
    DatasetSpec("ImageNet", 1_281_167, (3, 224, 224), 1000, source="image-net.org ILSVRC2012 train"),
    DatasetSpec("CIFAR10", 50_000, (3, 32, 32), 10, source="cs.toronto.edu/~kriz/cifar.html"),
    DatasetSpec("CIFAR100", 50_000, (3, 32, 32), 100, source="cs.toronto.edu/~kriz/cifar.html"),
    DatasetSpec("TinyImageNet", 100_000, (3, 64, 64), 200, source="cs231n tiny-imagenet-200"),
    DatasetSpec(
        "STL10", 5_000, (3, 96, 96), 10, source="cs.stanford.edu/~acoates/stl10 (labelled train split)"
    ),
    DatasetSpec("MNIST", 60_000, (1, 28, 28), 10, source="yann.lecun.com/exdb/mnist"),
    DatasetSpec("FashionMNIST", 60_000, (1, 28, 28), 10, source="github.com/zalandoresearch/fashion-mnist"),
    DatasetSpec(
        "SST2", 67_349, (128,), 2, "text", _WORDPIECE_VOCAB, source="GLUE SST-2 train; seq_len as in CHRONOS"
    ),
    DatasetSpec(
        "IMDB", 25_000, (256,), 2, "text", _WORDPIECE_VOCAB, source="ai.stanford.edu/~amaas/data/sentiment"
    ),
    DatasetSpec("AG_NEWS", 120_000, (128,), 4, "text", _WORDPIECE_VOCAB, source="torchtext AG_NEWS train"),
    DatasetSpec("Digits", 1_797, (1, 8, 8), 10, source="scikit-learn load_digits (ships with the package)"),
    DatasetSpec("MNIST1D", 4_000, (40,), 10, "sequence", source="mnist1d make_dataset default (4000 train)"),
]

Datasets: Catalog[DatasetSpec] = Catalog(
    "dataset",
    {spec.name: spec for spec in _SPECS},
    aliases={
        "cifar-10": "CIFAR10",
        "Cifar10": "CIFAR10",
        "cifar-100": "CIFAR100",
        "Cifar100": "CIFAR100",
        "tiny-imagenet": "TinyImageNet",
        "tiny_imagenet_200": "TinyImageNet",
        "imagenet1k": "ImageNet",
        "ILSVRC2012": "ImageNet",
        "fashion-mnist": "FashionMNIST",
        "fmnist": "FashionMNIST",
        "sst-2": "SST2",
        "agnews": "AG_NEWS",
        "sklearn-digits": "Digits",
    },
)
