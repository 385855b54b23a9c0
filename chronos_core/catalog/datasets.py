"""Dataset descriptors (size, input shape, classes, modality); nothing is downloaded."""

from __future__ import annotations

from dataclasses import dataclass, replace

from chronos_core.catalog._catalog import Catalog
from chronos_core.errors import ChronosError

MODALITIES = ("image", "text", "sequence", "tabular")


@dataclass(frozen=True)
class DatasetSpec:
    """What a timing or convergence model needs to know about a dataset.

    `input_shape` is per sample: (C, H, W) for images, (seq_len,) of token ids for text,
    (seq_len, features) for sequences, (features,) for tabular data.

    Language-modelling corpora also give `train_tokens`: their training split as one token stream,
    cut into `train_tokens // seq_len` sequences, so `train_size` (samples per epoch) follows the
    sequence length (`with_input_shape`/`with_seq_len`); `num_classes` is then the vocabulary the
    next-token loss chooses from.
    """

    name: str
    train_size: int
    input_shape: tuple[int, ...]
    num_classes: int
    modality: str = "image"
    vocab_size: int | None = None
    source: str = ""
    train_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ChronosError(f"Unknown modality {self.modality!r}. Known: {', '.join(MODALITIES)}")
        if self.train_size <= 0:
            raise ChronosError(f"Dataset train_size must be positive, got {self.train_size!r}")
        if self.num_classes < 1:
            raise ChronosError(f"Dataset num_classes must be >= 1, got {self.num_classes!r}")
        if self.train_tokens is not None and self.modality != "text":
            raise ChronosError(f"Dataset {self.name}: train_tokens is for text datasets, not {self.modality}")

    @property
    def seq_len(self) -> int | None:
        return self.input_shape[0] if self.modality in ("text", "sequence") else None

    @property
    def is_language_modelling(self) -> bool:
        """A token corpus (next-token / masked-token training), not a labelled classification set."""
        return self.train_tokens is not None

    def steps_per_epoch(self, batch_size: int, drop_last: bool = False) -> int:
        """Iterations in one pass over the training set."""
        if batch_size <= 0:
            raise ChronosError(f"batch_size must be positive, got {batch_size!r}")
        full, rest = divmod(self.train_size, batch_size)
        return full + (1 if rest and not drop_last else 0)

    def with_input_shape(self, input_shape: tuple[int, ...]) -> DatasetSpec:
        """The same dataset at another resolution or sequence length (e.g. 32x32 crops for timing);
        a token corpus is re-cut into `train_tokens // seq_len` sequences."""
        shape = tuple(input_shape)
        size = self.train_size
        if self.train_tokens is not None:
            size = self.train_tokens // int(shape[0])
            if size < 1:
                raise ChronosError(
                    f"seq_len {shape[0]} is longer than {self.name}'s {self.train_tokens:,} training tokens"
                )
        return replace(self, train_size=size, input_shape=shape)

    def with_seq_len(self, seq_len: int) -> DatasetSpec:
        """The same text/sequence dataset at another sequence length."""
        if self.seq_len is None:
            raise ChronosError(
                f"seq_len applies to text and sequence datasets; {self.name} is {self.modality}"
            )
        return self.with_input_shape((int(seq_len), *self.input_shape[1:]))


def custom_dataset(
    name: str,
    train_size: int,
    input_shape: tuple[int, ...],
    num_classes: int,
    modality: str = "image",
    vocab_size: int | None = None,
    train_tokens: int | None = None,
) -> DatasetSpec:
    """Describe a user's own dataset and register it so it can be named later (never under the name
    of a catalog dataset, which would change it for the rest of the process). A token corpus gives
    `train_tokens` (text only); `train_size` is then its sequences at `input_shape[0]` tokens."""
    existing = Datasets.resolve(name)
    if existing is not None and Datasets.get(existing).source != "user":
        raise ChronosError(f"{name!r} is the catalog dataset {existing!r}; give your dataset another name")
    shape = tuple(int(d) for d in input_shape)
    size = int(train_tokens) // shape[0] if train_tokens is not None and shape else int(train_size)
    spec = DatasetSpec(
        name,
        size,
        shape,
        int(num_classes),
        modality,
        vocab_size,
        source="user",
        train_tokens=None if train_tokens is None else int(train_tokens),
    )
    return Datasets.add(name, spec)


_WORDPIECE_VOCAB = 30522  # bert-base-uncased / DistilBERT tokenizer
_GPT2_VOCAB = 50257  # GPT-2 byte-level BPE
LM_SEQ_LEN = 1024  # default sequence length of the token corpora (GPT-2's context, nanoGPT's block_size)


def _corpus(name: str, tokens: int, vocab: int, source: str) -> DatasetSpec:
    """A language-modelling corpus: `tokens` training tokens cut into LM_SEQ_LEN-token sequences."""
    return DatasetSpec(name, tokens // LM_SEQ_LEN, (LM_SEQ_LEN,), vocab, "text", vocab, source, tokens)


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
    # Token corpora (language modelling): train_size = train_tokens // seq_len at the chosen seq_len.
    _corpus("WikiText-103", 103_227_021, 267_735,
            "Merity et al. 2016 (arXiv:1609.07843) Table 1: 103,227,021 train tokens, word-level "
            "(vocab 267,735); a subword tokenizer (GPT-2 BPE) cuts the same text into more tokens"),
    _corpus("WikiText-2", 2_088_628, 33_278,
            "Merity et al. 2016 (arXiv:1609.07843) Table 1: 2,088,628 train tokens, word-level "
            "(vocab 33,278)"),
    _corpus("OpenWebText", 9_035_582_198, _GPT2_VOCAB,
            "nanoGPT data/openwebtext/prepare.py: train.bin has 9,035,582,198 GPT-2 BPE tokens "
            "(val 4,434,897)"),
]  # fmt: skip

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
        "wikitext103": "WikiText-103",
        "wikitext-103-raw-v1": "WikiText-103",
        "wikitext-103-v1": "WikiText-103",
        "wt103": "WikiText-103",
        "wikitext-2-raw-v1": "WikiText-2",
        "wikitext-2-v1": "WikiText-2",
        "wt2": "WikiText-2",
        "owt": "OpenWebText",
    },
)
