"""Notebook 08's computations: every table it shows is made (reuse=False) or read (reuse=True) here.

Tables under results/kernels/:
  op_logo_summary.csv      MAPE per split and op group, leave-one-GPU-out: roofline, chronos
                           (datasheet only), chronos calibrated (a few of the GPU's kernels), NeuSight's
  op_logo_per_gpu.csv      the same per held-out GPU (test shapes)
  op_in_fit_summary.csv    the ceiling of op_logo_summary.csv: every GPU's training session in the fit
  op_in_fit_per_gpu.csv    the same per GPU (test shapes)
  op_in_session.csv        per GPU and op group (test shapes): a shape regressor cross-validated within the
                           GPU's own test session, and how the held-out misses correlate across GPUs
  calibration_budget.csv   calibrated MAPE per split and op group against kernels measured per group (4-64)
  sustained_rates.csv      test-shape MAPE per op group: datasheet peaks, sustained rates, calibrated
  sustained_specs.csv      each GPU's datasheet and sustained fp32 GEMM FLOP/s and bandwidth
  precision_transfer.csv   B200 bf16/TF32 GEMMs with the B200 out of the fit
  neusight_models.csv      model-level inference latency on the four labelled GPUs
  chronos_logo.csv         CHRONOS compute time per held-out GPU: kernel model, the whole-model one,
                           their geometric mean; and unseen configs of a known GPU and host
  chronos_hosts.csv        each CHRONOS host's fitted per-op and per-step costs (fp32 and AMP)
  chronos_precision.csv    the same over fp32 steps and AMP steps apart
  chronos_misses.csv       where the kernel model's held-out-GPU miss sits: per GPU and model, GPU-bound
                           and host-bound rows, and what one perfect factor per GPU would leave
  chronos_ceilings.csv     what corrections learned from other GPUs, and oracle factors per GPU / model /
                           batch size, would leave of the held-out error; the repeat-measurement floor
  chronos_calibration.csv  the held-out GPU's kernel model from its datasheet, calibrated with 16 or 64
                           of its chip's kernels, and with them all in the fit (GPUs NeuSight measured)
  chronos_unseen_size.csv  zoo steps larger than any of their model's in the tables (64x64 and 96x96 rows
                           held out of every fit): the whole-model regressor against the kernel model
  step_interval.csv        80% interval of a step prediction (log-ratio quantiles, held-out GPUs)
  cpu_steps.csv            training steps measured on a profiled CPU: default host, host fitted elsewhere
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from chronos_core.catalog.devices import Devices
from chronos_core.data.kernels import kernel_table, xla_kernels
from chronos_core.predict import kernel_eval, step_eval
from chronos_core.predict.step import DEFAULT_HOST

OUT_DIR = Path(__file__).resolve().parents[2] / "results" / "kernels"
OLD_PREDS = (
    Path(__file__).resolve().parents[2] / "results" / "time" / "preds_unseen_gpu_hardware_aware.csv.gz"
)


def _write(frame: pd.DataFrame, name: str, out_dir: Path) -> pd.DataFrame:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    tmp = path.with_name(f".{name}.part")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
    return frame


def op_level(
    reuse: bool, out_dir: Path = OUT_DIR, n_estimators: int = 300
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-one-GPU-out over NeuSight's five GPUs, training and out-of-distribution shapes."""
    if reuse:
        return _read_op_tables("op_logo", out_dir)
    return _write_op_tables(_logo_scored(n_estimators), "op_logo", out_dir)


@functools.lru_cache(maxsize=1)
def _logo_scored(n_estimators: int) -> pd.DataFrame:
    """The scored leave-one-GPU-out kernels, computed once per process (op_level and op_in_session)."""
    table = kernel_table(include_xla=False)
    return kernel_eval.leave_one_gpu_out(table, n_estimators=n_estimators, progress=True)


def op_in_session(reuse: bool, out_dir: Path = OUT_DIR, n_estimators: int = 300) -> pd.DataFrame:
    """What each GPU's own test session tells about its kernels, beside the held-out model's miss."""
    if reuse:
        return pd.read_csv(out_dir / "op_in_session.csv")
    return _write(kernel_eval.in_session(_logo_scored(n_estimators).copy()), "op_in_session.csv", out_dir)


