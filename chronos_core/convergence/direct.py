"""A direct learned model of the epochs still to come, from prefix features of real curves (issue 14).

Trained on every (run, k) pair of the training runs with the run still open at k, it predicts quantiles
of the remaining run length r = min(T, max_epochs) - k in log space (XGBoost multi-quantile loss).
The run length min(T, max_epochs) is observed exactly for every run, censored or not, so no pair is
dropped and nothing is imputed: a run stopped by max_epochs says "the run lasted max_epochs", which is
what the prediction is scored on; predictions are clipped to [rule lower bound, max_epochs].

Features: the prefix (k, last/min/first loss, relative improvement over the last 1/3/5 epochs, the
improvement of the running best against min_delta, epochs since the best, remaining patience, slope and
curvature of log loss over the last epochs, noise), the rule and budget (patience, min_delta,
max_epochs - k), the zero-shot prediction (out-of-fold on training rows) and the pretrained PFN's
quantiles (a fixed network: no labels leak through it), plus the configuration features.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xgboost as xgb

from chronos_core.convergence import models as cm

QUANTILES = (0.1, 0.5, 0.9)
PAIR_KS = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 18, 20, 25, 30, 35, 40)
PREFIX_NAMES = [
    "k", "log1p_k", "has", "last", "min_minus_last", "first_minus_last", "imp1", "imp3", "imp5",
    "best_imp3_md", "best_imp5_md", "since_best", "since_best_p", "patience_left", "slope5", "slope10",
    "curv8", "noise5", "lb_gap", "log_budget", "log_md_rel",
]  # fmt: skip


def _slope(y: np.ndarray) -> float:
    if len(y) < 2:
        return np.nan
    t = np.arange(len(y), dtype=float)
    t -= t.mean()
    return float((t * (y - y.mean())).sum() / (t * t).sum())


def prefix_row(
    prefix: Sequence[float], k: int, patience: int, min_delta: float, max_epochs: int
) -> list[float]:
    """The features of one prefix of k epochs (see PREFIX_NAMES)."""
    nan = np.nan
    p = np.asarray(prefix[:k], dtype=float)
    budget = np.log(max(max_epochs - k, 1))
    if k == 0:
        return [0, 0, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan, nan,
                np.log(patience), budget, nan]  # fmt: skip
    lp = np.log(np.maximum(p, 1e-8))
    state = cm.prefix_state(list(p), patience, min_delta)
    run_min = np.minimum.accumulate(p)

    def imp(j: int) -> float:
        return lp[-1 - j] - lp[-1] if k > j else nan

    def best_imp(j: int) -> float:
        return np.log1p(max(run_min[-1 - j] - run_min[-1], 0.0) / max(min_delta, 1e-7)) if k > j else nan

    since = k - state["best_epoch"]
    curv = np.polyfit(np.arange(min(k, 8), dtype=float), lp[-8:], 2)[0] if k >= 4 else nan
    d = np.diff(lp[-6:])
    return [
        k, np.log1p(k), 1.0, lp[-1], np.log(run_min[-1]) - lp[-1], lp[0] - lp[-1], imp(1), imp(3), imp(5),
        best_imp(3), best_imp(5), since, since / patience, patience - state["wait"], _slope(lp[-5:]),
        _slope(lp[-10:]), curv, float(np.std(d)) if len(d) >= 2 else nan,
        np.log(max(state["lower_bound"] - k, 1)), budget, np.log10(max(min_delta, 1e-7) / p[-1]),
    ]  # fmt: skip


def prefix_matrix(frame: pd.DataFrame, ks: np.ndarray) -> np.ndarray:
    patience, min_delta, max_epochs = cm._row_ints(frame)
    pref = cm.prefixes(frame)
    return np.array(
        [
            prefix_row(pref[i], int(ks[i]), int(patience[i]), float(min_delta[i]), int(max_epochs[i]))
            for i in range(len(frame))
        ],
        dtype=float,
    )


def pairs(
    frame: pd.DataFrame, ks: Sequence[int] = PAIR_KS, y: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(row, k) of every training pair: prefix long enough, run still open at k and not yet ended (k
    below `y`, the run lengths; default min(T, max_epochs))."""
    patience, min_delta, max_epochs = cm._row_ints(frame)
    if y is None:
        y = np.minimum(cm._target(frame), max_epochs)
    rows, out_k = [], []
    for i, p in enumerate(cm.prefixes(frame)):
        for k in ks:
            if k >= y[i] or len(p) < k or (k and not cm._open(p[:k], patience[i], min_delta[i])):
                continue
            rows.append(i)
            out_k.append(k)
    return np.asarray(rows, dtype=int), np.asarray(out_k, dtype=int)


class DirectQuantileModel:
    """XGBoost multi-quantile regression of log(min(T, max_epochs) - k) on prefix + side features."""

    def __init__(self, seed: int = 0, n_estimators: int = 200, max_depth: int = 3, eta: float = 0.07) -> None:
        self.seed = seed
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.eta = eta

    def fit(self, x: np.ndarray, log_r: np.ndarray, weight: np.ndarray | None = None) -> DirectQuantileModel:
        dm = xgb.DMatrix(np.asarray(x, dtype=np.float32), label=log_r, weight=weight)
        params = {
            "objective": "reg:quantileerror",
            "quantile_alpha": np.array(QUANTILES),
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.eta,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
            "min_child_weight": 5,
            "lambda": 1.0,
            "seed": self.seed,
            "nthread": 1,
            "verbosity": 0,
        }
        self.booster_ = xgb.train(params, dm, num_boost_round=self.n_estimators)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, 3) log-r quantiles, sorted along each row."""
        q = self.booster_.inplace_predict(np.asarray(x, dtype=np.float32))
        return np.sort(np.asarray(q).reshape(len(x), len(QUANTILES)), axis=1)
