"""Convergence models, evaluation splits and metrics, and the predict-epochs command (synthetic data)."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pandas as pd
import pytest

from chronos_core.convergence import cli as conv_cli
from chronos_core.convergence import evaluate as ev
from chronos_core.convergence import models as cm
from chronos_core.convergence.data import parse_prefix
from chronos_core.errors import ChronosError

MODELS = ("m_a", "m_b", "m_c", "m_d", "m_e", "m_f")


def synthetic_runs(n_per_model: int = 24, seed: int = 0) -> pd.DataFrame:
    """Runs whose loss curves decay at a rate set by lr and the gradient-norm probe, then overfit."""
    rng = np.random.default_rng(seed)
    rows = []
    for m, model in enumerate(MODELS):
        for i in range(n_per_model):
            lr = float(10 ** rng.uniform(-4, -2))
            grad = float(rng.uniform(-1, 1))
            rate = 30 * lr * 10**grad + 0.02
            overfit = 0.002 + 0.001 * m
            t = np.arange(1, 81)
            curve = 0.5 + 2.0 * np.exp(-rate * t) + overfit * t + rng.normal(0, 0.003, len(t))
            stop = cm.stop_epoch(curve, 3, 1e-3) or 80
            rows.append(
                {
                    "family": ["MLP", "CNN", "RNN"][m % 3],
                    "model": model,
                    "dataset": f"d{i % 3}",
                    "optimizer": "AdamW" if i % 2 else "SGD",
                    "learning_rate": lr,
                    "batch_size": 32,
                    "param_count": 10 ** (4 + m / 2),
                    "dataset_size": 1000,
                    "num_classes": 10,
                    "gradient_norm_log10": grad,
                    "initial_loss_log10": math.log10(2.3),
                    "patience": 3,
                    "min_delta": 1e-3,
                    "max_epochs": 80,
                    "val_loss_prefix": [float(v) for v in curve[:stop]],
                    "T_conv": float(stop),
                    "config": f"{model}|{i}",
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return synthetic_runs()


@pytest.fixture(scope="module")
def fitted(runs) -> tuple[cm.ConvergencePredictor, pd.DataFrame, pd.DataFrame]:
    train, test = runs[runs.model != "m_f"], runs[runs.model == "m_f"]
    model = cm.ConvergencePredictor(inner_folds=3, ks=(3, 5, 10)).fit(train, groups=train["model"])
    return model, train, test


def test_fit_curve_recovers_an_exponential():
    t = np.arange(1, 13)
    params, cov = cm.fit_curve(0.4 + 1.5 * np.exp(-0.3 * t), "exp")
    assert params[0] == pytest.approx(1.5, rel=0.1)
    assert params[1] == pytest.approx(0.3, rel=0.12)
    assert params[2] == pytest.approx(0.4, abs=0.05)
    assert cov.shape == (3, 3)
    assert cm.fit_curve([1.0, 0.9], "exp") is None


def test_vectorized_early_stopping_matches_scalar():
    rng = np.random.default_rng(1)
    curves = np.cumsum(rng.normal(-0.01, 0.02, (50, 40)), axis=1) + 2
    fast = cm.stop_epochs(curves, 4, 1e-3, 40)
    slow = [cm.stop_epoch(c, 4, 1e-3) or 40 for c in curves]
    assert fast.tolist() == slow


def test_prefix_state_bounds():
    fired = cm.prefix_state([1.0, 0.9, 0.95, 0.96, 0.97], patience=3, min_delta=1e-3)
    assert fired["fired"] == 5
    open_ = cm.prefix_state([1.0, 0.9, 0.95], patience=3, min_delta=1e-3)
    assert open_["fired"] is None and open_["lower_bound"] == 5  # best at 2, + patience 3


def test_baselines(runs):
    median = cm.ConstantMedian().fit(runs).predict(runs.head(3))
    assert (median["pred"] == runs["T_conv"].median()).all()
    frame = pd.DataFrame({"param_count": [1e3, 1e4, 1e5], "T_conv": [10.0, 20.0, 40.0]})
    scaled = cm.ParamScaling().fit(frame).predict(pd.DataFrame({"param_count": [1e6]}))
    assert scaled["pred"].iloc[0] == pytest.approx(80.0, rel=1e-6)
    forest = cm.CapeForest(n_estimators=20).fit(runs).predict(runs.head(4))
    assert forest["pred"].between(runs["T_conv"].min(), runs["T_conv"].max()).all()


def test_predictor_uses_prefix_facts_and_intervals(fitted):
    model, _, test = fitted
    zero = model.predict(test, k=0)
    assert (zero["lo"] <= zero["pred"]).all() and (zero["pred"] <= zero["hi"]).all()
    full = model.predict(test, k=None)  # whole curve: stopping fired inside it
    fired = test["T_conv"] < 80
    assert np.allclose(full["pred"][fired.to_numpy()], test["T_conv"][fired])
    at5 = model.predict(test, k=5).to_numpy()
    for i, prefix in enumerate(test["val_loss_prefix"]):
        state = cm.prefix_state(prefix[:5], 3, 1e-3)
        if state["fired"] is None:
            assert at5[i, 0] >= state["lower_bound"] and at5[i, 1] >= state["lower_bound"]
    assert set(model.prefix_weight_) == {3, 5, 10}


def test_prefix_predictions_beat_zero_shot_on_an_unseen_model(fitted):
    model, _, test = fitted
    y = test["T_conv"].to_numpy()
    err0 = np.abs(model.predict(test, k=0)["pred"] - y).mean()
    err10 = np.abs(model.predict(test, k=10)["pred"] - y).mean()
    assert err10 < err0


def test_curve_fit_predicts_plateau_stop():
    t = np.arange(1, 41)
    curve = 0.5 + 2.0 * np.exp(-0.25 * t)
    stop = cm.stop_epoch(curve, 3, 1e-3)
    frame = pd.DataFrame(
        {"patience": [3], "min_delta": [1e-3], "max_epochs": [80], "val_loss_prefix": [list(curve)]}
    )
    out = cm.CurveFit(noise=False).predict(frame, k=12)
    assert out["pred"].iloc[0] == pytest.approx(stop, abs=2)


def test_metrics_by_hand():
    m = ev.metrics(
        np.array([10.0, 20.0, 40.0]),
        np.array([12.0, 18.0, 40.0]),
        np.array([9, 19, 30]),
        np.array([11, 25, 50]),
    )
    assert m["MAE"] == pytest.approx(4 / 3)
    assert m["MAPE"] == pytest.approx((20 + 10 + 0) / 3)
    assert m["Spearman"] == pytest.approx(1.0)
    assert m["coverage80"] == pytest.approx(1.0)


def test_outer_splits_are_grouped(runs):
    for tr, te in ev.outer_splits(runs, "cv"):
        assert not set(runs.config.iloc[tr]) & set(runs.config.iloc[te])
    folds = ev.outer_splits(runs, "lomo")
    assert len(folds) == len(MODELS)
    assert all(runs.model.iloc[te].nunique() == 1 for _, te in folds)
    with pytest.raises(ChronosError, match="Unknown split scheme"):
        ev.outer_splits(runs, "random")


def test_cross_predict_summary(runs):
    factories = {
        "chronos": lambda: cm.ConvergencePredictor(inner_folds=3, ks=(3, 5)),
        "constant_median": cm.ConstantMedian,
    }
    preds = ev.cross_predict(runs, "lodo", factories, ks=(3,))
    summary = ev.summarize(preds, ks=(3,))
    assert {"all", "open@3"} <= set(summary["rows"])
    assert set(preds[preds.model == "chronos"].k) == {0, 3}
    assert len(preds[(preds.model == "constant_median")]) == len(runs)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not json", "JSON list"),
        ('{"a": 1}', "JSON list"),
        ('[1, "x"]', "JSON list"),
        ("[1.0, NaN]", "finite"),
    ],
)
def test_malformed_prefixes(value, message):
    with pytest.raises(ChronosError, match=message):
        parse_prefix(value)
    assert parse_prefix("[2.0, NaN, 1.0]", strict=False) == [2.0]
    assert parse_prefix("") == [] and parse_prefix(float("nan")) == []


def _cli_rows(runs: pd.DataFrame) -> pd.DataFrame:
    rows = (
        runs.head(4)
        .drop(columns=["T_conv", "config"])
        .rename(columns={"family": "architecture", "patience": "patience_P"})
    )
    rows["val_loss_prefix"] = [json.dumps(p[:4]) for p in rows["val_loss_prefix"]]
    rows.loc[rows.index[0], "val_loss_prefix"] = ""
    return rows


def test_predict_epochs_command(tmp_path, monkeypatch, fitted, runs):
    model = fitted[0]
    monkeypatch.setattr(cm, "default_predictor", lambda refit=False: model)
    rows = _cli_rows(runs)
    rows.to_csv(tmp_path / "in.csv", index=False)
    parser = argparse.ArgumentParser()
    conv_cli.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["predict-epochs", "--input", str(tmp_path / "in.csv"), "--output", str(tmp_path / "out.csv"),
         "--model", "xgb"]
    )  # fmt: skip
    assert args.func(args) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    assert list(out.columns[: len(rows.columns)]) == list(rows.columns)
    assert (out["pred_T_conv_lo"] <= out["pred_T_conv"]).all() and (
        out["pred_T_conv"] <= out["pred_T_conv_hi"]
    ).all()
    with_prefix = model.predict(conv_cli.canonical_input(rows), k=None)
    assert np.allclose(out["pred_T_conv"], with_prefix["pred"].round(2))


def test_predict_epochs_bad_input(tmp_path, runs):
    rows = _cli_rows(runs)
    bad = rows.copy()
    bad.loc[bad.index[2], "val_loss_prefix"] = "[1.0, oops]"
    with pytest.raises(ChronosError, match="row 3: val_loss_prefix"):
        conv_cli.canonical_input(bad)
    with pytest.raises(ChronosError, match="lacks required columns"):
        conv_cli.canonical_input(rows.drop(columns=["learning_rate"]))
    negative = rows.copy()
    negative["batch_size"] = -1
    with pytest.raises(ChronosError, match="batch_size"):
        conv_cli.canonical_input(negative)
    parser = argparse.ArgumentParser()
    conv_cli.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        ["predict-epochs", "--input", str(tmp_path / "missing.csv"), "--output", "x.csv"]
    )
    with pytest.raises(ChronosError, match="does not exist"):
        args.func(args)
