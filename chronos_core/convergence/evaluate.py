"""Evaluation of convergence models on grouped splits: 5-fold CV, leave-one-dataset-out, leave-one-model-out.

Splits are grouped: CV folds group rows by configuration (seeds/duplicates of one configuration never
straddle train and test); LODO holds out each dataset, LOMO each model. Metrics are computed on the
pooled held-out predictions. With a prefix of k epochs, rows where early stopping already fired
within the prefix are answered exactly by every prefix-aware model; metrics are therefore reported
on the rows still open at k (T_conv > k and not yet stopped), with the zero-shot prediction on the
same rows beside them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut
from xgboost import XGBRegressor

from chronos_core.convergence import models as cm
from chronos_core.errors import unknown_choice

log = logging.getLogger(__name__)

SCHEMES = ("cv", "lodo", "lomo")
SCHEME_NAMES = {
    "cv": "5-fold CV (grouped by config)",
    "lodo": "leave-one-dataset-out",
    "lomo": "leave-one-model-out",
}
SPLIT_KIND = {"cv": "unseen config", "lodo": "unseen dataset", "lomo": "unseen model"}
CAPE_REPORTED_MAE = {"cv": 4.63, "lodo": 6.85, "lomo": 7.27}  # CAPE paper, epochs; source: the issue
KS = (3, 5, 10)


def probe_batch_regressor(seed: int = 0) -> XGBRegressor:
    """The gradient-boosted model of log T_star on probe-batch features (one setting everywhere)."""
    return XGBRegressor(
        n_estimators=400,
        max_depth=5,
        learning_rate=0.05,
        subsample=0.8,
        n_jobs=1,
        random_state=seed,
        verbosity=0,
    )


def outer_splits(
    frame: pd.DataFrame, scheme: str, seed: int = 0, folds: int = 5
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test row positions for `scheme` (cv, lodo, lomo)."""
    if scheme not in SCHEMES:
        raise unknown_choice("split scheme", scheme, SCHEMES)
    if scheme == "cv":
        groups = frame["config"].astype(str).to_numpy()
        return list(GroupKFold(n_splits=folds, shuffle=True, random_state=seed).split(frame, groups=groups))
    column = "dataset" if scheme == "lodo" else "model"
    return list(LeaveOneGroupOut().split(frame, groups=frame[column].astype(str).to_numpy()))


def group_column(scheme: str) -> str:
    return {"cv": "config", "lodo": "dataset", "lomo": "model"}[scheme]


def metrics(
    y: np.ndarray, pred: np.ndarray, lo: np.ndarray | None = None, hi: np.ndarray | None = None
) -> dict:
    """MAE (epochs), MAPE (%), Spearman rho, 80%-interval coverage and median width (hi/lo)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    ok = np.isfinite(y) & np.isfinite(pred)
    y, pred = y[ok], pred[ok]
    out = {"n": int(ok.sum())}
    if not len(y):
        return out | {"MAE": math.nan, "MAPE": math.nan, "Spearman": math.nan, "coverage80": math.nan}
    out["MAE"] = float(np.mean(np.abs(pred - y)))
    out["MAPE"] = float(np.mean(np.abs(pred - y) / y) * 100)
    out["Spearman"] = float(spearmanr(y, pred).statistic) if len(y) > 2 and np.ptp(pred) > 0 else math.nan
    if lo is not None and hi is not None:
        lo, hi = np.asarray(lo, float)[ok], np.asarray(hi, float)[ok]
        degenerate = lo == hi
        if degenerate.all():  # point predictions: no interval to cover with
            return out | {"coverage80": math.nan, "width_ratio": math.nan}
        out["coverage80"] = float(np.mean((y >= lo - 1e-9) & (y <= hi + 1e-9)))
        width = hi[~degenerate] / np.maximum(lo[~degenerate], 1e-9)
        out["width_ratio"] = float(np.median(width)) if len(width) else 1.0
    return out


ModelFactory = Callable[[], object]


def default_models(seed: int = 0) -> dict[str, ModelFactory]:
    """Models compared everywhere: chronos, CAPE's forest, #params scaling, constant median, curve fits."""
    return {
        "chronos": lambda: cm.ConvergencePredictor(seed=seed),
        "chronos_prefix_with_config": lambda: cm.ConvergencePredictor(seed=seed, prefix_config_features=True),
        "xgb_zero_shot_no_extra": lambda: cm.MetaRegressor(seed=seed, extra_probes=False),
        "cape_forest": lambda: cm.CapeForest(seed=seed),
        "param_scaling": cm.ParamScaling,
        "constant_median": cm.ConstantMedian,
        "curve_fit": lambda: cm.CurveFit(seed=seed),
        "curve_fit_smooth": lambda: cm.CurveFit(noise=False, seed=seed),
    }