def op_in_fit(
    reuse: bool, out_dir: Path = OUT_DIR, n_estimators: int = 300
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """op_level's ceiling: the same scoring with every GPU's training session in the fit."""
    if reuse:
        return _read_op_tables("op_in_fit", out_dir)
    scored = kernel_eval.in_fit(kernel_table(include_xla=False), n_estimators=n_estimators)
    return _write_op_tables(scored, "op_in_fit", out_dir)


def _read_op_tables(stem: str, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return pd.read_csv(out_dir / f"{stem}_summary.csv"), pd.read_csv(out_dir / f"{stem}_per_gpu.csv")


def _write_op_tables(scored: pd.DataFrame, stem: str, out_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """STEM_summary.csv (MAPE per split and op group) and STEM_per_gpu.csv (test shapes) of scored kernels."""
    summary = kernel_eval.summarize_ops(scored)
    per_gpu = kernel_eval.per_gpu(scored, "test")
    per_gpu.columns = [f"{a}:{b}" for a, b in per_gpu.columns]
    per_gpu = per_gpu.reset_index()
    return _write(summary, f"{stem}_summary.csv", out_dir), _write(per_gpu, f"{stem}_per_gpu.csv", out_dir)


def calibration_budget(reuse: bool, out_dir: Path = OUT_DIR, n_estimators: int = 300) -> pd.DataFrame:
    """Calibrated leave-one-GPU-out error against the number of the GPU's kernels measured."""
    if reuse:
        return pd.read_csv(out_dir / "calibration_budget.csv")
    table = kernel_table(include_xla=False)
    frame = kernel_eval.calibration_budget(table, n_estimators=n_estimators, progress=True)
    return _write(frame, "calibration_budget.csv", out_dir)


def sustained(
    reuse: bool, out_dir: Path = OUT_DIR, n_estimators: int = 300
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Leave-one-GPU-out with sustained rates (what a published benchmark lists) in place of datasheet
    peaks, beside the datasheet and calibrated columns of `op_level`'s test-shape summary."""
    if reuse:
        return pd.read_csv(out_dir / "sustained_rates.csv"), pd.read_csv(out_dir / "sustained_specs.csv")
    table = kernel_table(include_xla=False)
    specs = kernel_eval.sustained_specs(table)
    rates = pd.DataFrame(
        [
            {
                "gpu": gpu,
                "datasheet_fp32_tflops": Devices.get(gpu).peak_fp32_tflops,
                "sustained_fp32_tflops": spec.peak_fp32_tflops,
                "datasheet_bandwidth_gbs": Devices.get(gpu).memory_bandwidth_gbs,
                "sustained_bandwidth_gbs": spec.memory_bandwidth_gbs,
            }
            for gpu, spec in specs.items()
        ]
    )
    rates["source"] = (
        f"NeuSight kernels, training-shape session: quantile {kernel_eval.SUSTAINED_QUANTILE} of achieved "
        "fp32 GEMM FLOP/s and elementwise bytes/s (datasheet where the GPU has no such kernels)"
    )
    scored = kernel_eval.sustained_logo(table, n_estimators, progress=True, specs=specs)
    summary = pd.read_csv(out_dir / "op_logo_summary.csv")  # calibrated: on the rows not calibrated on
    test = summary[summary["split"] == "test"][["group", "chronos_calibrated"]]
    frame = scored.merge(test.rename(columns={"chronos_calibrated": "calibrated"}), on="group")
    return _write(frame, "sustained_rates.csv", out_dir), _write(rates, "sustained_specs.csv", out_dir)


def precision(reuse: bool, out_dir: Path = OUT_DIR, n_estimators: int = 300) -> pd.DataFrame:
    """B200 tensor-core GEMMs predicted from fp32 kernels of other GPUs."""
    if reuse:
        return pd.read_csv(out_dir / "precision_transfer.csv")
    scored = kernel_eval.precision_transfer(kernel_table(include_xla=False), xla_kernels(), n_estimators)
    return _write(kernel_eval.summarize_precision(scored), "precision_transfer.csv", out_dir)


def neusight_models(reuse: bool, out_dir: Path = OUT_DIR) -> pd.DataFrame:
    """Inference latency of NeuSight's labelled language models on the GPUs whose kernels are in the fit."""
    if reuse:
        return pd.read_csv(out_dir / "neusight_models.csv")
    model = step_eval.kernel_fold(None)
    return _write(step_eval.check_neusight(model, DEFAULT_HOST), "neusight_models.csv", out_dir)


def neusight_parallel(reuse: bool, out_dir: Path = OUT_DIR) -> pd.DataFrame:
    """GPT-2-Large training on four A100-SXM4-40GB (NeuSight's labels): data, tensor and pipeline parallel."""
    if reuse:
        return pd.read_csv(out_dir / "neusight_parallel.csv")
    return _write(step_eval.check_neusight_parallel(), "neusight_parallel.csv", out_dir)


def chronos(reuse: bool, out_dir: Path = OUT_DIR) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CHRONOS compute time per held-out GPU (and unseen configs), beside the whole-model regressor."""
    if reuse:
        return pd.read_csv(out_dir / "chronos_logo.csv"), pd.read_csv(out_dir / "step_interval.csv")
    rows = chronos_rows_with_whole(step_eval.chronos_logo(step_eval.chronos_rows(), progress=True))
    ape = lambda col: (rows[col] - rows["compute_ms"]).abs() / rows["compute_ms"] * 100  # noqa: E731
    named = {
        "kernel_logo_mape": "pred_logo_ms",
        "whole_model_logo_mape": "pred_whole_ms",
        "ensemble_logo_mape": "pred_ensemble_ms",
        "kernel_unseen_config_mape": "pred_config_ms",
    }
    named = {name: col for name, col in named.items() if col in rows}
    errors = pd.DataFrame({name: ape(col) for name, col in named.items()})
    per_gpu = errors.groupby(rows["gpu"]).mean()
    per_gpu.insert(0, "rows", rows.groupby("gpu").size())
    per_gpu = per_gpu.reset_index()
    overall = {"gpu": "mean over GPUs", "rows": int(per_gpu["rows"].sum())}
    for col in per_gpu.columns[2:]:
        overall[col] = float(per_gpu[col].mean())
    per_gpu = pd.concat([per_gpu, pd.DataFrame([overall])], ignore_index=True)
    # fp32 steps (TF32 convolutions on Ampere and later) and AMP steps apart: how the fp32-trained
    # efficiency carries to tensor-core precisions on whole steps (mean over GPUs of per-GPU MAPE)
    amp = np.where(rows["precision"].astype(int) == 16, "amp", "fp32")
    by_precision = errors.groupby([amp, rows["gpu"]]).mean().groupby(level=0).mean()
    by_precision.insert(0, "rows", pd.Series(amp).value_counts())
    _write(by_precision.rename_axis("precision").reset_index(), "chronos_precision.csv", out_dir)
    _write(step_eval.chronos_misses(rows), "chronos_misses.csv", out_dir)
    _write(step_eval.chronos_ceilings(rows), "chronos_ceilings.csv", out_dir)
    calibration = step_eval.chronos_calibration(rows, progress=True)
    _write(calibration, "chronos_calibration.csv", out_dir)
    _write(
        step_eval.fit_hosts(step_eval.chronos_rows(), step_eval.kernel_fold(None)),
        "chronos_hosts.csv",
        out_dir,
    )
    log_ratio = np.log(rows["compute_ms"] / rows["pred_logo_ms"])
    interval = pd.DataFrame(
        {
            "q10": [float(log_ratio.quantile(0.1))],
            "q90": [float(log_ratio.quantile(0.9))],
            "coverage": [
                float(
                    ((log_ratio >= log_ratio.quantile(0.1)) & (log_ratio <= log_ratio.quantile(0.9))).mean()
                )
            ],
            "source": ["CHRONOS compute rows, leave-one-GPU-out residuals of the kernel model"],
        }
    )
    _write(interval, "step_interval.csv", out_dir)
    return _write(per_gpu, "chronos_logo.csv", out_dir), interval


def chronos_rows_with_whole(rows: pd.DataFrame) -> pd.DataFrame:
    """`chronos_logo` rows with the whole-model regressor's held-out prediction of the same rows
    (notebook 04's, `pred_whole_ms`) and their equal-weight geometric mean (`pred_ensemble_ms`, fixed
    beforehand, not tuned), where notebook 04's predictions are there."""
    if not OLD_PREDS.is_file():
        return rows
    old = pd.read_csv(OLD_PREDS, usecols=["row", "pred_compute_ms"])
    rows = rows.merge(old.rename(columns={"pred_compute_ms": "pred_whole_ms"}), on="row", how="left")
    rows["pred_ensemble_ms"] = np.sqrt(rows["pred_logo_ms"] * rows["pred_whole_ms"])
    return rows


def chronos_ceilings(out_dir: Path = OUT_DIR) -> pd.DataFrame:
    """The table `chronos` wrote beside chronos_logo.csv (`step_eval.chronos_ceilings`)."""
    return pd.read_csv(out_dir / "chronos_ceilings.csv")


def chronos_misses(out_dir: Path = OUT_DIR) -> pd.DataFrame:
    """The table `chronos` wrote beside chronos_logo.csv (`step_eval.chronos_misses`)."""
    return pd.read_csv(out_dir / "chronos_misses.csv")


def chronos_unseen_size(reuse: bool, out_dir: Path = OUT_DIR) -> pd.DataFrame:
    """Zoo steps beyond their model's rows in the tables: regressor against kernel model, seen and unseen
    GPUs (`step_eval.chronos_unseen_size`)."""
    if reuse:
        return pd.read_csv(out_dir / "chronos_unseen_size.csv")
    table = step_eval.chronos_unseen_size(step_eval.chronos_rows(), progress=True)
    return _write(table, "chronos_unseen_size.csv", out_dir)


def chronos_calibration(out_dir: Path = OUT_DIR) -> pd.DataFrame:
    """The table `chronos` wrote beside chronos_logo.csv (`step_eval.chronos_calibration`)."""
    return pd.read_csv(out_dir / "chronos_calibration.csv")


def chronos_precision(out_dir: Path = OUT_DIR) -> pd.DataFrame:
    """The table `chronos` wrote beside chronos_logo.csv: its MAPEs over fp32 and AMP steps apart."""
    return pd.read_csv(out_dir / "chronos_precision.csv")


def cpu(reuse: bool, out_dir: Path = OUT_DIR) -> pd.DataFrame:
    """Training steps measured on this project's profiled CPU against the kernel model (`cpu_eval`)."""
    if reuse:
        return pd.read_csv(out_dir / "cpu_steps.csv")
    from chronos_core.predict import cpu_eval
    from chronos_core.predict.kernel_default import default_kernel_model

    return _write(cpu_eval.check_cpu(default_kernel_model()), "cpu_steps.csv", out_dir)
