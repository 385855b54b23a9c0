"""Offline classification tasks for real training runs: small, fixed data that ships with packages.

Every task is classification with a fixed train/validation split (the data never depends on the
run's seed). Inputs are either real vectors with a sequence view (length, features) or token ids
(length,) over a small character vocabulary; `nets.build_model` adapts each model to both.
"""

from __future__ import annotations

import functools
import sysconfig
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from chronos_core.errors import unknown_choice

DATA_SEED = 0


@dataclass(frozen=True)
class TaskData:
    """A task's tensors plus what models need to know about its inputs."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    kind: str  # "vector": float (N, L*F) viewed as (L, F); "tokens": long (N, L) with `vocab_size`
    seq_len: int
    features: int  # per-position features (vector) or vocabulary size (tokens)
    modality: str  # image, signal, synthetic, text

    @property
    def dataset_size(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def input_dim(self) -> int:
        return self.seq_len * self.features if self.kind == "vector" else self.seq_len


def _standardize(train: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), train.std(0) + 1e-6
    return (train - mean) / std, (val - mean) / std


def _split(x: np.ndarray, y: np.ndarray, val_fraction: float) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(DATA_SEED).permutation(len(x))
    n_val = int(round(val_fraction * len(x)))
    val, train = order[:n_val], order[n_val:]
    return x[train], y[train], x[val], y[val]


def _vector_task(
    name: str,
    x: tuple[np.ndarray, np.ndarray],
    y: tuple[np.ndarray, np.ndarray],
    seq: tuple[int, int],
    mod: str,
) -> TaskData:
    x_train, x_val = _standardize(x[0].astype(np.float32), x[1].astype(np.float32))
    return TaskData(
        name=name,
        x_train=torch.from_numpy(x_train.astype(np.float32)),
        y_train=torch.from_numpy(y[0].astype(np.int64)),
        x_val=torch.from_numpy(x_val.astype(np.float32)),
        y_val=torch.from_numpy(y[1].astype(np.int64)),
        num_classes=int(max(y[0].max(), y[1].max()) + 1),
        kind="vector",
        seq_len=seq[0],
        features=seq[1],
        modality=mod,
    )


MAX_TRAIN, MAX_VAL = 1500, 500  # every task is capped here so a run takes seconds on one CPU core


def digits() -> TaskData:
    """scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), 80/20 split; rows as a sequence."""
    from sklearn.datasets import load_digits

    data = load_digits()
    xt, yt, xv, yv = _split(data.data, data.target, 0.2)
    return _vector_task("digits", (xt, xv), (yt, yv), (8, 8), "image")


def mnist1d() -> TaskData:
    """mnist1d's `make_dataset()` with its default arguments (40-d, 10 classes): first 1500 train, 500 test.

    Sequence models see 10 steps of 4 consecutive points (keeps recurrent/attention runs cheap).
    """
    from mnist1d.data import make_dataset

    data = make_dataset()
    x, y = (
        (data["x"][:MAX_TRAIN], data["x_test"][:MAX_VAL]),
        (data["y"][:MAX_TRAIN], data["y_test"][:MAX_VAL]),
    )
    return _vector_task("mnist1d", x, y, (10, 4), "signal")


def teacher() -> TaskData:
    """Teacher-student: labels from a random tanh MLP teacher (24 -> 64 -> 10) with 10% label noise."""
    rng = np.random.default_rng(DATA_SEED)
    n, dim, hidden, classes = MAX_TRAIN + MAX_VAL, 24, 64, 10
    x = rng.standard_normal((n, dim))
    w1 = rng.standard_normal((dim, hidden)) / np.sqrt(dim)
    w2 = rng.standard_normal((hidden, classes)) * 2.0 / np.sqrt(hidden)
    y = np.argmax(np.tanh(x @ w1 * 2.0) @ w2, axis=1)
    noisy = rng.random(n) < 0.10
    y[noisy] = rng.integers(0, classes, noisy.sum())
    xt, yt, xv, yv = _split(x, y, MAX_VAL / (MAX_TRAIN + MAX_VAL))
    return _vector_task("teacher", (xt, xv), (yt, yv), (6, 4), "synthetic")


STDLIB_SOURCES = ("argparse.py", "textwrap.py", "difflib.py", "fractions.py", "string.py", "pprint.py")
TEXT_CONTEXT = 16
TEXT_VOCAB = 40  # most frequent characters; everything else maps to one unknown symbol
TEXT_TRAIN, TEXT_VAL = MAX_TRAIN, MAX_VAL


def _text_task(name: str, text: str, modality: str = "text") -> TaskData:
    """Next-character classification from a 16-character context; train/val windows from disjoint halves."""
    common = [c for c, _ in Counter(text).most_common(TEXT_VOCAB - 1)]
    index = {c: i + 1 for i, c in enumerate(common)}  # 0 = unknown
    ids = np.array([index.get(c, 0) for c in text], dtype=np.int64)
    cut = int(0.8 * len(ids))
    rng = np.random.default_rng(DATA_SEED)

    def windows(part: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        starts = rng.integers(0, len(part) - TEXT_CONTEXT - 1, count)
        x = np.stack([part[s : s + TEXT_CONTEXT] for s in starts])
        return x, part[starts + TEXT_CONTEXT]

    xt, yt = windows(ids[:cut], TEXT_TRAIN)
    xv, yv = windows(ids[cut:], TEXT_VAL)
    return TaskData(
        name=name,
        x_train=torch.from_numpy(xt),
        y_train=torch.from_numpy(yt),
        x_val=torch.from_numpy(xv),
        y_val=torch.from_numpy(yv),
        num_classes=TEXT_VOCAB,
        kind="tokens",
        seq_len=TEXT_CONTEXT,
        features=TEXT_VOCAB,
        modality=modality,
    )


def text_py() -> TaskData:
    """Characters of a few Python standard-library source files (read from this interpreter's stdlib)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    text = "".join((root / f).read_text(encoding="utf-8") for f in STDLIB_SOURCES)
    return _text_task("text_py", text)


def text_doc() -> TaskData:
    """English prose: the Python documentation topics shipped in the stdlib's pydoc_data package."""
    from pydoc_data.topics import topics

    return _text_task("text_doc", "".join(topics[k] for k in sorted(topics)))


TASKS = {"digits": digits, "mnist1d": mnist1d, "teacher": teacher, "text_py": text_py, "text_doc": text_doc}


@functools.cache
def load_task(name: str) -> TaskData:
    """The task called `name` (cached per process)."""
    if name not in TASKS:
        raise unknown_choice("convergence task", name, TASKS)
    return TASKS[name]()
