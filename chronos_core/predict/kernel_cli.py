"""`predict-ops` and `predict-step`: the kernel-level time model from the command line.

    python -m chronos_core predict-ops --input IN.csv --output OUT.csv
    python -m chronos_core predict-step --input IN.csv --output OUT.csv

predict-ops: rows in NeuSight's kernel schema (OPName, Device as nvidia-smi prints it, shape
columns B,M,N,K or B,H or the conv ones, optional dtype fp32/tf32/fp16/bf16; fp32 = TF32 off).
OUT repeats every row and adds pred_latency_ms (ms per call) and `error`.

predict-step: columns model, batch_size, seq_len or input_shape, precision (fp32, tf32, amp, bf16),
optimizer (none, sgd, adam, adamw), mode (train, inference), gpu, optional attn_implementation
(eager, sdpa; default sdpa), optional num_gpus (1-8 GPUs of one node; batch_size is the global
batch), optional parallel (dp: data parallel, the default; tp: Megatron-LM tensor parallel, Hugging
Face transformers only; pp: GPipe pipeline parallel) and microbatches (pp only; default 1). OUT adds
pred_forward_ms, pred_backward_ms, pred_optimizer_ms, pred_overhead_ms, pred_step_ms,
pred_step_ms_lo, pred_step_ms_hi (80%) and `error`; with num_gpus or parallel also pred_comm_ms (the
communication on the critical path, included in pred_step_ms).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from chronos_core.errors import ChronosError
from chronos_core.validation import output_path, read_csv, summary_line

STEP_OUTPUTS = (
    "pred_forward_ms",
    "pred_backward_ms",
    "pred_optimizer_ms",
    "pred_overhead_ms",
    "pred_step_ms",
    "pred_step_ms_lo",
    "pred_step_ms_hi",
)
STEP_REQUIRED = ("model", "batch_size", "precision", "optimizer", "mode", "gpu")


def write_output(frame: pd.DataFrame, path: Path) -> None:
    """Write atomically (temporary file, then rename): a crash never leaves a torn table."""
    tmp = path.with_name(f".{path.name}.part")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


def predict_ops_frame(frame: pd.DataFrame, model: object | None = None) -> pd.DataFrame:
    """Input rows + pred_latency_ms + error."""
    from chronos_core.predict.kernels import ops_frame, row_errors

    if "OPName" not in frame or "Device" not in frame:
        missing = [c for c in ("OPName", "Device") if c not in frame]
        raise ChronosError(
            f"predict-ops input lacks column(s) {', '.join(missing)} (NeuSight's kernel schema)"
        )
    rows = ops_frame(frame)
    errors = row_errors(rows)
    ok = np.array([e == "" for e in errors])
    pred = np.full(len(rows), np.nan)
    if ok.any():
        if model is None:
            from chronos_core.predict.kernel_default import default_kernel_model

            model = default_kernel_model()
        pred[ok] = model.predict(rows[ok].fillna({"stride": 1, "padding": 0}))
    out = frame.copy()
    out["pred_latency_ms"] = pred
    out["error"] = errors
    return out


def _summary(verb: str, out: pd.DataFrame, path: Path) -> None:
    print(summary_line(verb, len(out), int((out["error"] == "").sum()), path))


def _cmd_predict_ops(args: argparse.Namespace) -> int:
    output = output_path(args.output)
    out = predict_ops_frame(read_csv(args.input))
    write_output(out, output)
    _summary("predict-ops", out, output)
    return 0


def _parse_shape(text: object) -> tuple[int, ...] | None:
    if text is None or (isinstance(text, float) and math.isnan(text)) or str(text).strip() == "":
        return None
    parts = str(text).replace("x", ",").replace("(", "").replace(")", "").replace(" ", "").split(",")
    try:
        return tuple(int(p) for p in parts if p)
    except ValueError:
        raise ChronosError(f"input_shape {text!r} must be whole numbers like 3x224x224") from None


def _optional(row: pd.Series, key: str) -> object:
    """A cell's value, None where the column is absent or the cell empty."""
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return None if str(value).strip().lower() in ("", "nan", "none") else value


def step_config(row: pd.Series) -> dict[str, object]:
    """One predict-step input row as `trace_config` arguments (ChronosError naming a bad value)."""
    seq = _optional(row, "seq_len")
    return {
        "model": str(row["model"]),
        "gpu": str(row["gpu"]),
        "batch_size": _int("batch_size", row["batch_size"]),
        "seq_len": None if seq is None else _int("seq_len", seq),
        "input_shape": _parse_shape(_optional(row, "input_shape")),
        "precision": str(row["precision"]).strip().lower(),
        "optimizer": str(row["optimizer"]).strip().lower(),
        "mode": str(row["mode"]).strip().lower(),
        "attn_implementation": str(_optional(row, "attn_implementation") or "sdpa").strip().lower(),
    }


def _int(name: str, value: object) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ChronosError(f"{name} {value!r} is not a number") from None
    if not number.is_integer() or number <= 0:
        raise ChronosError(f"{name} {value!r} must be a positive integer")
    return int(number)