PREFIX_AWARE = ("chronos", "curve_fit", "curve_fit_smooth")


def _open_at(frame: pd.DataFrame, k: int) -> np.ndarray:
    patience, min_delta, _ = cm._row_ints(frame)
    y = frame["T_conv"].to_numpy(dtype=float)
    return np.array(
        [
            len(p) >= k and y[i] > k and cm._open(p[:k], patience[i], min_delta[i])
            for i, p in enumerate(cm.prefixes(frame))
        ]
    )


def cross_predict(
    frame: pd.DataFrame,
    scheme: str,
    factories: dict[str, ModelFactory] | None = None,
    ks: Sequence[int] = KS,
    seed: int = 0,
    extra_train: pd.DataFrame | None = None,
    extra_name: str = "plus_ours",
) -> pd.DataFrame:
    """Held-out predictions of every model for every split and k (k=0: zero-shot). Long format.

    With `extra_train`, the `chronos` (and `curve_prior`) model is also fitted on each fold's training
    rows plus those rows (always training data, never tested) and reported as `<model>_<extra_name>`.
    """
    frame = frame.reset_index(drop=True)
    factories = dict(factories or default_models(seed))
    if extra_train is not None:
        for base in ("chronos", "curve_prior"):
            if base in factories:
                factories[f"{base}_{extra_name}"] = factories[base]
    has_prefix = any(len(p) >= 2 for p in cm.prefixes(frame))
    records = []
    for fold, (tr, te) in enumerate(outer_splits(frame, scheme, seed)):
        train, test = frame.iloc[tr], frame.iloc[te]
        for name, make in factories.items():
            model = make()
            if name.startswith("curve_fit") and not has_prefix:
                continue
            fit_rows = train
            if extra_train is not None and name.endswith(f"_{extra_name}"):
                fit_rows = pd.concat([train, extra_train], ignore_index=True)
            if isinstance(model, cm.ConvergencePredictor) or getattr(model, "grouped_fit", False):
                model.fit(fit_rows, groups=fit_rows[group_column(scheme)].astype(str).to_numpy())
            else:
                model.fit(fit_rows)
            prefix_aware = name in PREFIX_AWARE or name.startswith(("chronos", "curve_prior"))
            k_values = ([0] if not name.startswith("curve_fit") else []) + (
                list(ks) if prefix_aware and has_prefix else []
            )
            for k in k_values:
                out = model.predict(test, k)
                records.append(
                    pd.DataFrame(
                        {
                            "row": te,
                            "fold": fold,
                            "model": name,
                            "k": k,
                            "y": test["T_conv"].to_numpy(dtype=float),
                            "pred": out["pred"].to_numpy(),
                            "lo": out["lo"].to_numpy(),
                            "hi": out["hi"].to_numpy(),
                        }
                    )
                )
    preds = pd.concat(records, ignore_index=True)
    preds["scheme"] = scheme
    for k in ks:
        open_k = _open_at(frame, k)
        preds[f"open_{k}"] = open_k[preds["row"].to_numpy()]
    return preds


def summarize(preds: pd.DataFrame, ks: Sequence[int] = KS) -> pd.DataFrame:
    """Metrics per (scheme, model, k) on all rows (zero-shot) and on the rows open at each k."""
    rows = []
    for (scheme, model, k), grp in preds.groupby(["scheme", "model", "k"], sort=False):
        rows.append(
            {"scheme": scheme, "model": model, "k": k, "rows": "all"}
            | metrics(grp.y, grp.pred, grp.lo, grp.hi)
        )
    zero = preds[preds.k == 0]
    for kk in ks:
        col = f"open_{kk}"
        if col not in preds or not preds[col].any():
            continue
        for (scheme, model), grp in zero[zero[col]].groupby(["scheme", "model"], sort=False):
            rows.append(
                {"scheme": scheme, "model": model, "k": 0, "rows": f"open@{kk}"}
                | metrics(grp.y, grp.pred, grp.lo, grp.hi)
            )
        sub = preds[(preds.k == kk) & preds[col]]
        for (scheme, model), grp in sub.groupby(["scheme", "model"], sort=False):
            extra = {}
            ref = zero[(zero.scheme == scheme) & (zero.model == model) & zero[col]]
            if len(ref) == len(grp):  # same model's zero-shot on the same rows: paired difference
                a = np.abs(grp.sort_values(["row", "fold"]).eval("pred - y").to_numpy())
                b = np.abs(ref.sort_values(["row", "fold"]).eval("pred - y").to_numpy())
                extra["dMAE_vs_zero_shot_lo90"], extra["dMAE_vs_zero_shot_hi90"] = _paired_ci(a, b)
            rows.append(
                {"scheme": scheme, "model": model, "k": kk, "rows": f"open@{kk}"}
                | metrics(grp.y, grp.pred, grp.lo, grp.hi)
                | extra
            )
    out = pd.DataFrame(rows)
    out["split"] = out["scheme"].map(SPLIT_KIND).fillna("unseen source")
    return out


