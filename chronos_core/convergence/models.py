"""Epochs-to-convergence models, all with `fit(frame)` / `predict(frame, k)` on convergence rows.

- `ConstantMedian`, `ParamScaling` (log T = a + b log #params), `CapeForest` (CAPE's RandomForest on
  its six features): baselines.
- `MetaRegressor`: XGBoost in log space on configuration + init-time probe features (zero-shot).
- `CurveFit`: parametric learning-curve fits (exponential, power law) on the first k validation
  losses, extrapolated and run through the same early-stopping rule; parameter-sampling intervals.
- `PrefixModel`: a learned model over curve prefixes (XGBoost on prefix shape features, the
  parametric fits and the zero-shot prediction; configuration features optional, off by default
  because they generalize worse to unseen models), guarded: for each k it is used only where inner
  cross-validation on the training rows says it beats zero-shot.
- `ConvergencePredictor`: zero-shot + prefix model + split-conformal 80% intervals in log space,
  calibrated on grouped out-of-fold residuals. This is what `predict-epochs` uses.

Every `predict` returns a frame with `pred`, `lo`, `hi` (epochs). A row whose prefix already shows
early stopping firing gets that epoch exactly; otherwise predictions respect the lower bound the
prefix implies (T_conv >= max(k + 1, best epoch so far + patience)).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import GroupKFold
from xgboost import XGBRegressor

from chronos_core.convergence.stopping import early_stopping_epoch as stop_epoch
from chronos_core.errors import ChronosError

ADAPTIVE_OPTIMIZERS = ("AdamW", "Adam", "Adafactor", "RMSprop")
FAMILIES = ("MLP", "CNN", "RNN", "Transformer")
PREFIX_KS = (2, 3, 4, 5, 7, 10, 15)  # prefix lengths the learned prefix model trains on
ALPHA = 0.2  # 80% intervals

# feature groups (for the ablation): configuration, CHRONOS's probes, and our extra probes
CONFIG_FEATURES = [
    "log_params", "log_lr", "log_batch", "log_dataset_size", "log_steps_per_epoch", "log_classes",
    "adaptive_optimizer", "patience", "log_min_delta", *[f"family_{f}" for f in FAMILIES],
]  # fmt: skip
CHRONOS_PROBE_FEATURES = [
    "gradient_norm_log10",
    "initial_loss_log10",
    "initial_loss_over_chance",
    "log_lr_x_grad",
]
PROBE_GROUPS = {
    "ntk": ["ntk_trace_log10"],
    "noise": ["grad_noise_scale_log10", "grad_coherence_log10"],
    "hessian": ["hessian_top_eig_log10"],
    "probe_batch": ["probe_batch_steps_log10"],
}


# ----------------------------------------------------------------------------- features
def _col(frame: pd.DataFrame, name: str, default: float = math.nan) -> np.ndarray:
    if name not in frame:
        return np.full(len(frame), default, dtype=float)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)


def _log10(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), np.nan)


def zero_shot_features(
    frame: pd.DataFrame, extra_probes: bool = True, probe_batch: bool = False
) -> pd.DataFrame:
    """Numeric features known before training: configuration, data size, init-time probes."""
    batch = _col(frame, "batch_size")
    size = _col(frame, "dataset_size")
    classes = _col(frame, "num_classes")
    init_log10 = _col(frame, "initial_loss_log10")
    opt = frame["optimizer"].astype(str) if "optimizer" in frame else pd.Series([""] * len(frame))
    fam = frame["family"].astype(str) if "family" in frame else pd.Series([""] * len(frame))
    out = {
        "log_params": _log10(_col(frame, "param_count")),
        "log_lr": _log10(_col(frame, "learning_rate")),
        "log_batch": _log10(batch),
        "log_dataset_size": _log10(size),
        "log_steps_per_epoch": _log10(np.ceil(size / batch)),
        "log_classes": _log10(classes),
        "adaptive_optimizer": opt.isin(ADAPTIVE_OPTIMIZERS).to_numpy(dtype=float),
        "patience": _col(frame, "patience"),
        "log_min_delta": _log10(_col(frame, "min_delta")),
        "gradient_norm_log10": _col(frame, "gradient_norm_log10"),
        "initial_loss_log10": init_log10,
        # initial loss relative to chance (ln C): scale-free across datasets
        "initial_loss_over_chance": 10**init_log10 / np.log(np.where(classes > 1, classes, np.nan)),
        "log_lr_x_grad": _log10(_col(frame, "learning_rate")) + _col(frame, "gradient_norm_log10"),
    }
    for name in FAMILIES:
        out[f"family_{name}"] = (fam == name).to_numpy(dtype=float)
    if extra_probes:
        for name in PROBE_GROUPS["ntk"] + PROBE_GROUPS["noise"] + PROBE_GROUPS["hessian"]:
            out[name] = _col(frame, name)
    if probe_batch:  # CAPE's probe-batch steps: seconds of extra training, so only on request
        out["probe_batch_steps_log10"] = _log10(_col(frame, "probe_batch_steps_eps10"))
    return pd.DataFrame(out, index=frame.index)


def prefixes(frame: pd.DataFrame) -> list[list[float]]:
    """The rows' validation-loss prefixes as lists (empty when absent)."""
    if "val_loss_prefix" not in frame:
        return [[] for _ in range(len(frame))]
    from chronos_core.convergence.data import parse_prefix

    return [parse_prefix(v) for v in frame["val_loss_prefix"]]


