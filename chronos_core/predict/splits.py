"""Split protocols for time tables: random, unseen config, leave-one-GPU-out, leave-one-model-out, both.

Every split keeps repeats of one configuration together. CHRONOS measures each configuration
three times with three learning rates that do not change the time; those rows are one group.
Generators yield `Fold(train_idx, test_idx, name)` with positional indices into the table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import pandas as pd

from chronos_core.data.schema import CONFIG_COLUMNS, FEATURE_COLUMNS, LEAKY_COLUMNS, TARGET_COLUMNS
from chronos_core.errors import ChronosError, unknown_choice

# Columns that vary between repeats of one configuration without changing its time.
REPEAT_COLUMNS = ("learning_rate", "seed", "source")
# Derived columns that some published rows round differently (a product or ratio of other columns).
DERIVED_COLUMNS = ("flops_train_per_batch", "arithmetic_intensity_train")
# A100 project: the five configs of their logs_unseen/ test (they also sit in runs_agg.csv).
A100_UNSEEN_CONFIGS = ((2, 16, 160), (2, 64, 1280), (3, 32, 320), (4, 64, 640), (5, 128, 48))


class Fold(NamedTuple):
    """One train/test partition: positional row indices and a readable name."""

    train_idx: np.ndarray
    test_idx: np.ndarray
    name: str


def _key_columns(table: pd.DataFrame, with_device: bool) -> list[str]:
    cols = [
        c
        for c in CONFIG_COLUMNS + FEATURE_COLUMNS
        if c in table.columns and c not in REPEAT_COLUMNS + DERIVED_COLUMNS
    ]
    cols += [c for c in ("depth", "base_filters", "embed_dim", "d_model") if c in table.columns]
    if with_device:
        cols += [c for c in ("device", "gpu_name") if c in table.columns]
    return [c for c in dict.fromkeys(cols) if c not in TARGET_COLUMNS and c not in LEAKY_COLUMNS]


def config_groups(table: pd.DataFrame, with_device: bool = True) -> np.ndarray:
    """One integer per row naming its configuration (repeats share it); `with_device=False` pools GPUs."""
    cols = _key_columns(table, with_device)
    if not cols:
        return np.arange(len(table))
    return row_codes(table, cols)


def row_codes(table: pd.DataFrame, cols: list[str]) -> np.ndarray:
    """One integer per row, equal for rows that agree on every column of `cols` (NaN equals NaN)."""
    key = np.zeros(len(table), dtype=np.int64)
    for col in cols:
        values = table[col]
        if pd.api.types.is_float_dtype(values.dtype):
            values = values.map(lambda v: float(f"{v:.6g}"))  # published tables round floats unevenly
        codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=False)
        key = pd.factorize(key * (len(uniques) + 1) + codes)[0].astype(np.int64)
    return key


def _check(table: pd.DataFrame, column: str) -> None:
    if column not in table.columns:
        raise ChronosError(
            f"Split needs column {column!r}; table has {', '.join(map(str, table.columns[:20]))}"
        )


def random_split(
    table: pd.DataFrame, test_frac: float = 0.2, seed: int = 0, n_repeats: int = 1
) -> Iterator[Fold]:
    """Random test fraction of (config, device) groups: repeats stay together, other GPUs may be seen."""
    groups = config_groups(table, with_device=True)
    unique = np.unique(groups)
    for r in range(n_repeats):
        rng = np.random.default_rng(seed + r)
        test_groups = rng.choice(unique, size=max(1, int(round(test_frac * len(unique)))), replace=False)
        mask = np.isin(groups, test_groups)
        yield Fold(np.flatnonzero(~mask), np.flatnonzero(mask), f"random{r}" if n_repeats > 1 else "random")


def unseen_config(table: pd.DataFrame, n_folds: int = 5, seed: int = 0) -> Iterator[Fold]:
    """K folds over configurations pooled across GPUs: a test config was measured on no training GPU."""
    groups = config_groups(table, with_device=False)
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(unique), np.arange(len(unique)) % n_folds, strict=True))
    folds = np.array([fold_of[g] for g in groups])
    for k in range(n_folds):
        mask = folds == k
        yield Fold(np.flatnonzero(~mask), np.flatnonzero(mask), f"fold{k}")


def leave_one_out(table: pd.DataFrame, column: str) -> Iterator[Fold]:
    """One fold per value of `column` (test: rows with it; train: all other rows)."""
    _check(table, column)
    values = table[column].astype(str).to_numpy()
    for value in sorted(set(values)):
        mask = values == value
        yield Fold(np.flatnonzero(~mask), np.flatnonzero(mask), value)


def leave_one_gpu_out(table: pd.DataFrame) -> Iterator[Fold]:
    """One fold per device: the test GPU is never seen in training."""
    return leave_one_out(table, "device")


def leave_one_model_out(table: pd.DataFrame) -> Iterator[Fold]:
    """One fold per model (architecture): the test model is never seen in training, on any GPU."""
    return leave_one_out(table, "model")


def unseen_gpu_and_model(table: pd.DataFrame) -> Iterator[Fold]:
    """One fold per (device, model): test on that pair; train on rows with neither that GPU nor that model."""
    _check(table, "device")
    _check(table, "model")
    dev = table["device"].astype(str).to_numpy()
    mod = table["model"].astype(str).to_numpy()
    for d in sorted(set(dev)):
        for m in sorted(set(mod)):
            test = (dev == d) & (mod == m)
            if not test.any():
                continue
            train = (dev != d) & (mod != m)
            yield Fold(np.flatnonzero(train), np.flatnonzero(test), f"{d} x {m}")


def a100_unseen_split(table: pd.DataFrame) -> Iterator[Fold]:
    """The A100 project's unseen-configs test without their leak: the five configs held out of training."""
    for c in ("depth", "base_filters", "batch_size"):
        _check(table, c)
    keys = list(zip(table["depth"], table["base_filters"], table["batch_size"], strict=True))
    mask = np.array([tuple(int(v) for v in k) in A100_UNSEEN_CONFIGS for k in keys])
    if not mask.any():
        raise ChronosError("None of the A100 project's five unseen configs is in this table")
    yield Fold(np.flatnonzero(~mask), np.flatnonzero(mask), "a100-unseen5")


SPLITS: dict[str, Callable[..., Iterator[Fold]]] = {
    "random": random_split,
    "unseen_config": unseen_config,
    "unseen_gpu": leave_one_gpu_out,
    "unseen_model": leave_one_model_out,
    "unseen_gpu_model": unseen_gpu_and_model,
    "a100_unseen": a100_unseen_split,
}


def get_split(name: str) -> Callable[..., Iterator[Fold]]:
    """The split generator registered under `name`."""
    if name not in SPLITS:
        raise unknown_choice("split", name, SPLITS)
    return SPLITS[name]


def table_hash(table: pd.DataFrame) -> str:
    """A short, order-sensitive content hash of a table (for caches keyed by training data)."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(table.astype(str), index=False).values.tobytes())
    return digest.hexdigest()[:16]
