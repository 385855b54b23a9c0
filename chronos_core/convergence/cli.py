"""`chronos predict-epochs --input IN.csv --output OUT.csv`: epochs to convergence for many runs at once.

IN.csv holds rows in the CAPE_Dataset / CHRONOS convergence schema (without T_conv, T_80close,
T_90close; present targets are ignored). When a `val_loss_prefix` column holds a JSON list of the
first k validation losses, the prediction uses it (losses after a NaN/inf, i.e. after the run
diverged, are ignored; anything that is not a list of non-negative numbers is an error).
OUT.csv repeats the input and adds pred_T_conv, pred_T_conv_lo, pred_T_conv_hi (an 80% interval):
with the default curve-prior model, the epochs the run lasts, min(T_conv, max_epochs).
"""

from __future__ import annotations

import argparse

import pandas as pd

from chronos_core import validation as v
from chronos_core.errors import ChronosError

REQUIRED = ("param_count", "learning_rate", "batch_size", "optimizer")
RECOMMENDED = (
    "dataset_size",
    "gradient_norm_log10",
    "initial_loss_log10",
    "patience_P",
    "min_delta",
    "max_epochs",
)
_RENAMES = {"architecture": "family", "patience_P": "patience", "max_epochs_used": "max_epochs"}
_DEFAULTS = {"patience": 5, "min_delta": 1e-4, "max_epochs": 200}
_NUMBERS = {  # column -> the check every non-empty cell must pass (rows named in the error)
    "param_count": v.positive_float,
    "learning_rate": v.positive_float,
    "batch_size": v.positive_int,
    "patience": v.positive_int,
    "min_delta": v.non_negative_float,
    "max_epochs": v.positive_int,
    "dataset_size": v.positive_int,
    "num_classes": v.positive_int,
    "gradient_norm_log10": v.finite_float,
    "initial_loss_log10": v.finite_float,
    "ntk_trace_proxy_log10": v.finite_float,
}
OPTIMIZERS = ("SGD", "SGD-momentum", "Adam", "AdamW", "Adafactor", "RMSprop")


def _opt_key(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def canonical_input(raw: pd.DataFrame) -> pd.DataFrame:
    """Input rows -> the columns the convergence models read (renames CAPE/CHRONOS names, checks values)."""
    from chronos_core.convergence.data import parse_prefix

    frame = raw.rename(columns={k: v for k, v in _RENAMES.items() if k in raw and v not in raw})
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise ChronosError(
            f"Input lacks required columns {missing}; expected the CAPE_Dataset/CHRONOS convergence schema "
            f"(required: {', '.join(REQUIRED)}; recommended: {', '.join(RECOMMENDED)})"
        )
    for col, check in _NUMBERS.items():
        if col in frame:  # required columns must be filled; optional empty cells take the default
            values = v.numeric_column(frame, col, check, missing_ok=col not in REQUIRED)
            frame[col] = values.fillna(_DEFAULTS[col]) if col in _DEFAULTS else values
        elif col in _DEFAULTS:
            frame[col] = _DEFAULTS[col]
    frame["optimizer"] = v.text_column(frame, "optimizer", OPTIMIZERS, key=_opt_key)
    if any(o is None for o in frame["optimizer"]):
        row = next(i for i, o in enumerate(frame["optimizer"]) if o is None) + 1
        raise ChronosError(f"row {row}: optimizer is empty; accepted: {', '.join(OPTIMIZERS)}")
    if "num_classes" not in frame and "dataset" in frame:
        from chronos_core.catalog.datasets import Datasets

        frame["num_classes"] = [
            Datasets.get(d).num_classes if d in Datasets else float("nan") for d in frame["dataset"]
        ]
    if "val_loss_prefix" in frame:
        parsed = []
        for i, value in enumerate(frame["val_loss_prefix"]):
            where = f"row {i + 1}: val_loss_prefix"
            parsed.append(parse_prefix(value, where=where, truncate_nonfinite=True))
        frame["val_loss_prefix"] = parsed
    return frame.drop(columns=[c for c in ("T_conv", "T_80close", "T_90close") if c in frame])


MODELS = ("curve_prior", "xgb")


def predict_epochs_frame(raw: pd.DataFrame, refit: bool = False, model: str = "curve_prior") -> pd.DataFrame:
    """The input rows plus pred_T_conv, pred_T_conv_lo, pred_T_conv_hi.

    model: "curve_prior" (default: zero-shot prior + curve PFN, capped at max_epochs) or "xgb" (the
    earlier zero-shot XGBoost + learned prefix model).
    """
    if model not in MODELS:
        raise ChronosError(f"Unknown model {model!r}. Known: {', '.join(MODELS)}")
    frame = canonical_input(raw)
    if model == "curve_prior":
        from chronos_core.convergence.curve_prior import default_curve_prior

        out = default_curve_prior(refit=refit).predict(frame, k=None)
    else:
        from chronos_core.convergence.models import default_predictor

        out = default_predictor(refit=refit).predict(frame, k=None)
    result = raw.copy()
    result["pred_T_conv"] = out["pred"].round(2).to_numpy()
    result["pred_T_conv_lo"] = out["lo"].round(2).to_numpy()
    result["pred_T_conv_hi"] = out["hi"].round(2).to_numpy()
    return result


def _cmd_predict_epochs(args: argparse.Namespace) -> int:
    text = v.read_csv(args.input)  # the cells as given, written back unchanged (256 stays 256)
    raw = v.read_csv(args.input, as_text=False)
    output = v.output_path(args.output)
    result = predict_epochs_frame(raw, refit=args.refit, model=args.model)
    out = text.copy()
    for col in ("pred_T_conv", "pred_T_conv_lo", "pred_T_conv_hi"):
        out[col] = result[col].to_numpy()
    out.to_csv(output, index=False)
    predicted = int(result["pred_T_conv"].notna().sum())
    print(v.summary_line("predict-epochs", len(out), predicted, output))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `predict-epochs`."""
    p = sub.add_parser(
        "predict-epochs",
        help="epochs to convergence for rows of a CSV (CAPE/CHRONOS convergence schema)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--input", required=True, help="CSV in the CAPE_Dataset/CHRONOS convergence schema")
    p.add_argument("--output", required=True, help="where to write the input plus pred_T_conv[_lo|_hi]")
    p.add_argument("--refit", action="store_true", help="retrain the cached model on all data first")
    p.add_argument(
        "--model",
        choices=MODELS,
        default="curve_prior",
        help="curve_prior (default: learned curve prior conditioned on the zero-shot prediction) or xgb",
    )
    p.set_defaults(func=_cmd_predict_epochs)
