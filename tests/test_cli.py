"""The command line: verbs run, bad input is one line on stderr with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from chronos_core.cli import build_parser, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chronos_core", *args], capture_output=True, text=True, timeout=120
    )


def test_python_dash_m_runs_and_bad_source_is_one_line():
    proc = run_cli("data", "show", "no-such-table")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "Unknown data source 'no-such-table'" in proc.stderr


def test_data_list_json(capsys, mirror):
    assert main(["data", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in rows} >= {"chronos-time-cnn", "cape-dataset", "a100-runs-agg"}
    assert all(r["available"] == "mirror" for r in rows)


def test_every_verb_has_help():
    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices  # noqa: SLF001
    expected = {"devices", "data", "features", "plan", "reproduce", "measure", "sweep", "microbench",
                "predict-time", "predict-epochs", "predict", "compare"}  # fmt: skip
    assert expected <= set(verbs)
    for name, sub in verbs.items():
        assert sub.format_help().startswith("usage: chronos " + name)


def test_unknown_verb_exits_2():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