def evaluate(
    frame: pd.DataFrame, table: str, schemes: Sequence[str] = SCHEMES, seed: int = 0, **kw
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(predictions, metrics) for one table over the given schemes."""
    preds = pd.concat([cross_predict(frame, s, seed=seed, **kw) for s in schemes], ignore_index=True)
    preds["table"] = table
    summary = summarize(preds)
    summary.insert(0, "table", table)
    return preds, summary


def with_cape_reported(summary: pd.DataFrame) -> pd.DataFrame:
    """Add CAPE's reported zero-shot MAE per scheme beside the measured rows."""
    out = summary.copy()
    out["cape_reported_MAE"] = out["scheme"].map(CAPE_REPORTED_MAE).where(out["k"] == 0)
    return out


# ----------------------------------------------------------------------------- CAPE probe-batch tables
PROBE_BATCH_FEATURES = ("logP", "logB", "logG2", "logTau", "logLR", "logN", "epsilon", "logInitLoss")
CAPE_FEATURES = ("logP", "logG2", "logTau", "logB", "logLR", "logN")


def probe_batch_splits(
    frame: pd.DataFrame, scheme: str, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """cv: 5-fold grouped by config; lodo: each dataset out; lomo: 10 folds of held-out models."""
    if scheme == "cv":
        return list(GroupKFold(5, shuffle=True, random_state=seed).split(frame, groups=frame["config"]))
    if scheme == "lodo":
        return list(LeaveOneGroupOut().split(frame, groups=frame["dataset"]))
    if scheme == "lomo":
        return list(GroupKFold(10, shuffle=True, random_state=seed).split(frame, groups=frame["model"]))
    raise unknown_choice("split scheme", scheme, SCHEMES)


def evaluate_probe_batch(
    frame: pd.DataFrame, schemes: Sequence[str] = SCHEMES, seed: int = 0
) -> pd.DataFrame:
    """Predict CAPE's probe-batch T_star: XGBoost (log space) vs CAPE's forest, #params scaling, median."""
    from sklearn.ensemble import RandomForestRegressor

    frame = frame.reset_index(drop=True)
    y = frame["T_star"].to_numpy(dtype=float)
    rows = []
    for scheme in schemes:
        preds: dict[str, np.ndarray] = {
            m: np.full(len(frame), np.nan)
            for m in ("xgb_log", "cape_forest", "param_scaling", "constant_median")
        }
        for tr, te in probe_batch_splits(frame, scheme, seed):
            xtr, xte = frame.iloc[tr], frame.iloc[te]
            xgb = probe_batch_regressor(seed)
            xgb.fit(xtr[list(PROBE_BATCH_FEATURES)], np.log(y[tr]))
            preds["xgb_log"][te] = np.exp(xgb.predict(xte[list(PROBE_BATCH_FEATURES)]))
            rf = RandomForestRegressor(100, min_samples_leaf=2, random_state=seed, n_jobs=1)
            rf.fit(xtr[list(CAPE_FEATURES)], y[tr])
            preds["cape_forest"][te] = rf.predict(xte[list(CAPE_FEATURES)])
            coef = np.polyfit(xtr["logP"], np.log(y[tr]), 1)
            preds["param_scaling"][te] = np.exp(np.polyval(coef, xte["logP"]))
            preds["constant_median"][te] = np.median(y[tr])
        for name, p in preds.items():
            rows.append(
                {"table": "cape-probe-batch", "scheme": scheme, "model": name, "k": 0, "rows": "all"}
                | metrics(y, p)
            )
    out = pd.DataFrame(rows)
    out["split"] = out["scheme"].map(SPLIT_KIND)
    return out


# ------------------------------------------------------------------- transfer, ablation, probe-batch
def transfer(
    train: pd.DataFrame, test: pd.DataFrame, name: str, ks: Sequence[int] = KS, seed: int = 0
) -> pd.DataFrame:
    """Train on one table, predict another (every test model and dataset unseen): long predictions."""
    test = test.reset_index(drop=True)
    records = []
    has_prefix = any(len(p) >= 2 for p in cm.prefixes(test))
    factories = {
        "chronos": lambda: cm.ConvergencePredictor(seed=seed),
        "cape_forest": lambda: cm.CapeForest(seed=seed),
        "param_scaling": cm.ParamScaling,
        "constant_median": cm.ConstantMedian,
    }
    for model_name, make in factories.items():
        model = make()
        if isinstance(model, cm.ConvergencePredictor):
            model.fit(train, groups=train["model"].astype(str).to_numpy())
        else:
            model.fit(train)
        for k in [0] + (list(ks) if model_name == "chronos" and has_prefix else []):
            out = model.predict(test, k)
            records.append(
                pd.DataFrame(
                    {"row": np.arange(len(test)), "fold": 0, "model": model_name, "k": k,
                     "y": test["T_conv"].to_numpy(dtype=float), "pred": out["pred"].to_numpy(),
                     "lo": out["lo"].to_numpy(), "hi": out["hi"].to_numpy()}
                )
            )  # fmt: skip
    preds = pd.concat(records, ignore_index=True)
    preds["scheme"] = name
    for k in ks:
        preds[f"open_{k}"] = _open_at(test, k)[preds["row"].to_numpy()]
    return preds


def _paired_ci(
    err_a: np.ndarray, err_b: np.ndarray, seed: int = 0, n_boot: int = 2000
) -> tuple[float, float]:
    """90% bootstrap interval of mean(err_a - err_b) over rows."""
    rng = np.random.default_rng(seed)
    diff = err_a - err_b
    means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(1)
    return float(np.quantile(means, 0.05)), float(np.quantile(means, 0.95))


def probe_ablation(
    frame: pd.DataFrame, schemes: Sequence[str] = ("lomo", "lodo"), seed: int = 0
) -> pd.DataFrame:
    """Zero-shot XGBoost with growing feature sets: does each probe earn its place on unseen models/data?

    Reference: configuration features only. Then each probe group added alone (CHRONOS's gradient
    norm and initial loss; our NTK trace; noise scale and gradient coherence; Hessian top eigenvalue;
    CAPE's probe-batch steps), all init-time probes, and all plus probe-batch. Groups missing from the
    table are skipped. MAE differences against the reference come with a paired bootstrap 90%
    interval over held-out rows (negative = the features help).
    """
    frame = frame.reset_index(drop=True)
    available = cm.zero_shot_features(frame, probe_batch=True)
    groups = {"CHRONOS probes": cm.CHRONOS_PROBE_FEATURES} | {k: v for k, v in cm.PROBE_GROUPS.items()}
    groups = {k: v for k, v in groups.items() if available[v].notna().any().all()}
    init_time = [c for k, v in groups.items() if k != "probe_batch" for c in v]
    sets = {"config only": cm.CONFIG_FEATURES}
    sets |= {f"+ {k}": cm.CONFIG_FEATURES + v for k, v in groups.items()}
    if len(groups) > 1:
        sets["+ all init-time probes"] = cm.CONFIG_FEATURES + init_time
    if "probe_batch" in groups:
        sets["+ all + probe_batch"] = cm.CONFIG_FEATURES + init_time + groups["probe_batch"]
    y = frame["T_conv"].to_numpy(dtype=float)
    rows = []
    for scheme in schemes:
        splits = outer_splits(frame, scheme, seed)
        preds = {}
        for name, cols in sets.items():
            p = np.full(len(frame), np.nan)
            for tr, te in splits:
                model = cm.MetaRegressor(seed=seed, features=cols).fit(frame.iloc[tr])
                p[te] = model.predict(frame.iloc[te])["pred"].to_numpy()
            preds[name] = p
        ref = np.abs(preds["config only"] - y)
        for name, p in preds.items():
            lo, hi = _paired_ci(np.abs(p - y), ref, seed)
            rows.append({"scheme": scheme, "split": SPLIT_KIND[scheme], "features": name} | metrics(y, p)
                        | {"dMAE_vs_config_lo90": lo, "dMAE_vs_config_hi90": hi})  # fmt: skip
    return pd.DataFrame(rows)


def probe_batch_relation(ours: pd.DataFrame) -> pd.DataFrame:
    """How CAPE's probe-batch T_star (steps on one batch) relates to real epochs to convergence (our runs)."""
    rows = []
    for subset, part in (
        ("AdamW runs (CAPE's definition)", ours[ours.optimizer == "AdamW"]),
        ("all runs", ours),
    ):
        for eps in (10, 15, 20):
            col = f"probe_batch_steps_eps{eps}"
            ok = part[col].notna()
            for target in ("T_conv", "T_best", "T_red90"):
                both = ok & part[target].notna()
                rho = (
                    spearmanr(part.loc[both, col], part.loc[both, target]).statistic
                    if both.sum() > 2
                    else math.nan
                )
                rows.append({"runs": subset, "epsilon": eps / 100, "target": target, "n": int(both.sum()),
                             "censored_at_cap": int((~ok).sum()), "Spearman": float(rho)})  # fmt: skip
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the report
HEADLINE_MODELS = ("chronos", "chronos_plus_ours", "cape_forest", "param_scaling", "constant_median")


def _fmt(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


PREFIX_TABLE_MODELS = (
    "chronos",
    "chronos_prefix_with_config",
    "chronos_plus_ours",
    "chronos_plus_public",
    "curve_fit",
    "constant_median",
)


def markdown_summary(metrics_table: pd.DataFrame) -> str:
    """Headline tables: zero-shot per split with CAPE's reported MAE, then MAE vs k on rows still open."""
    lines = ["# Epochs to convergence: held-out results", ""]
    for table, part in metrics_table.groupby("table", sort=False):
        lines += [f"## {table}", "", "Zero-shot (no epochs seen), all rows. MAE in epochs.", ""]
        lines += [
            "| split | model | n | MAE | MAPE % | Spearman | 80% coverage | CAPE reported MAE |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        zero = part[(part.k == 0) & (part.rows == "all")]
        for _, r in zero.iterrows():
            cape = _fmt(r.get("cape_reported_MAE", math.nan))
            cov = _fmt(r.get("coverage80", math.nan))
            lines.append(
                f"| {r.scheme} ({r.split}) | {r.model} | {r.n} | {_fmt(r.MAE)} | {_fmt(r.MAPE, 1)} | "
                f"{_fmt(r.Spearman)} | {cov} | {cape} |"
            )
        prefix = part[part.rows.str.startswith("open@")]
        if len(prefix):
            lines += [
                "",
                "With the first k epochs known, on the rows where early stopping has not fired by epoch k "
                "(zero-shot on the same rows as reference).",
                "",
            ]
            lines += [
                "| split | model | k | n | MAE | MAPE % | Spearman | 80% coverage |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |",
            ]
            for _, r in prefix.sort_values(["scheme", "rows", "model", "k"]).iterrows():
                if r.model not in PREFIX_TABLE_MODELS:
                    continue
                cov = _fmt(r.get("coverage80", math.nan))
                lines.append(
                    f"| {r.scheme} | {r.model} | {r.k} ({r.rows}) | {r.n} | {_fmt(r.MAE)} | "
                    f"{_fmt(r.MAPE, 1)} | {_fmt(r.Spearman)} | {cov} |"
                )
        lines.append("")
    return "\n".join(lines)


def seed_noise(ours: pd.DataFrame) -> dict[str, float]:
    """The noise floor of T_conv: how well the other seeds of the same configuration predict a run."""
    errors, sds = [], []
    for _, grp in ours.groupby("config"):
        t = grp["T_conv"].to_numpy(dtype=float)
        if len(t) < 2:
            continue
        sds.append(float(t.std(ddof=1)))
        for i in range(len(t)):
            errors.append(abs(t[i] - np.delete(t, i).mean()))
    errors_arr = np.asarray(errors)
    y = ours["T_conv"].to_numpy(dtype=float)
    return {
        "configs_with_repeats": len(sds),
        "median_within_config_sd": float(np.median(sds)) if sds else math.nan,
        "leave_one_seed_out_MAE": float(errors_arr.mean()) if len(errors_arr) else math.nan,
        "leave_one_seed_out_MAPE": float(np.mean(errors_arr / np.median(y)) * 100)
        if len(errors_arr)
        else math.nan,
    }
