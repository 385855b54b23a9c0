"""The README's targets-at-a-glance table is read back from the result files it summarizes."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from chronos_core.convergence.prior_report import TARGETS, headline

ROOT = Path(__file__).resolve().parents[1]
KERNELS, CONVERGENCE = ROOT / "results" / "kernels", ROOT / "results" / "convergence"
README = (ROOT / "README.md").read_text(encoding="utf-8")
KS = (0, 3, 5, 10)


def _row(name: str) -> list[str]:
    """The cells of the table row whose first cell is `name`."""
    table = README[README.index("Targets at a glance") :].split("\n\n")[1]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] == name:
            return cells
    raise AssertionError(f"no row {name!r}")


def _pct(value: float) -> str:
    return f"{value:.1f}%"


def _seq(values) -> str:
    return " / ".join(f"{v:.2f}" for v in values)


def test_kernel_rows():
    ops = pd.read_csv(KERNELS / "op_logo_summary.csv").query("split == 'test'").set_index("group")
    fit = pd.read_csv(KERNELS / "op_in_fit_summary.csv").query("split == 'test'").set_index("group")
    names = {"gemm_bmm": "bmm", "gemm_linear": "linear", "elementwise": "elementwise", "softmax": "softmax",
             "ln": "layer norm"}  # fmt: skip
    for group, name in names.items():
        cells = _row(f"kernel time, {name}")
        now, goal = ops.loc[group, "chronos_calibrated"], ops.loc[group, "neusight_published_ood"]
        assert cells[2:4] == [_pct(now), _pct(goal)]
        assert cells[5] == ("yes" if round(now, 1) <= goal else "no")
    assert _row("kernel time, bmm")[4].startswith(_pct(fit.loc["gemm_bmm", "chronos_calibrated"]))
    session = pd.read_csv(KERNELS / "op_in_session.csv").set_index(["group", "gpu"])["in_session_mape"]
    pooled, t4 = _pct(session[("gemm_bmm", "all")]), _pct(session[("gemm_bmm", "T4")])
    own = f"{pooled} fitted on 80% of each GPU's own test kernels (T4: {t4})"
    assert _row("kernel time, bmm")[4].endswith(own)
    b200 = pd.read_csv(KERNELS / "precision_transfer.csv").set_index("dtype")["chronos_calibrated"]
    assert _row("B200 GEMMs, bf16 / tf32")[2] == f"{_pct(b200['bf16'])} / {_pct(b200['tf32'])}"
    assert max(b200) <= 15 and _row("B200 GEMMs, bf16 / tf32")[5] == "yes"
    models = pd.read_csv(KERNELS / "neusight_models.csv")["ape"].mean()
    assert _row("inference of 4 language models")[2] == _pct(models) and models <= 10


def test_chronos_row():
    logo = pd.read_csv(KERNELS / "chronos_logo.csv").set_index("gpu").loc["mean over GPUs"]
    ceil = pd.read_csv(KERNELS / "chronos_ceilings.csv").set_index(["predictor", "factor"])["mape"]
    cells = _row("CHRONOS compute time")
    assert cells[2] == f"{_pct(logo['kernel_logo_mape'])} (blend {_pct(logo['ensemble_logo_mape'])})"
    cell = "oracle per GPU, model and precision"
    floor = ceil[("the same step's other runs", "measurement floor")]
    assert cells[4] == (
        f"oracle factor per GPU, model and precision: {_pct(ceil[('kernel model', cell)])} "
        f"(blend {_pct(ceil[('blend', cell)])}); repeat runs: {_pct(floor)}"
    )
    assert cells[5] == ("yes" if min(logo["kernel_logo_mape"], logo["ensemble_logo_mape"]) <= 15 else "no")


def test_speed_rows():
    trace = (KERNELS / "opgraph_speed.md").read_text()
    cold = re.search(r"as a user sees it .*?\| ([0-9.]+) \| < 3", trace).group(1)
    disk = re.search(r"new process \(disk cache\) \| ([0-9.]+) ms", trace).group(1)
    assert _row("GPT-2-Large step traced, cold / cached")[2] == f"{cold} s / {disk} ms"
    step = (KERNELS / "predict_step_speed.md").read_text()
    repeated, distinct = re.findall(r"\*\*([0-9.]+) s\*\*", step)
    assert _row("`predict-step`, 1,000 rows")[2] == f"{repeated} s / {distinct} s"


def test_convergence_rows():
    head = headline(pd.read_csv(CONVERGENCE / "prior_metrics.csv"))
    ceiling = pd.read_csv(CONVERGENCE / "prior_model_ceiling.csv").set_index(["table", "k"])
    goals = " / ".join(f"{TARGETS[k]:.1f}" for k in KS)
    for table, name in (("public: CAPE_Dataset", "epochs to convergence, CAPE, k = 0 / 3 / 5 / 10"),
                        ("ours", "the same, our runs")):  # fmt: skip
        lomo = head[(head.table == table) & (head.scheme == "lomo")].set_index("k")["MAE"]
        cells = _row(name)
        assert cells[2] == _seq(lomo[k] for k in KS) and cells[3] == goals
        oracle = _seq(ceiling.loc[(table, k), "MAE_model_oracle"] for k in KS)
        assert oracle in cells[4]
        assert cells[5] == ("yes" if all(lomo[k] <= TARGETS[k] for k in KS) else "no")
    cover = _row("80% intervals for epochs")[2]
    assert cover == f"{head.coverage80.min():.2f}-{head.coverage80.max():.2f}"
    boot = pd.read_csv(CONVERGENCE / "prior_coverage.csv")
    grouped = boot[boot.scheme != "cv"]
    inside = f"in {grouped.inside.sum()} of {len(grouped)} cells"
    cell = f"0.80 inside the 90% bootstrap interval over held-out groups {inside}"
    assert _row("80% intervals for epochs")[4] == cell
