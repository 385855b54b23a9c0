"""Convergence tables in one frame: public (CAPE_Dataset, CHRONOS, CAPE probe-batch) and our own runs.

All rows get the canonical convergence columns plus `table` (where the row comes from), `config`
(the configuration without its seed: repeats and duplicates share it, so grouped splits never let
one configuration straddle train and test) and `val_loss_prefix` as a list of floats (possibly empty).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from chronos_core.data import registry
from chronos_core.data.adapters import load_convergence_table
from chronos_core.errors import ChronosError

OURS_PATH = registry.REPO_ROOT / "meta_datasets" / "convergence" / "runs.csv"
CHRONOS_SOURCES = ("chronos-conv-cnn", "chronos-conv-mlp", "chronos-conv-transformer")
PROBE_BATCH_FAMILIES = ("mlp", "cnn", "rnn", "transformer")
CONFIG_KEYS = ("table", "family", "model", "dataset", "optimizer", "learning_rate", "batch_size")


def parse_prefix(
    value: object, where: str = "val_loss_prefix", strict: bool = True, truncate_nonfinite: bool = False
) -> list[float]:
    """A JSON list of finite losses -> list of floats ([] for missing); ChronosError if malformed.

    strict=False (published tables) keeps the losses before the first bad one instead of raising;
    truncate_nonfinite=True does that only for NaN/inf (a run that diverged inside its prefix).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return []
    if isinstance(value, list | tuple | np.ndarray):
        items = list(value)
    else:
        text = str(value).strip()
        if not text:
            return []
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            raise ChronosError(
                f"{where} must be a JSON list of numbers such as [2.3, 1.9, 1.7]; got {text[:60]!r}"
            ) from None
    if not isinstance(items, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in items
    ):
        raise ChronosError(
            f"{where} must be a JSON list of numbers such as [2.3, 1.9, 1.7]; got {value!r:.60}"
        )
    floats = [float(v) for v in items]
    if truncate_nonfinite:
        bad = [i for i, v in enumerate(floats) if not math.isfinite(v)]
        floats = floats[: bad[0]] if bad else floats
    if not strict:
        bad = [i for i, v in enumerate(floats) if not (math.isfinite(v) and v >= 0)]
        return floats[: bad[0]] if bad else floats
    if not all(math.isfinite(v) and v >= 0 for v in floats):
        raise ChronosError(f"{where} must hold finite non-negative losses; got {floats[:8]}")
    return floats


def _finish(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    out = frame.copy()
    out["table"] = table
    out["val_loss_prefix"] = [
        parse_prefix(v, strict=False) for v in out.get("val_loss_prefix", [None] * len(out))
    ]
    out["config"] = out[list(CONFIG_KEYS)].astype(str).agg("|".join, axis=1)
    if "converged" not in out:
        out["converged"] = out["T_conv"] < out["max_epochs"]
    return out.reset_index(drop=True)


def cape_table() -> pd.DataFrame:
    """CAPE_Dataset: 324 runs (CHRONOS's 228 plus LSTM/BiLSTM) with the first <= 20 validation losses.

    CAPE lists patience 5 for the CNN runs; CHRONOS's table of the same runs says 7, and every CNN
    curve that ends inside the prefix stops exactly as patience 7 predicts. Rows found in CHRONOS's
    tables take its patience, min_delta, precision and seed.
    """
    cape = load_convergence_table(("cape-dataset",))
    keys = ["model", "dataset", "optimizer", "learning_rate", "batch_size", "T_conv"]
    fixes = ["patience", "min_delta", "precision", "seed"]
    try:
        chronos = load_convergence_table(CHRONOS_SOURCES)[keys + fixes].drop_duplicates(keys)
    except ChronosError:  # CHRONOS tables not available offline: keep CAPE's values
        return _finish(cape, "cape")
    merged = cape.merge(chronos, on=keys, how="left", suffixes=("", "_chronos"))
    for col in fixes:
        merged[col] = merged[f"{col}_chronos"].combine_first(merged[col])
    return _finish(merged.drop(columns=[f"{c}_chronos" for c in fixes]), "cape")


def chronos_table() -> pd.DataFrame:
    """CHRONOS's convergence tables (CNN, MLP, Transformer; 228 runs, no loss curves)."""
    return _finish(load_convergence_table(CHRONOS_SOURCES), "chronos")


def ours_table(path: Path | str = OURS_PATH, include_diverged: bool = False) -> pd.DataFrame:
    """Our runs (meta_datasets/convergence/runs.csv) in the same schema; the full curve is the prefix."""
    path = Path(path)
    if not path.is_file():
        raise ChronosError(f"No convergence runs at {path}; run `python -m chronos_core.convergence.sweep`")
    raw = pd.read_csv(path)
    if "error" in raw:
        raw = raw[raw["error"].isna() | (raw["error"] == "")]
    if not include_diverged:
        raw = raw[~raw["diverged"].astype(bool)]
    out = raw.rename(columns={"val_loss_curve": "val_loss_prefix"}).copy()
    out["source"] = "chronos-ours"
    return _finish(out, "ours")


def public_table() -> pd.DataFrame:
    """All public epoch-level runs without duplicates: CAPE_Dataset (a superset of CHRONOS's rows)."""
    return cape_table()


def combined_table(path: Path | str = OURS_PATH) -> pd.DataFrame:
    """Public runs plus ours (ours only if the file exists)."""
    frames = [public_table()]
    if Path(path).is_file():
        frames.append(ours_table(path))
    return pd.concat(frames, ignore_index=True)


def probe_batch_table() -> pd.DataFrame:
    """CAPE's probe-batch meta-datasets (T_star = AdamW steps on one batch to eps x initial loss), one frame.

    `model` identifies an architecture: the published name where there is one, else its parameter
    count (CAPE's MLP and RNN tables do not name models). logFinalLoss is dropped (measured at the end).
    """
    frames = []
    for fam in PROBE_BATCH_FAMILIES:
        raw = registry.read(f"cape-probe-{fam}")
        out = raw.drop(columns=[c for c in ("logFinalLoss", "censored_reason") if c in raw])
        if fam == "cnn":
            name = raw["cnn_family"].astype(str) + raw["depth_signature"].astype(str) + raw["downsample_type"]
        elif fam == "transformer":
            name = raw["architecture"].astype(str)
        else:
            name = fam + "_P" + np.exp(raw["logP"]).round().astype(int).astype(str)
        out["model"] = fam + ":" + name
        out["family"] = fam
        out["table"] = f"cape-probe-{fam}"
        frames.append(out)
    out = pd.concat(frames, ignore_index=True)
    keys = ["family", "model", "dataset", "learning_rate", "batch_size", "epsilon"]
    out["config"] = out[keys].astype(str).agg("|".join, axis=1)
    return out
