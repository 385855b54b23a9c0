"""The curve prior: synthetic curves, the PFN (tiny one trained here, committed one's behaviour), the
predictor on synthetic runs, censoring, re-planning, predict-epochs and the API's observed losses."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch
from test_convergence_models import _cli_rows, synthetic_runs  # tests/ is on sys.path

from chronos_core.convergence import cli as conv_cli
from chronos_core.convergence import curve_prior as cpr
from chronos_core.convergence import models as cm
from chronos_core.convergence import pfn as pf
from chronos_core.convergence import prior as cp


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def committed() -> pf.CurvePFN:
    return pf.CurvePFN.load()


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return synthetic_runs(n_per_model=12)


@pytest.fixture(scope="module")
def predictor(runs, committed) -> cpr.CurvePriorPredictor:
    train = runs[runs.model != "m_f"]
    return cpr.CurvePriorPredictor(pfn=committed, finetune_steps=20, inner_folds=3).fit(
        train, groups=train["model"]
    )


def test_prior_curves_and_their_stopping_epochs():
    rng = np.random.default_rng(0)
    out = cp.sample_curves(200, rng, cp.PriorConfig(horizon=120), length=120)
    assert out["curves"].shape == (200, 120) and np.isfinite(out["curves"]).all()
    assert (out["curves"] > 0).all()
    for i in range(20):  # the vectorized rule agrees with the scalar one
        scalar = cm.stop_epoch(out["curves"][i], int(out["patience"][i]), float(out["min_delta"][i]))
        assert out["T_unc"][i] == (scalar or 121)
    with pytest.raises(ValueError, match="Known: pow3"):
        cp._family("linear", np.ones(3), np.ones(1), np.ones(1))


def test_encoding_reads_the_rule_state():
    curve = np.array([[2.0, 1.5, 1.4, 1.45, 1.46, np.nan]])
    x = pf.encode(
        curve, np.array([5]), np.array([5]), np.array([1e-3]), np.array([np.log(10)]), np.array([0.5])
    )
    s = 3 * pf.WINDOW
    assert x.shape == (1, pf.N_INPUTS)
    assert x[0, 2 * pf.WINDOW :][: pf.WINDOW].sum() == 5  # five observed slots
    assert x[0, s + 6] == pytest.approx(2 / 5)  # two epochs without improvement, patience 5
    empty = pf.encode(
        np.zeros((1, 0)), np.array([0]), np.array([5]), np.array([1e-4]), np.zeros(1), np.ones(1)
    )
    assert empty[0, s] == 0 and empty[0, : 3 * pf.WINDOW].sum() == 0


def test_tiny_pfn_trains_saves_and_loads(tmp_path):
    cfg = pf.TrainConfig(curves=1500, steps=25, batch=128, hidden=32, layers=2)
    cfg.prior["horizon"] = 150
    net = pf.train(cfg, verbose=False)
    path = tmp_path / "pfn.npz"
    net.save(path)
    again = pf.CurvePFN.load(path)
    x = pf.encode(
        np.full((3, 4), 1.0), np.array([0, 2, 4]), np.full(3, 5), np.full(3, 1e-4), np.zeros(3), np.ones(3)
    )
    assert np.allclose(net.probs(x), again.probs(x), atol=1e-6)
    assert np.allclose(again.probs(x).sum(1), 1.0, atol=1e-5)
    assert again.meta["train_config"]["steps"] == 25
    q = pf.quantiles_r(again.probs(x), (0.1, 0.5, 0.9))
    assert (np.diff(q, axis=1) >= 0).all() and (q >= 1).all()


def test_committed_pfn_reads_curves_and_the_zero_shot_prior(committed):
    t = np.arange(1, 11, dtype=float)
    falling = 2.0 * np.exp(-0.05 * t)  # still falling steadily
    flat = np.r_[2.0, 1.5, 1.3, 1.25, 1.24, np.full(5, 1.2395)]  # plateau, improvement below min_delta
    curves = np.stack([falling, flat])
    k, pat, md = np.array([10, 10]), np.array([5, 5]), np.array([1e-3, 1e-3])
    x = pf.encode(curves, k, pat, md, np.log([20.0, 20.0]), np.array([1.0, 1.0]))
    med = pf.quantiles_r(committed.probs(x), (0.5,))[:, 0]
    assert med[0] > 2 * med[1]  # a falling curve has far more epochs to go than a plateaued one
    # at k = 0 the zero-shot prediction is the prior: a longer prior gives a longer prediction
    x0 = pf.encode(np.zeros((2, 0)), np.zeros(2, int), pat, md, np.log([8.0, 60.0]), np.array([0.4, 0.4]))
    q0 = pf.quantiles_r(committed.probs(x0), (0.1, 0.5, 0.9))
    assert q0[1, 1] > 3 * q0[0, 1]
    assert q0[0, 0] < 8 < q0[0, 2] and q0[1, 0] < 60 < q0[1, 2]


def test_intervals_narrow_as_epochs_are_seen(committed):
    rng = np.random.default_rng(3)
    bank = cp.sample_curves(400, rng, cp.PriorConfig(horizon=200), length=200)
    widths = []
    for kk in (0, 5, 15):
        keep = bank["T_unc"] > 15
        n = int(keep.sum())
        x = pf.encode(bank["curves"][keep], np.full(n, kk), bank["patience"][keep], bank["min_delta"][keep],
                      np.full(n, np.log(30.0)), np.full(n, pf.NO_PRIOR_SIGMA))  # fmt: skip
        q = pf.quantiles_r(committed.probs(x), (0.1, 0.9))
        widths.append(float(np.median(np.log((kk + q[:, 1]) / (kk + q[:, 0])))))  # of T, not of T - k
    assert widths[0] > widths[1] > widths[2]


def test_predictor_intervals_prefix_facts_and_cap(predictor, runs):
    test = runs[runs.model == "m_f"].reset_index(drop=True)
    for k in (0, 5, None):
        out = predictor.predict(test, k=k)
        assert (out["lo"] <= out["pred"] + 1e-9).all() and (out["pred"] <= out["hi"] + 1e-9).all()
        assert (out["hi"] <= test["max_epochs"]).all()  # a run lasts min(T, max_epochs)
    full = predictor.predict(test, k=None)
    fired = (test["T_conv"] < 80).to_numpy()
    assert np.allclose(full["pred"][fired], test["T_conv"][fired])
    at5 = predictor.predict(test, k=5)
    for i, prefix in enumerate(test["val_loss_prefix"]):
        state = cm.prefix_state(prefix[:5], 3, 1e-3)
        if state["fired"] is None:
            assert at5["pred"].iloc[i] >= state["lower_bound"]
    assert 0.1 <= predictor.sigma_ <= 1.5 and all(v > 0 for v in predictor.scale_.values())
    assert set(predictor.choice_) == set(cpr.K_BUCKETS)
    for choice in predictor.choice_.values():  # a PFN, a direct model or their log-space mean
        assert set(choice.split("|")) <= set(predictor.nets_) | set(predictor.direct_models_)


def test_censored_runs_count_as_at_least_max_epochs(runs):
    frame = runs.copy()
    frame["max_epochs"] = 20  # every run longer than 20 epochs is cut there: censored
    frame["converged"] = frame["T_conv"] < 20
    frame["T_conv"] = np.minimum(frame["T_conv"], 20)
    assert cpr.censored(frame).sum() == (~frame["converged"]).sum() > 0
    aft = cpr.CensoredMetaRegressor(features=cm.CONFIG_FEATURES).fit(frame)
    naive = cm.MetaRegressor(features=cm.CONFIG_FEATURES).fit(frame)
    cut = ~frame["converged"].to_numpy()
    assert aft.predict(frame)["pred"][cut].median() > naive.predict(frame)["pred"][cut].median()


def test_remaining_epochs_for_a_running_job(predictor, runs):
    row = runs.iloc[0].drop(["val_loss_prefix", "T_conv"]).to_dict()
    curve = runs.iloc[0]["val_loss_prefix"]
    early = cpr.remaining_epochs(predictor, row, curve[:3])
    assert early["epochs_seen"] == 3 and not early["finished"]
    assert early["remaining_lo"] <= early["remaining"] <= early["remaining_hi"]
    done = cpr.remaining_epochs(predictor, row, curve)  # the whole curve: stopping fired at its end
    assert done["finished"] and done["remaining"] == 0 and done["total"] == len(curve)


def test_predict_epochs_uses_the_curve_prior(tmp_path, monkeypatch, predictor, runs):
    monkeypatch.setattr(cpr, "default_curve_prior", lambda refit=False: predictor)
    rows = _cli_rows(runs)
    rows.to_csv(tmp_path / "in.csv", index=False)
    parser = argparse.ArgumentParser()
    conv_cli.add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict-epochs", "--input", str(tmp_path / "in.csv"), "--output",
                              str(tmp_path / "out.csv")])  # fmt: skip
    assert args.model == "curve_prior" and args.func(args) == 0
    out = pd.read_csv(tmp_path / "out.csv")
    expected = predictor.predict(conv_cli.canonical_input(rows), k=None)
    assert np.allclose(out["pred_T_conv"], expected["pred"].round(2))
    with pytest.raises(Exception, match="Unknown model"):
        conv_cli.predict_epochs_frame(rows, model="lstm")


def test_api_conditions_on_observed_losses(monkeypatch, predictor):
    from torch import nn

    from chronos_core.api import TrainingTimePredictor

    monkeypatch.setattr(cpr, "default_curve_prior", lambda refit=False: predictor)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))
    p = TrainingTimePredictor(model=net, dataset="Digits", batch_size=64, gpu="cpu", patience=3,
                              min_delta=1e-3, max_epochs=80, measure=False)  # fmt: skip
    zero = p.predict_number_of_epochs()
    assert 1 <= zero.lo <= zero <= zero.hi <= 80
    stopped = p.predict_number_of_epochs(observed_val_loss=[2.0, 1.0, 1.1, 1.2, 1.3])
    assert stopped == 5 and stopped.lo == stopped.hi == 5  # patience 3 fired at epoch 5
    running = p.predict_number_of_epochs(observed_val_loss=[2.0, 1.8, 1.6, 1.45, 1.3])
    assert running >= 6
    with pytest.raises(ValueError, match="observed_val_loss"):
        p.predict_number_of_epochs(observed_val_loss=[1.0, float("nan")])


def test_direct_model_features_pairs_and_quantiles(runs):
    from chronos_core.convergence import direct as dr

    names = dr.PREFIX_NAMES
    row = dict(zip(names, dr.prefix_row([2.0, 1.5, 1.4, 1.45, 1.46], 5, 5, 1e-3, 80), strict=True))
    assert row["k"] == 5 and row["since_best"] == 2 and row["patience_left"] == 3
    assert np.exp(row["lb_gap"]) == pytest.approx(3)  # best at epoch 3: the rule cannot fire before epoch 8
    assert np.exp(row["log_budget"]) == pytest.approx(75) and row["imp1"] < 0 < row["first_minus_last"]
    zero = dr.prefix_row([], 0, 5, 1e-3, 80)
    assert len(zero) == len(names) and np.isnan(zero[names.index("last")])
    rows, ks = dr.pairs(runs)
    y = runs["T_conv"].to_numpy()
    assert (ks < y[rows]).all() and (ks == 0).sum() == len(runs)
    for i, k in zip(rows[:50], ks[:50], strict=True):  # every pair is still open at k
        assert k == 0 or cm._open(runs["val_loss_prefix"].iloc[i][:k], 3, 1e-3)
    x = dr.prefix_matrix(runs.iloc[rows], ks)
    model = dr.DirectQuantileModel(n_estimators=20).fit(x, np.log(y[rows] - ks))
    q = model.predict(x[:10])
    assert q.shape == (10, 3) and (np.diff(q, axis=1) >= 0).all()


def test_one_se_rule_keeps_the_ensemble_unless_a_candidate_wins_on_every_fold():
    fold = np.repeat([0, 1, 2, 3], 5)
    ens = np.full(20, 10.0)
    steady = {"ens": ens, "other": ens - 1.0 + 0.1 * np.tile(np.arange(5), 4)}  # 0.6-1.0 better on each fold
    assert cpr._one_se_choice(steady, fold, "ens", "other") == "other"
    lucky = ens.copy()
    lucky[fold == 0] -= 8.0  # a big win on one fold, a small loss on the three others
    lucky[fold > 0] += 1.0
    assert np.mean(lucky) < np.mean(ens)  # lowest mean MAE, yet not a steady gain
    assert cpr._one_se_choice({"ens": ens, "lucky": lucky}, fold, "ens", "lucky") == "ens"
    assert cpr._one_se_choice(steady, np.zeros(20), "ens", "other") == "ens"  # one fold: no evidence


def test_zero_shot_candidate_quantiles():
    q = cpr.zero_shot_log_quantiles(np.array([20.0, 3.0]), np.array([5, 5]), sigma=0.5)
    assert np.exp(q[0, 1]) == pytest.approx(15.0) and np.exp(q[1, 1]) == pytest.approx(1.0)
    assert q[0, 2] - q[0, 1] == pytest.approx(0.5 * 1.2816) == pytest.approx(q[0, 1] - q[0, 0])


def test_ensemble_is_the_default_and_every_choice_predicts(runs, committed, predictor):
    ensemble = "pretrained|finetuned|direct|direct+config"
    assert predictor._ensemble_name() == ensemble
    for bucket, mae in predictor.inner_mae_.items():
        assert ensemble in mae and "zero_shot" in mae
        choice = predictor.choice_[bucket]
        assert choice == ensemble or mae[choice] < mae[ensemble]  # only a lower inner MAE replaces it
    test = runs[runs.model == "m_f"]
    for fixed in ("zero_shot", "pretrained|direct"):
        model = cpr.CurvePriorPredictor(pfn=committed, finetune_steps=0, inner_folds=3, fixed=fixed)
        model.fit(runs[runs.model != "m_f"], groups=runs.loc[runs.model != "m_f", "model"])
        assert set(model.choice_.values()) == {fixed}
        for k in (0, 4):
            out = model.predict(test, k)
            assert np.isfinite(out["pred"]).all() and (out["lo"] <= out["pred"]).all()
    lowest = cpr.CurvePriorPredictor(pfn=committed, finetune_steps=0, inner_folds=3, ensemble=False)
    lowest.fit(runs[runs.model != "m_f"], groups=runs.loc[runs.model != "m_f", "model"])
    for bucket, mae in lowest.inner_mae_.items():
        assert lowest.choice_[bucket] == min(mae, key=mae.get)


def test_model_ceiling_divides_out_each_models_bias_and_keeps_the_scatter(runs):
    from chronos_core.convergence.prior_report import model_ceiling

    frame = runs.reset_index(drop=True)
    y = np.minimum(frame["T_conv"].to_numpy(float), frame["max_epochs"].to_numpy(float))
    bias = frame["model"].map({m: 1.5 + i for i, m in enumerate(frame["model"].unique())}).to_numpy()
    scatter = np.where(np.arange(len(frame)) % 2, 1.2, 1 / 1.2)
    rows = np.arange(len(frame))
    base = {"table": "t", "scheme": "lomo", "model": "curve_prior"}
    preds = pd.DataFrame({**base, "row": rows, "k": 0, "y": y})
    preds = pd.concat([preds.assign(pred=y * bias), preds.assign(pred=y * bias * scatter, k=10)])
    out = model_ceiling(preds, {"t": frame}).set_index("k")
    assert out.loc[0, "MAE_model_oracle"] == pytest.approx(0.0, abs=1e-9)  # a pure per-model bias is removed
    assert out.loc[10, "MAE_model_oracle"] > 0.5  # scatter within a model is not
    assert out.loc[10, "n"] < len(frame)  # k > 0: only runs still open at k
    assert out.loc[0, "target"] == 6.5


def test_coverage_intervals_resample_held_out_groups_and_flag_a_real_miss(runs):
    from chronos_core.convergence.prior_report import coverage_intervals

    frame = runs.reset_index(drop=True)
    y = np.minimum(frame["T_conv"].to_numpy(float), frame["max_epochs"].to_numpy(float))
    rows = np.arange(len(frame))
    fold = pd.factorize(frame["model"])[0]
    hit = rows % 5 != 0  # 80% of the rows inside their interval
    wide = pd.DataFrame({"table": "t", "model": "curve_prior", "row": rows, "fold": fold, "k": 0, "y": y,
                         "lo": np.where(hit, y - 1, y + 1), "hi": y + 2})  # fmt: skip
    preds = pd.concat([wide.assign(scheme="lomo"), wide.assign(scheme="cv", lo=y - 1)])  # cv: all inside
    out = coverage_intervals(preds, {"t": frame}, draws=500).set_index("scheme")
    lomo, cv = out.loc["lomo"], out.loc["cv"]
    assert lomo["coverage80"] == pytest.approx(hit.mean()) and lomo["groups"] == frame["model"].nunique()
    assert lomo["lo90"] <= 0.8 <= lomo["hi90"] and lomo["inside"]
    assert cv["coverage80"] == 1.0 and cv["groups"] == len(frame) and not cv["inside"]