def stop_epochs(curves: np.ndarray, patience: int, min_delta: float, max_epochs: int) -> np.ndarray:
    """Vectorized early stopping over rows of `curves` (samples x epochs); max_epochs where it never fires."""
    n, length = curves.shape
    best = np.full(n, np.inf)
    wait = np.zeros(n, dtype=int)
    result = np.full(n, max_epochs, dtype=float)
    open_ = np.ones(n, dtype=bool)
    for t in range(min(length, max_epochs)):
        v = curves[:, t]
        better = v < best - min_delta
        best = np.where(better & open_, v, best)
        wait = np.where(better, 0, wait + 1)
        fired = open_ & (wait >= patience)
        result[fired] = t + 1
        open_ &= ~fired
        if not open_.any():
            break
    return result


def prefix_state(prefix: Sequence[float], patience: int, min_delta: float) -> dict[str, float]:
    """What a prefix says for sure: whether stopping fired, the best epoch so far, the lower bound."""
    k = len(prefix)
    fired = stop_epoch(prefix, patience, min_delta)
    best, best_epoch, wait = math.inf, 0, 0
    for epoch, value in enumerate(prefix, start=1):
        if value < best - min_delta:
            best, best_epoch, wait = value, epoch, 0
        else:
            wait += 1
    lower = max(k + 1, best_epoch + patience) if fired is None else fired
    return {"fired": fired, "best_epoch": best_epoch, "wait": wait, "lower_bound": lower}


def _open(prefix: Sequence[float], patience: float, min_delta: float) -> bool:
    return stop_epoch(prefix, int(patience), float(min_delta)) is None