def predict_step_frame(
    frame: pd.DataFrame, model: object | None = None, progress: bool = False
) -> pd.DataFrame:
    """Input rows + the step prediction columns + error."""
    missing = [c for c in STEP_REQUIRED if c not in frame]
    if missing:
        raise ChronosError(
            f"predict-step input lacks column(s) {', '.join(missing)}; required: {', '.join(STEP_REQUIRED)}"
        )
    if model is None:
        from chronos_core.predict.kernel_default import default_kernel_model

        model = default_kernel_model()
    from chronos_core.catalog.devices import Devices
    from chronos_core.predict import parallel as par
    from chronos_core.predict.step import predict_steps, trace_config

    multi = "num_gpus" in frame or "parallel" in frame
    outputs = STEP_OUTPUTS + (("pred_comm_ms",) if multi else ())
    results = np.full((len(frame), len(outputs)), np.nan)
    errors = [""] * len(frame)
    traced, where, plans = [], [], []
    rows = frame.iterrows()
    if progress and len(frame) > 20:
        from tqdm.auto import tqdm

        rows = tqdm(rows, total=len(frame), desc="predict-step: tracing")
    unique: dict[str, int] = {}  # identical configurations are traced and priced once
    graphs: dict[str, pd.DataFrame] = {}  # and one configuration on many GPUs is one graph
    for i, (_, row) in enumerate(rows):
        try:
            config = step_config(row)
            scheme, n, m = _parallel_plan(row, int(config["batch_size"]))
            config["batch_size"] = par.per_gpu_batch(int(config["batch_size"]), scheme, n, m)
            if n > 1 and (config["mode"] == "train" or scheme != "dp"):
                par.link_gbs(str(config["gpu"]))  # a GPU whose interconnect nobody knows: this row fails
            key = json.dumps([config, scheme, n, m], sort_keys=True, default=str)
            if key not in unique:
                graph = json.dumps({k: v for k, v in config.items() if k != "gpu"}, sort_keys=True)
                if graph not in graphs:
                    graphs[graph] = trace_config(**config)[0]
                shard = json.dumps([graph, n]) if scheme == "tp" and n > 1 else graph  # what each GPU runs
                if shard not in graphs:
                    graphs[shard] = par.per_gpu_graph(graphs[graph], scheme, n)
                unique[key] = len(traced)
                traced.append((graphs[shard], Devices.get(str(config["gpu"])).name))
                # inference replicas never talk
                plans.append((scheme, n if config["mode"] == "train" or scheme != "dp" else 1, m))
            where.append((i, unique[key]))
        except ChronosError as exc:
            errors[i] = str(exc)
        except Exception as exc:  # noqa: BLE001 - a model the tracer cannot run: that row fails, not the batch
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            errors[i] = f"cannot trace {row['model']!r}: {why}"
    preds = predict_steps(traced, model)
    for k, ((ops, device), (scheme, n, m)) in enumerate(zip(traced, plans, strict=True)):
        preds[k] = par.on_gpus(preds[k], ops, scheme, n, m, device)
    for i, k in where:
        results[i] = [preds[k][c] for c in outputs]
    out = frame.copy()
    for j, col in enumerate(outputs):
        out[col] = results[:, j]
    out["error"] = errors
    return out


def _parallel_plan(row: pd.Series, batch_size: int) -> tuple[str, int, int]:
    """(scheme, GPUs, micro-batches) of a predict-step row; blanks: one GPU, data parallel, 1."""
    from chronos_core.predict import parallel as par

    count = _optional(row, "num_gpus")  # absent or blank: one GPU; 0 is an error, not a blank
    return par.check_plan(
        _optional(row, "parallel"),
        1 if count is None else count,
        _optional(row, "microbatches"),
        batch_size,
        pp_name="parallel pp",
        where="this row",
    )


def _cmd_predict_step(args: argparse.Namespace) -> int:
    output = output_path(args.output)
    out = predict_step_frame(read_csv(args.input), progress=True)
    write_output(out, output)
    _summary("predict-step", out, output)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `predict-ops` and `predict-step` verbs."""
    doc = __doc__.split("\n\n") if __doc__ else ["", "", "", ""]
    p = sub.add_parser("predict-ops", help="predict kernel latency (ms per call) for NeuSight-schema rows",
                       description=doc[2])  # fmt: skip
    p.add_argument("--input", required=True, help="CSV: OPName, Device, shape columns, optional dtype")
    p.add_argument("--output", required=True, help="CSV to write: the input rows + pred_latency_ms + error")
    p.set_defaults(func=_cmd_predict_ops)
    s = sub.add_parser("predict-step", help="predict one training/inference step from its traced operators",
                       description=doc[3])  # fmt: skip
    s.add_argument(
        "--input", required=True, help="CSV: model, batch_size, seq_len|input_shape, precision, ..."
    )
    s.add_argument("--output", required=True, help="CSV to write: the input rows + pred_*_ms + error")
    s.set_defaults(func=_cmd_predict_step)
