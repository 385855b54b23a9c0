"""Convergence runs: tasks, models, early-stopping targets, divergence, CAPE probe-batch, resumable sweep."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from chronos_core.convergence import sweep as sw
from chronos_core.convergence.nets import NETS, build_model
from chronos_core.convergence.runner import (
    RunConfig,
    early_stopping_epoch,
    probe_batch_steps,
    reduction_epoch,
    train_run,
)
from chronos_core.convergence.tasks import load_task
from chronos_core.data import registry
from chronos_core.errors import ChronosError


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_early_stopping_counts_epochs_without_min_delta_improvement():
    curve = [1.0, 0.8, 0.7, 0.69995, 0.71, 0.72]  # best at 3 (0.69995 is not better by 1e-4)
    assert early_stopping_epoch(curve, patience=3, min_delta=1e-4) == 6
    assert early_stopping_epoch(curve, patience=4, min_delta=1e-4) is None
    assert early_stopping_epoch(curve[:3], patience=1, min_delta=0.2) == 2  # 0.8 is not < 1.0 - 0.2


def test_early_stopping_reproduces_public_t_conv():
    if registry.mirror_dir() is None:
        pytest.skip("public mirror not available")
    from chronos_core.convergence.data import cape_table

    table = cape_table()
    full = table[table["val_loss_prefix"].map(len) == table["T_conv"]]
    assert len(full) > 200
    fired = [early_stopping_epoch(r.val_loss_prefix, int(r.patience), r.min_delta) for r in full.itertuples()]
    assert (pd.Series(fired, index=full.index) == full["T_conv"]).all()


def test_reduction_epoch():
    curve = [2.0, 1.5, 1.3, 1.0]  # total drop 2.0 from 3.0
    assert reduction_epoch(curve, initial=3.0, fraction=0.8) == 3  # drop 1.7 >= 1.6
    assert reduction_epoch(curve, initial=3.0, fraction=0.9) == 4  # 1.7 < 1.8
    assert reduction_epoch([3.5, 4.0], initial=3.0, fraction=0.8) is None


def test_tasks_and_models_fit_together():
    for name in ("digits", "teacher", "text_py"):
        task = load_task(name)
        assert task.x_train.shape[0] == task.y_train.shape[0] <= 1500
        assert int(task.y_train.max()) < task.num_classes
        for model_name in NETS:
            torch.manual_seed(0)
            out = build_model(model_name, task)(task.x_val[:5])
            assert out.shape == (5, task.num_classes)
    with pytest.raises(ChronosError, match="Unknown convergence task"):
        load_task("imagenet")


def test_train_run_records_targets_curves_and_probes():
    row = train_run(RunConfig("digits", "mlp_s", "AdamW", 3e-3, 128, seed=0, max_epochs=6, patience=2))
    curve = json.loads(row["val_loss_curve"])
    assert row["epochs_run"] == len(curve) <= 6
    assert not row["diverged"]
    if row["converged"]:
        assert row["T_conv"] == early_stopping_epoch(curve, 2, 1e-4)
    else:
        assert row["T_conv"] == 6
    assert curve[0] < row["initial_val_loss"]
    assert row["T_red80"] <= row["T_red90"] <= row["T_best"]
    assert row["probe_method"] == "exact" and row["ntk_trace_log10"] > row["gradient_norm_log10"]
    assert row["probe_batch_steps_eps10"] >= row["probe_batch_steps_eps20"] > 0


def test_divergence_is_a_recorded_run_not_a_crash():
    row = train_run(RunConfig("teacher", "mlp_d", "SGD", 1e4, 32, seed=0, max_epochs=3, probe_batch=False))
    assert row["diverged"]
    assert math.isnan(row["T_conv"]) and not row["converged"]


def test_probe_batch_steps_reach_thresholds_in_order():
    task = load_task("digits")
    torch.manual_seed(0)
    model = build_model("mlp_s", task)
    steps = probe_batch_steps(model, task.x_train[:32], task.y_train[:32], 1e-2, cap=500)
    assert steps[0.2] is not None and steps[0.2] <= steps[0.15] <= steps[0.1]
    capped = probe_batch_steps(build_model("mlp_s", task), task.x_train[:32], task.y_train[:32], 1e-9, cap=3)
    assert all(v is None for v in capped.values())


def test_run_config_validation():
    with pytest.raises(ChronosError, match="Unknown optimizer"):
        RunConfig("digits", "mlp_s", "Lion", 1e-3, 32, 0)
    with pytest.raises(ChronosError, match="Unknown convergence model"):
        RunConfig("digits", "resnet", "SGD", 1e-3, 32, 0)
    a = RunConfig("digits", "mlp_s", "SGD", 1e-3, 32, 0)
    b = RunConfig("digits", "mlp_s", "SGD", 1e-3, 32, 1)
    assert a.key != b.key and a.config_key == b.config_key


def test_plan_is_balanced_and_deterministic():
    cfg = sw.SweepConfig()
    runs = sw.plan(cfg)
    assert runs == sw.plan(cfg)
    assert len(runs) == len(cfg.tasks) * len(cfg.models) * 6 * 3 >= 600
    configs = pd.Series([r.config_key for r in runs]).value_counts()
    assert (configs == 3).all()
    seeds_together = [
        runs[i].config_key == runs[i + 1].config_key == runs[i + 2].config_key for i in range(0, 9, 3)
    ]
    assert all(seeds_together)


def test_sweep_resumes(tmp_path):
    cfg = sw.SweepConfig(
        tasks=("digits",), models=("mlp_s",), learning_rates={"AdamW": (1e-2,)}, batch_sizes=(128,),
        seeds=(0, 1), max_epochs=2,
    )  # fmt: skip
    out = tmp_path / "runs.csv"
    assert sw.run_sweep(out, cfg, limit=1) == 1
    assert sw.run_sweep(out, cfg) == 1
    assert sw.run_sweep(out, cfg) == 0
    table = pd.read_csv(out)
    assert sorted(table["seed"]) == [0, 1] and (table["error"].isna()).all()
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["grid"]["seeds"] == [0, 1] and "T_conv" in info["definitions"]
