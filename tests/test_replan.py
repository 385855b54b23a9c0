"""Re-planning a running job from its observed epochs: API and `chronos predict --observed-val-loss`."""

from __future__ import annotations

import json

import pytest

from chronos_core.api import TrainingTimePredictor
from chronos_core.cli import main
from chronos_core.errors import ChronosError


def predictor(**kw) -> TrainingTimePredictor:
    args = {"model": "vgg16", "dataset": "cifar100", "batch_size": 32, "precision": 16, "gpu": "T4"}
    return TrainingTimePredictor(**(args | kw))


def test_open_job_gets_remaining_epochs_time_and_cost(mirror):
    p = predictor()
    left = p.predict_remaining([4.2, 3.6, 3.3, 3.1, 3.0])
    epochs, seconds, cost = left["remaining_epochs"], left["remaining_time_s"], left["remaining_cost_usd"]
    assert not left["finished"] and left["epochs_seen"] == 5
    assert 0 <= epochs["lo"] <= epochs["value"] <= epochs["hi"] <= p.max_epochs - 5
    assert seconds["lo"] <= seconds["value"] <= seconds["hi"]
    assert seconds["value"] == pytest.approx(epochs["value"] * float(p.predict_epoch_time()))
    assert cost["value"] == pytest.approx(seconds["value"] * p.gpu.price_per_hr_usd / 3600)


def test_a_job_whose_rule_already_fired_has_nothing_left(mirror):
    left = predictor(patience=3).predict_remaining([3.0, 2.5, 2.6, 2.7, 2.8])
    assert left["finished"] and left["remaining_epochs"]["hi"] == 0 and left["remaining_time_s"]["value"] == 0


@pytest.mark.parametrize(
    ("losses", "match"),
    [
        ([], "at least one finished epoch"),
        ([1.0] * 6, "more than max_epochs 5"),
        ([1.0, float("nan")], "observed_val_loss"),
    ],
)
def test_bad_observed_losses_are_one_line(mirror, losses, match):
    with pytest.raises(ChronosError, match=match) as err:
        predictor(max_epochs=5).predict_remaining(losses)
    assert "\n" not in str(err.value)


def test_cli_running_job(mirror, capsys):
    argv = ["predict", "--model", "vgg16", "--dataset", "cifar100", "--gpu", "T4", "--precision", "16"]
    assert main([*argv, "--observed-val-loss", "4.2,3.6,3.3"]) == 0
    assert "running job  after 3 epochs seen:" in capsys.readouterr().out
    assert main([*argv, "--observed-val-loss", "4.2 3.6 3.3", "--json"]) == 0
    running = json.loads(capsys.readouterr().out)["running"]
    assert running["epochs_seen"] == 3 and not running["finished"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--observed-val-loss", "4.2,inf"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.count("\n") == 1 and "entry 2 'inf'" in err
