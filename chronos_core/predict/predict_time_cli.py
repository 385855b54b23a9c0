"""`chronos predict-time --input IN.csv --output OUT.csv`: batch prediction of iteration time.

IN rows are in a registered public schema without measured columns: the canonical time schema
(`chronos_core.data.schema.TIME_COLUMNS`) or the CHRONOS epoch-time columns (config, analytic
features, TechPowerUp-style GPU spec columns such as 'SM', 'FP32', 'GPU Memory Bandwidth (GB/s)').
OUT repeats every input row and adds pred_batch_time_ms, pred_compute_ms, pred_loader_ms,
pred_batch_time_ms_lo, pred_batch_time_ms_hi (80% interval) and `error` (empty when predicted).
A GPU missing from the catalog is fine when its spec columns are given; optional columns
gpu_fp16_tensor_tflops, gpu_tf32_tensor_tflops, gpu_compute_capability and gpu_l2_cache_mb sharpen
its prediction (otherwise estimated from its generation).
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import pandas as pd

from chronos_core import validation as v
from chronos_core.errors import ChronosError
from chronos_core.predict.columns import PRED_COLUMNS

log = logging.getLogger(__name__)

_TECHPOWERUP = ("SM", "FP32", "GPU Memory Bandwidth (GB/s)", "Boost Clock (MHz)", "TC")
_MEASURED = ("avg_batch_time_ms", "avg_compute_ms", "avg_loader_ms", "compute_ms", "loader_wait_ms")


# spec and feature columns: every non-empty cell a finite number, > 0 (positive) or >= 0 (the rest)
_POSITIVE = (
    "gpu_fp32_tflops", "gpu_mem_bandwidth_gbs", "gpu_sm_count", "gpu_boost_clock_mhz", "gpu_memory_gb",
    "gpu_l2_cache_mb", "gpu_compute_capability", "FP32", "GPU Memory Bandwidth (GB/s)", "SM",
    "Boost Clock (MHz)", "Base Clock (MHz)", "Memory Clock (MHz)", "Memory (GB)", "Memory Bus (bit)",
    "learning_rate", "dataset_size", "num_classes",
)  # fmt: skip
_NON_NEGATIVE = (
    "gpu_fp16_tflops", "gpu_tensor_cores", "gpu_price_per_hr", "gpu_fp16_tensor_tflops",
    "gpu_tf32_tensor_tflops", "Cores", "TMUs", "ROPs", "TC", "RT", "FP16", "FP64", "$/hr",
    "param_count", "flops_fwd_per_sample", "flops_train_per_sample", "flops_train_per_batch",
    "flops_fwd_per_token", "flops_train_per_seq", "param_bytes", "optimizer_state_bytes",
    "master_param_bytes", "total_state_bytes", "act_bytes_per_sample", "act_bytes_per_sample_proxy",
    "act_bytes_per_seq_proxy", "arithmetic_intensity_train", "seq_len",
)  # fmt: skip
# bf16 runs at the 16-bit tensor peak here
_PRECISIONS = {"32": 32, "fp32": 32, "float32": 32, "16": 16, "fp16": 16, "float16": 16, "amp": 16,
               "bf16": 16, "bfloat16": 16}  # fmt: skip
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def check_input(frame: pd.DataFrame) -> pd.DataFrame:
    """Refuse, with the row and the value, what no prediction should be made from: an unknown
    precision or optimizer, negative or infinite spec and feature columns, a batch size that is
    not a positive integer. Empty cells stay empty (those rows get an `error`)."""
    from chronos_core.catalog.optimizers import Optimizers

    frame = frame.reset_index(drop=True).copy()
    for col in _POSITIVE:
        if col in frame:
            frame[col] = v.numeric_column(frame, col, v.positive_float)
    for col in _NON_NEGATIVE:
        if col in frame:
            frame[col] = v.numeric_column(frame, col, v.non_negative_float)
    if "batch_size" in frame:
        frame["batch_size"] = v.numeric_column(frame, "batch_size", v.positive_int)
    if "precision" in frame:
        given = frame["precision"].tolist()
        cells = [None if _empty(c) else str(c).strip().lower().removesuffix(".0") for c in given]
        for i, cell in enumerate(cells):
            if cell is not None and cell not in _PRECISIONS:
                raise ChronosError(
                    f"row {i + 1}: unknown precision {given[i]!r}. Accepted: 32, 16 (AMP "
                    "fp16), bf16, fp32, fp16, amp"
                )
        frame["precision"] = [np.nan if c is None else _PRECISIONS[c] for c in cells]
    for col in ("amp", "amp_enabled"):
        if col in frame:
            given = frame[col].tolist()
            cells = [None if _empty(c) else str(c).strip().lower().removesuffix(".0") for c in given]
            for i, cell in enumerate(cells):
                if cell is not None and cell not in _BOOLS:
                    raise ChronosError(f"row {i + 1}: {col} must be True or False, got {given[i]!r}")
            frame[col] = [False if c is None else _BOOLS[c] for c in cells]
    if "optimizer" in frame:
        known = [*Optimizers.names(), "RMSprop"]
        for i, cell in enumerate(frame["optimizer"].tolist()):
            if not _empty(cell) and Optimizers.resolve(str(cell)) is None and str(cell).lower() != "rmsprop":
                raise ChronosError(f"row {i + 1}: unknown optimizer {cell!r}. Accepted: {', '.join(known)}")
    return frame


def _empty(cell: object) -> bool:
    return cell is None or (isinstance(cell, float) and np.isnan(cell)) or str(cell).strip() == ""


def _guess_source(frame: pd.DataFrame) -> str:
    cols = set(frame.columns)
    if cols & {"flops_fwd_per_token", "d_model", "n_heads"}:
        return "chronos-time-transformer"
    if cols & {"token_mlp_dim", "channel_mlp_dim", "avg_loader_ms"}:
        return "chronos-time-mlp"
    return "chronos-time-cnn"


def to_canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """Input rows (canonical or CHRONOS epoch-time schema) -> canonical time rows, same order and length."""
    if not any(c in frame.columns for c in _TECHPOWERUP):
        return frame.reset_index(drop=True)
    from chronos_core.data.adapters import adapt_chronos_time

    raw = frame.drop(columns=[c for c in _MEASURED if c in frame.columns]).copy()
    raw["avg_batch_time_ms"] = np.nan
    for col, default in (("precision", 32), ("amp_enabled", False), ("gpu_name", "")):
        if col not in raw and not (col == "amp_enabled" and "amp" in raw):
            raw[col] = default
    raw["precision"] = pd.to_numeric(raw["precision"], errors="coerce").fillna(32)
    try:
        out = adapt_chronos_time(raw, _guess_source(raw))
    except (KeyError, ValueError, TypeError) as exc:
        raise ChronosError(f"Input rows are not in the CHRONOS epoch-time schema: {exc}") from None
    if "family" in frame:
        out["family"] = frame["family"].to_numpy()
    return out


def row_errors(canonical: pd.DataFrame) -> pd.Series:
    """Why each row cannot be predicted ('' when it can)."""
    from chronos_core.predict.physics import _col, flops_per_batch, physics_frame

    errors = pd.Series("", index=canonical.index, dtype=object)
    batch = _col(canonical, "batch_size")
    errors[~(batch > 0)] = "batch_size missing or not positive"
    flops = flops_per_batch(canonical)
    errors[(errors == "") & ~(flops > 0)] = (
        "no FLOPs column (flops_train_per_batch, flops_train_per_sample or flops_fwd_per_sample)"
    )
    phys = physics_frame(canonical)
    no_bandwidth = ~np.isfinite(phys["log_t_mem_ms"]) & (phys["is_cpu"] != 1)  # CPUs: bandwidth unknown
    bad_dev = ~np.isfinite(phys["peak_tflops"]) | no_bandwidth
    errors[(errors == "") & bad_dev] = (
        "GPU not in the catalog and its spec columns (gpu_fp32_tflops, gpu_mem_bandwidth_gbs) are missing"
    )
    return errors


def predict_rows(frame: pd.DataFrame, model: object | None = None) -> pd.DataFrame:
    """The input rows with prediction columns and `error` appended (unpredictable rows get NaN)."""
    from chronos_core.predict.time_models import default_model

    canonical = to_canonical(frame)
    errors = row_errors(canonical)
    preds = pd.DataFrame(np.nan, index=canonical.index, columns=list(PRED_COLUMNS))
    ok = (errors == "").to_numpy()
    if ok.any():
        model = model or default_model()
        got = model.predict(canonical[ok])
        preds.loc[ok, list(PRED_COLUMNS)] = got[list(PRED_COLUMNS)].to_numpy()
        failed = ok & ~np.isfinite(preds["pred_batch_time_ms"].to_numpy())
        errors[failed] = "model returned no prediction (features out of range)"
        preds.loc[failed, :] = np.nan
    out = frame.reset_index(drop=True).copy()
    for c in PRED_COLUMNS:
        out[c] = preds[c].to_numpy()
    out["error"] = errors.to_numpy()
    return out


def _cmd_predict_time(args: argparse.Namespace) -> int:
    text = v.read_csv(args.input)  # the cells as given, written back unchanged (256 stays 256)
    frame = check_input(v.read_csv(args.input, as_text=False))
    output = v.output_path(args.output)
    model = None
    if args.refit:
        from chronos_core.predict.time_models import default_model

        model = default_model(refit=True)
    result = predict_rows(frame, model)
    out = text.copy()
    for col in (*PRED_COLUMNS, "error"):
        out[col] = result[col].to_numpy()
    out.to_csv(output, index=False)
    predicted = int((result["error"] == "").sum())
    log.info("wrote %d rows to %s (%d without prediction)", len(out), output, len(out) - predicted)
    print(v.summary_line("predict-time", len(out), predicted, output) + _failed_note(result))
    return 0


def _failed_note(result: pd.DataFrame) -> str:
    errors = result.loc[result["error"] != "", "error"]
    if errors.empty:
        return ""
    first = int(errors.index[0]) + 1
    return f" (first failure, row {first}: {errors.iloc[0]}; see the error column)"


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `predict-time` verb."""
    p = sub.add_parser(
        "predict-time",
        help="predict iteration time (compute + loader, 80%% interval) for rows of a CSV",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument(
        "--input", required=True, help="CSV of configurations (canonical or CHRONOS epoch-time columns)"
    )
    p.add_argument(
        "--output", required=True, help="CSV to write: the input rows plus pred_* and error columns"
    )
    p.add_argument("--refit", action="store_true", help="fit the model again instead of using the cached fit")
    p.set_defaults(func=_cmd_predict_time)
