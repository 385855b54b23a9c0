"""Sweeps fan out over Ray: a local instance runs each configuration as a task; rows resume alike.

Kept apart from the other sweep tests: starting Ray costs ~10 s on an idle 2-core machine
(~30 s when the cores are shared).
"""

from __future__ import annotations

import pytest

from chronos_core.profiling.sweep import read_sweep, run_sweep, sweep_from_dict

TINY = {"model_kwargs": {"depth": 1, "base_filters": 2}, "dataset": "Digits", "repeats": 2, "warmup": 0}
TINY |= {"iters": 1, "threads": 1, "device": "cpu"}


def test_ray_fan_out_with_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    out = tmp_path / "models.csv"
    spec = sweep_from_dict(
        {"kind": "model", "fixed": TINY, "grid": {"model": ["SimpleCNN"], "batch_size": [2, 3, 50_000_000]}}
    )
    try:
        report = run_sweep(spec, out, ray_address="local", progress=False)
    finally:
        ray.shutdown()
    assert report.ran == 3 and report.failed == 1
    frame = read_sweep(out, ok_only=False)
    assert sorted(frame["batch_size"]) == [2, 3, 50_000_000]
    assert set(frame["status"]) == {"ok", "error"}
    assert run_sweep(spec, out, progress=False).ran == 0  # a Ray sweep resumes like a local one
