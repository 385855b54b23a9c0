"""The kernel model on a measured device: whole training steps against their priced operators.

Written for this project's CPU; a GPU's steps (`scripts/device_session.sh`) read the same way.

A CPU that `chronos calibrate` profiled (`meta_datasets/<slug>/device_profile.csv`) and whose steps
`chronos sweep sweeps/cpu_steps_xeon.yaml` measured (`meta_datasets/<slug>/steps.csv`, same threads):
each step is traced on the meta device and priced op by op with the default kernel model, which that
profile calibrates. Two hosts: the default one, its per-op dispatch added to the kernels (on a CPU
they run on the same cores), and one fitted on the other models' steps (leave-one-model-out):
step = scale x kernels + per-op cost x ops + per-step cost, least squares in relative error.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from chronos_core.data.device_profiles import profile_root
from chronos_core.errors import ChronosError
from chronos_core.predict.kernels import KernelModel
from chronos_core.predict.step import DEFAULT_HOST, predict_ops, serial_host, step_totals, trace_config

DEFAULT_SLUG = "cpu-intel-xeon"
STEPS_FILE = "steps.csv"
# the sweep's precision column -> the tracer's
PRECISIONS = {"32": "fp32", "16": "amp", "bf16": "bf16"}


def cpu_steps(slug: str = DEFAULT_SLUG) -> pd.DataFrame:
    """The measured steps of a profiled CPU (rows that ran)."""
    path = profile_root() / slug / STEPS_FILE
    if not path.is_file():
        raise ChronosError(f"no measured steps for {slug!r}: {path} is missing")
    rows = pd.read_csv(path)
    return rows[rows["status"] == "ok"].reset_index(drop=True)


def price_steps(rows: pd.DataFrame, model: KernelModel, slug: str = DEFAULT_SLUG) -> pd.DataFrame:
    """Kernel time (ms, floors excluded, gaps included) and op count of each measured step."""
    out = rows[["model", "dataset", "batch_size", "precision", "optimizer", "compute_ms"]].copy()
    kernel_ms, ops_n, default_ms = [], [], []
    for row in rows.itertuples():
        seq_len = None if pd.isna(getattr(row, "seq_len", np.nan)) else int(row.seq_len)
        ops, device = trace_config(
            model=row.model,
            gpu=slug,
            batch_size=int(row.batch_size),
            dataset=row.dataset,
            seq_len=seq_len,
            precision=PRECISIONS[str(row.precision)],
            optimizer=str(row.optimizer).lower(),
        )
        priced = predict_ops(ops, device, model)
        totals = step_totals(priced, DEFAULT_HOST, serial_host(device))
        kernel_ms.append(totals["pred_step_ms"] - totals["pred_overhead_ms"])
        ops_n.append(totals["kernels"])
        default_ms.append(totals["pred_step_ms"])
    out["kernel_ms"], out["ops"], out["pred_default_ms"] = kernel_ms, ops_n, default_ms
    return out


def fit_serial_host(kernel_ms: np.ndarray, ops: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """(scale, ms per op, ms per step) >= 0 minimising the squared relative error of
    scale x kernel_ms + per_op x ops + per_step against the measured steps."""
    from scipy.optimize import nnls

    design = np.column_stack([kernel_ms, ops, np.ones_like(kernel_ms)]) / measured[:, None]
    coef, _ = nnls(design, np.ones_like(measured))
    return coef


def check_cpu(model: KernelModel, slug: str = DEFAULT_SLUG) -> pd.DataFrame:
    """Each measured step with pred_default_ms (the default host: serial on a CPU) and pred_lomo_ms (a
    host fitted on the other models' steps), and their absolute percentage errors."""
    priced = price_steps(cpu_steps(slug), model, slug)
    kernel, ops, measured = (priced[c].to_numpy(float) for c in ("kernel_ms", "ops", "compute_ms"))
    lomo = np.full(len(priced), np.nan)
    for name in priced["model"].unique():
        held = (priced["model"] == name).to_numpy()
        coef = fit_serial_host(kernel[~held], ops[~held], measured[~held])
        lomo[held] = coef[0] * kernel[held] + coef[1] * ops[held] + coef[2]
    priced["pred_lomo_ms"] = lomo
    for col in ("default", "lomo"):
        priced[f"ape_{col}"] = np.abs(priced[f"pred_{col}_ms"] / measured - 1) * 100
    priced.insert(0, "device", slug)
    return priced