def _row_ints(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    patience = np.nan_to_num(_col(frame, "patience", 5.0), nan=5.0).astype(int)
    min_delta = np.nan_to_num(_col(frame, "min_delta", 1e-4), nan=1e-4)
    max_epochs = np.nan_to_num(_col(frame, "max_epochs", 200.0), nan=200.0).astype(int)
    return patience, min_delta, max_epochs


def _target(frame: pd.DataFrame) -> np.ndarray:
    if "T_conv" not in frame:
        raise ChronosError("Training rows need a T_conv column")
    y = _col(frame, "T_conv")
    if not np.all(np.isfinite(y) & (y >= 1)):
        raise ChronosError("T_conv must be a finite number of epochs >= 1 in every training row")
    return y


def _frame(pred: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> pd.DataFrame:
    return pd.DataFrame({"pred": pred, "lo": pred if lo is None else lo, "hi": pred if hi is None else hi})


# ----------------------------------------------------------------------------- baselines
class ConstantMedian:
    """Predict the training rows' median T_conv for everything."""

    def fit(self, frame: pd.DataFrame) -> ConstantMedian:
        y = _target(frame)
        self.median_ = float(np.median(y))
        self.lo_, self.hi_ = (float(np.quantile(y, q)) for q in (ALPHA / 2, 1 - ALPHA / 2))
        return self

    def predict(self, frame: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
        n = len(frame)
        return _frame(np.full(n, self.median_), np.full(n, self.lo_), np.full(n, self.hi_))


class ParamScaling:
    """log T_conv = a + b log10 #params (a scaling law in model size only)."""

    def fit(self, frame: pd.DataFrame) -> ParamScaling:
        x = _log10(_col(frame, "param_count"))
        y = np.log(_target(frame))
        ok = np.isfinite(x)
        self.coef_ = (
            np.polyfit(x[ok], y[ok], 1) if ok.sum() >= 2 and np.ptp(x[ok]) > 0 else np.array([0.0, y.mean()])
        )
        return self

    def predict(self, frame: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
        x = np.nan_to_num(_log10(_col(frame, "param_count")), nan=0.0)
        return _frame(np.exp(np.polyval(self.coef_, x)))


class CapeForest:
    """CAPE's RandomForest: T_conv from log P, gradient norm, NTK proxy, log B, log lr, log N."""

    FEATURES = ("log_params", "gradient_norm_log10", "ntk_proxy", "log_batch", "log_lr", "log_dataset_size")

    def __init__(self, n_estimators: int = 300, seed: int = 0) -> None:
        self.n_estimators = n_estimators
        self.seed = seed

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        feats = zero_shot_features(frame, extra_probes=False)
        feats["ntk_proxy"] = 2 * feats["gradient_norm_log10"]
        return feats[list(self.FEATURES)].fillna(0.0).to_numpy()

    def fit(self, frame: pd.DataFrame) -> CapeForest:
        self.model_ = RandomForestRegressor(self.n_estimators, random_state=self.seed, n_jobs=1)
        self.model_.fit(self._x(frame), _target(frame))
        return self

    def predict(self, frame: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
        return _frame(self.model_.predict(self._x(frame)))


# ----------------------------------------------------------------------------- zero-shot meta-regressor
def _xgb(seed: int, n_estimators: int = 200) -> XGBRegressor:
    return XGBRegressor(
        n_estimators=n_estimators, max_depth=3, learning_rate=0.07, subsample=0.8, colsample_bytree=0.8,
        min_child_weight=2, reg_lambda=1.0, random_state=seed, n_jobs=1, verbosity=0,
    )  # fmt: skip


class MetaRegressor:
    """XGBoost on zero-shot features, target log(T_conv - patience + 1) (epochs after the best one)."""

    def __init__(
        self, seed: int = 0, extra_probes: bool = True, features: Sequence[str] | None = None
    ) -> None:
        self.seed = seed
        self.extra_probes = extra_probes
        self.features = features

    def _x(self, frame: pd.DataFrame) -> pd.DataFrame:
        wanted = list(self.features) if self.features is not None else None
        feats = zero_shot_features(
            frame, self.extra_probes, probe_batch=bool(wanted and "probe_batch_steps_log10" in wanted)
        )
        return feats[wanted] if wanted is not None else feats

    def fit(self, frame: pd.DataFrame) -> MetaRegressor:
        patience, _, _ = _row_ints(frame)
        y = np.log(np.maximum(_target(frame) - patience + 1, 1.0))
        x = self._x(frame)
        self.columns_ = [c for c in x.columns if x[c].notna().any()]
        self.model_ = _xgb(self.seed).fit(x[self.columns_].to_numpy(dtype=float), y)
        return self

    def predict(self, frame: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
        patience, _, _ = _row_ints(frame)
        x = self._x(frame).reindex(columns=self.columns_)
        return _frame(np.exp(self.model_.predict(x.to_numpy(dtype=float))) + patience - 1)


# ----------------------------------------------------------------------------- parametric curve fits
def _exp_curve(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return c + a * np.exp(-b * t)


def _pow_curve(t: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return c + a * np.power(t, -b)


CURVES = {"exp": _exp_curve, "pow": _pow_curve}


RATE_GRID = np.geomspace(1e-3, 5.0, 80)


def fit_curve(prefix: Sequence[float], kind: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Least-squares fit of c + a exp(-b t) or c + a t^(-b) to a prefix; (params, covariance) or None.

    For each rate b on a log grid, (a, c) has a closed-form linear least-squares solution; the best b
    wins (thousands of fits per second, unlike an iterative solver). c is kept >= 0. The covariance is
    the usual s^2 (J^T J)^-1 at the optimum (nan when k <= 3 leaves no residual degrees of freedom).
    """
    y = np.asarray(prefix, dtype=float)
    k = len(y)
    if k < 3:
        return None
    t = np.arange(1, k + 1, dtype=float)
    basis = np.exp(-np.outer(RATE_GRID, t)) if kind == "exp" else np.power(t[None, :], -RATE_GRID[:, None])
    bm, ym = basis.mean(1, keepdims=True), y.mean()
    var = ((basis - bm) ** 2).sum(1)
    a = np.where(var > 1e-15, ((basis - bm) * (y - ym)).sum(1) / np.maximum(var, 1e-15), 0.0)
    c = ym - a * bm[:, 0]
    neg = c < 0  # asymptote below zero: refit with c = 0
    a0 = (basis @ y) / np.maximum((basis**2).sum(1), 1e-15)
    a, c = np.where(neg, a0, a), np.where(neg, 0.0, c)
    sse = ((c[:, None] + a[:, None] * basis - y) ** 2).sum(1)
    j = int(np.argmin(sse))
    params = np.array([a[j], RATE_GRID[j], c[j]])
    if not np.all(np.isfinite(params)):
        return None
    g = basis[j]
    d_rate = -t * g if kind == "exp" else -np.log(t) * g
    jac = np.stack([g, params[0] * d_rate, np.ones(k)], axis=1)
    if k > 3:
        with np.errstate(all="ignore"):
            cov = sse[j] / (k - 3) * np.linalg.pinv(jac.T @ jac)
    else:
        cov = np.full((3, 3), np.nan)
    return params, cov


@dataclass
class CurveFit:
    """Extrapolate the first k validation losses with a parametric curve; stop it with early stopping.

    kind: "exp", "pow" or "best" (the lower residual of the two). With noise=True the extrapolated
    curve gets the prefix's own epoch-to-epoch noise (fit residual sd) added, so early stopping can
    fire on a plateau as it does in real runs; the prediction is the median stopping epoch over
    `samples` simulated continuations with parameters drawn from N(params, covariance), and the
    interval their 10%/90% quantiles.
    """

    kind: str = "best"
    noise: bool = True
    samples: int = 64
    seed: int = 0

    def fit(self, frame: pd.DataFrame) -> CurveFit:
        return self  # nothing to learn: the curve is fitted per row at prediction time

    def predict(self, frame: pd.DataFrame, k: int | None = None) -> pd.DataFrame:
        patience, min_delta, max_epochs = _row_ints(frame)
        rng = np.random.default_rng(self.seed)
        rows = []
        for i, prefix in enumerate(prefixes(frame)):
            p = prefix[:k] if k else prefix
            rows.append(self._one(p, int(patience[i]), float(min_delta[i]), int(max_epochs[i]), rng))
        return pd.DataFrame(rows, columns=["pred", "lo", "hi"])

    def _one(self, p: list[float], patience: int, min_delta: float, cap: int, rng: np.random.Generator):
        state = prefix_state(p, patience, min_delta)
        if state["fired"] is not None:
            return (state["fired"],) * 3
        lb = float(state["lower_bound"])
        kinds = ("exp", "pow") if self.kind == "best" else (self.kind,)
        fits = {kind: fit_curve(p, kind) for kind in kinds}
        fits = {kind: f for kind, f in fits.items() if f is not None}
        if not fits:
            return lb, lb, float(cap)
        y = np.asarray(p, dtype=float)
        t_obs = np.arange(1, len(y) + 1, dtype=float)
        sse = {kd: float(np.sum((CURVES[kd](t_obs, *f[0]) - y) ** 2)) for kd, f in fits.items()}
        kind = min(sse, key=sse.get)
        params, cov = fits[kind]
        k = len(y)
        # epoch-to-epoch noise of the validation loss: fit residuals, or second differences when k = 3
        sigma = math.sqrt(sse[kind] / (k - 3)) if k > 3 else abs(y[2] - 2 * y[1] + y[0]) / math.sqrt(6)
        t_future = np.arange(k + 1, cap + 1, dtype=float)
        if self.noise or (np.all(np.isfinite(cov)) and k > 3):
            draws = np.repeat(params[None, :], self.samples, 0)
            if np.all(np.isfinite(cov)) and k > 3:
                draws = rng.multivariate_normal(params, cov, size=self.samples, check_valid="ignore")
                draws[:, 1] = np.clip(draws[:, 1], 1e-4, 5.0)
            with np.errstate(all="ignore"):
                future = CURVES[kind](t_future[None, :], draws[:, :1], draws[:, 1:2], draws[:, 2:3])
            if self.noise:
                future = future + rng.normal(0.0, sigma, future.shape)
            curves = np.concatenate([np.repeat(y[None, :], self.samples, 0), future], axis=1)
            sims = stop_epochs(np.where(np.isfinite(curves), curves, np.inf), patience, min_delta, cap)
            pred = float(np.median(sims))
            lo, hi = np.quantile(sims, [ALPHA / 2, 1 - ALPHA / 2])
        else:
            curve = np.concatenate([y, CURVES[kind](t_future, *params)])[None, :]
            pred = lo = hi = float(stop_epochs(curve, patience, min_delta, cap)[0])
        return max(pred, lb), max(lo, lb), max(hi, lb)


# ----------------------------------------------------------------------------- learned prefix model
def prefix_features(
    prefix: Sequence[float], patience: int, min_delta: float, classes: float
) -> dict[str, float]:
    """Shape of a loss prefix: levels, rates, where the best epoch is, how long since it improved."""
    return dict(_prefix_features(tuple(prefix), int(patience), float(min_delta), float(classes)))


@functools.lru_cache(maxsize=200_000)
def _prefix_features(
    prefix: tuple[float, ...], patience: int, min_delta: float, classes: float
) -> dict[str, float]:
    p = np.asarray(prefix, dtype=float)
    k = len(p)
    state = prefix_state(prefix, patience, min_delta)
    eps = 1e-12
    rel = np.diff(np.log(p + eps)) if k >= 2 else np.array([0.0])
    feats = {
        "k": float(k),
        "log_k": math.log(k),
        "first_over_chance": p[0] / math.log(classes) if classes and classes > 1 else math.nan,
        "last_over_first_log": math.log((p[-1] + eps) / (p[0] + eps)),
        "min_over_first_log": math.log((p.min() + eps) / (p[0] + eps)),
        "last_rel_change": float(rel[-1]),
        "mean_rel_change_3": float(rel[-3:].mean()),
        "best_epoch": float(state["best_epoch"]),
        "since_best": float(k - state["best_epoch"]),
        "wait": float(state["wait"]),
        "wait_left": float(patience - state["wait"]),
        "log_lower_bound": math.log(state["lower_bound"]),
        "last_drop_over_delta": float(np.log10(max(p[-2] - p[-1], 0) / min_delta + 1)) if k >= 2 else 0.0,
        "increases": float(np.sum(np.diff(p) > 0)) / max(k - 1, 1),
    }
    for kind in ("exp", "pow"):
        fit = fit_curve(prefix, kind)
        feats[f"{kind}_rate"] = float(fit[0][1]) if fit else math.nan
        feats[f"{kind}_gap_log"] = (
            math.log((p[-1] - fit[0][2] + eps) / (p[0] + eps)) if fit and p[-1] > fit[0][2] else math.nan
        )
    return feats


class PrefixModel:
    """XGBoost over curve-prefix features and the zero-shot prediction (+ configuration if asked).

    Target: log(T_conv - k), the epochs still to come. Trained on every run whose curve is longer
    than k without stopping having fired, for k in PREFIX_KS.
    """

    def __init__(self, seed: int = 0, ks: Sequence[int] = PREFIX_KS, config_features: bool = True) -> None:
        self.seed = seed
        self.ks = tuple(ks)
        self.config_features = config_features

    def _design(
        self, frame: pd.DataFrame, zs_pred: np.ndarray, k_of_row: Sequence[int]
    ) -> tuple[pd.DataFrame, np.ndarray]:
        patience, min_delta, _ = _row_ints(frame)
        classes = _col(frame, "num_classes")
        zs = zero_shot_features(frame) if self.config_features else pd.DataFrame(index=frame.index)
        rows, usable = [], []
        for i, prefix in enumerate(prefixes(frame)):
            k = k_of_row[i]
            p = prefix[:k]
            if len(p) < 2 or len(p) < k:
                usable.append(False)
                rows.append({})
                continue
            usable.append(True)
            f = prefix_features(p, int(patience[i]), float(min_delta[i]), float(classes[i]))
            f["log_zero_shot"] = math.log(zs_pred[i])
            f["log_zero_shot_left"] = math.log(max(zs_pred[i] - len(p), 1.0))
            rows.append(f)
        feats = pd.DataFrame(rows, index=frame.index)
        if not self.config_features and len(feats.columns):
            feats["patience"] = _col(frame, "patience")
        return pd.concat([zs, feats], axis=1), np.asarray(usable)

    def fit(self, frame: pd.DataFrame, zs_pred: np.ndarray) -> PrefixModel:
        """`zs_pred`: out-of-fold zero-shot predictions for the training rows."""
        y = _target(frame)
        patience, min_delta, _ = _row_ints(frame)
        pref = prefixes(frame)
        xs, ys = [], []
        for k in self.ks:
            keep = [
                i
                for i, p in enumerate(pref)
                if len(p) >= k and y[i] > k and _open(p[:k], patience[i], min_delta[i])
            ]
            if not keep:
                continue
            sub = frame.iloc[keep]
            x, ok = self._design(sub, zs_pred[keep], [k] * len(keep))
            xs.append(x[ok])
            ys.append(np.log(y[keep][ok] - k))
        if not xs:
            raise ChronosError("No training rows have a validation-loss prefix to learn from")
        x = pd.concat(xs)
        self.columns_ = [c for c in x.columns if x[c].notna().any()]
        self.model_ = _xgb(self.seed, 300).fit(x[self.columns_].to_numpy(dtype=float), np.concatenate(ys))
        return self

    def predict_k(self, frame: pd.DataFrame, zs_pred: np.ndarray, k_of_row: Sequence[int]) -> np.ndarray:
        """Predicted T_conv for rows with at least 2 known epochs (nan elsewhere); lower bound applied."""
        x, ok = self._design(frame, zs_pred, k_of_row)
        out = np.full(len(frame), np.nan)
        if ok.any():
            kk = np.asarray(k_of_row, dtype=float)[ok]
            out[ok] = kk + np.exp(
                self.model_.predict(x[ok].reindex(columns=self.columns_).to_numpy(dtype=float))
            )
        return out


# ----------------------------------------------------------------------------- the predictor
def _quantiles(residuals: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """Split-conformal bounds on log residuals with the finite-sample correction (two-sided)."""
    r = np.sort(residuals[np.isfinite(residuals)])
    n = len(r)
    if n < 5:
        return -math.log(2.0), math.log(2.0)
    lo_rank = max(int(math.floor((n + 1) * alpha / 2)) - 1, 0)
    hi_rank = min(int(math.ceil((n + 1) * (1 - alpha / 2))) - 1, n - 1)
    return float(r[lo_rank]), float(r[hi_rank])


def _inner_splits(frame: pd.DataFrame, groups: np.ndarray | None, folds: int, seed: int):
    g = np.asarray(groups) if groups is not None else frame["config"].astype(str).to_numpy()
    n_groups = len(np.unique(g))
    splitter = GroupKFold(n_splits=min(folds, n_groups), shuffle=True, random_state=seed)
    return list(splitter.split(frame, groups=g))


class ConvergencePredictor:
    """Zero-shot meta-regressor + learned prefix model + split-conformal 80% intervals (log space).

    Residuals for the intervals, and the per-k blend weight between the prefix model and zero-shot,
    come from inner cross-validation grouped by `groups` (pass the outer split's grouping, e.g. model
    names, so calibration mimics the shift the predictor will face).
    """

    def __init__(
        self, seed: int = 0, alpha: float = ALPHA, inner_folds: int = 5, ks: Sequence[int] = PREFIX_KS,
        extra_probes: bool = True, guard: bool = True, prefix_config_features: bool = False,
    ) -> None:  # fmt: skip
        self.seed = seed
        self.alpha = alpha
        self.inner_folds = inner_folds
        self.ks = tuple(ks)
        self.extra_probes = extra_probes
        self.guard = guard
        self.prefix_config_features = prefix_config_features

    def fit(self, frame: pd.DataFrame, groups: Sequence[object] | None = None) -> ConvergencePredictor:
        frame = frame.reset_index(drop=True)
        y = _target(frame)
        splits = _inner_splits(
            frame, None if groups is None else np.asarray(groups), self.inner_folds, self.seed
        )
        zs_oof = np.full(len(frame), np.nan)
        for tr, te in splits:
            model = MetaRegressor(self.seed, self.extra_probes).fit(frame.iloc[tr])
            zs_oof[te] = model.predict(frame.iloc[te])["pred"].to_numpy()
        self.zero_shot_ = MetaRegressor(self.seed, self.extra_probes).fit(frame)
        self.zs_quantiles_ = _quantiles(np.log(y) - np.log(zs_oof), self.alpha)

        pref = prefixes(frame)
        self.has_prefixes_ = any(len(p) >= 2 for p in pref)
        self.prefix_quantiles_: dict[int, tuple[float, float]] = {}
        self.prefix_weight_: dict[int, float] = {}
        if not self.has_prefixes_:
            return self
        patience, min_delta, _ = _row_ints(frame)
        pre_oof = {k: np.full(len(frame), np.nan) for k in self.ks}
        for tr, te in splits:
            sub = frame.iloc[tr]
            try:
                model = PrefixModel(self.seed, self.ks, self.prefix_config_features).fit(sub, zs_oof[tr])
            except ChronosError:
                continue
            for k in self.ks:
                pre_oof[k][te] = model.predict_k(frame.iloc[te], zs_oof[te], [k] * len(te))
        self.prefix_ = PrefixModel(self.seed, self.ks, self.prefix_config_features).fit(frame, zs_oof)
        for k in self.ks:
            open_rows = np.array(
                [len(p) >= k and stop_epoch(p[:k], int(patience[i]), float(min_delta[i])) is None
                 for i, p in enumerate(pref)]
            )  # fmt: skip
            ok = open_rows & np.isfinite(pre_oof[k])
            lower = np.array([prefix_state(p[:k], int(patience[i]), float(min_delta[i]))["lower_bound"]
                              if open_rows[i] else 1 for i, p in enumerate(pref)])  # fmt: skip
            zs_clipped = np.maximum(zs_oof, lower)
            # guard: blend log-predictions, weight on the prefix model chosen on grouped OOF rows
            weights = np.linspace(0.0, 1.0, 11) if self.guard else np.array([1.0])
            errors = [
                np.abs(w * np.log(pre_oof[k][ok]) + (1 - w) * np.log(zs_clipped[ok]) - np.log(y[ok])).mean()
                if ok.any() else (0.0 if w == 0 else np.inf)
                for w in weights
            ]  # fmt: skip
            w = float(weights[int(np.argmin(errors))])
            self.prefix_weight_[k] = w
            chosen = np.exp(w * np.log(pre_oof[k]) + (1 - w) * np.log(zs_clipped))
            self.prefix_quantiles_[k] = _quantiles(np.log(y[ok]) - np.log(chosen[ok]), self.alpha)
        return self

    def _nearest_k(self, k: int) -> int:
        known = [kk for kk in self.ks if kk <= k]
        return max(known) if known else min(self.ks)

    def predict(self, frame: pd.DataFrame, k: int | None = 0) -> pd.DataFrame:
        """k=0: zero-shot; k>0: use the first k losses of each row's prefix; None: each row's whole prefix."""
        frame = frame.reset_index(drop=True)
        zs = self.zero_shot_.predict(frame)["pred"].to_numpy()
        q_lo, q_hi = self.zs_quantiles_
        pred, lo, hi = zs.copy(), zs * math.exp(q_lo), zs * math.exp(q_hi)
        if k == 0:
            return _frame(pred, lo, hi)
        patience, min_delta, _ = _row_ints(frame)
        pref = prefixes(frame)
        k_rows = [len(p) if k is None else min(k, len(p)) for p in pref]
        for i, p in enumerate(pref):
            kk = k_rows[i]
            if kk < 1:
                continue
            state = prefix_state(p[:kk], int(patience[i]), float(min_delta[i]))
            if state["fired"] is not None:
                pred[i] = lo[i] = hi[i] = state["fired"]
                continue
            lb = state["lower_bound"]
            pred[i], lo[i], hi[i] = max(pred[i], lb), max(lo[i], lb), max(hi[i], lb)
        if not self.has_prefixes_:
            return _frame(pred, lo, hi)
        pre = self.prefix_.predict_k(frame, zs, k_rows)
        for i, p in enumerate(pref):
            kk = k_rows[i]
            if kk < 2 or not np.isfinite(pre[i]):
                continue
            state = prefix_state(p[:kk], int(patience[i]), float(min_delta[i]))
            if state["fired"] is not None:
                continue
            kq = self._nearest_k(kk)
            w = self.prefix_weight_.get(kq, 0.0)
            base = math.exp(w * math.log(pre[i]) + (1 - w) * math.log(pred[i]))
            q_lo, q_hi = self.prefix_quantiles_.get(kq, self.zs_quantiles_)
            lb = state["lower_bound"]
            pred[i] = max(base, lb)
            lo[i], hi[i] = max(base * math.exp(q_lo), lb), max(base * math.exp(q_hi), lb)
        return _frame(pred, lo, hi)


# ----------------------------------------------------------------------------- the cached default
MODEL_VERSION = "2"


def _cache_path(fingerprint: str) -> Path:
    from chronos_core.data import registry

    return registry.cache_dir().parent / "models" / f"convergence-v{MODEL_VERSION}-{fingerprint}.pkl"


def _training_fingerprint(paths: Sequence[Path]) -> str:
    digest = hashlib.sha256(MODEL_VERSION.encode())
    for path in paths:
        digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()[:16]


def default_predictor(refit: bool = False) -> ConvergencePredictor:
    """The ConvergencePredictor trained on all data the project has (public CAPE runs + ours), cached.

    The cache key hashes the training files, so new runs or a new mirror retrain automatically.
    """
    from chronos_core.convergence import data
    from chronos_core.data import registry
    from chronos_core.pickle_cache import load_or_build

    paths = [registry.path("cape-dataset"), data.OURS_PATH]
    cache = _cache_path(_training_fingerprint(paths))
    if refit:
        cache.unlink(missing_ok=True)

    def fit() -> ConvergencePredictor:
        table = data.combined_table()
        return ConvergencePredictor().fit(table, groups=table["model"].astype(str).to_numpy())

    return load_or_build(cache, fit)
