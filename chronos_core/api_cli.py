"""`chronos predict` (one run) and `chronos compare` (the same run across GPUs) on the command line.

    chronos predict --model vgg16 --dataset cifar100 --gpu T4 --batch-size 32 --precision 16 \\
        --optimizer sgd --lr 0.001 [--json]
    chronos compare --model vgg16 --dataset cifar100 --gpu T4 --gpu A100 --gpu H100 [--json]
    chronos predict --model hf:gpt2-large --dataset wikitext-103 --seq-len 1024 --batch-size 8 \
        --precision bf16 --optimizer adamw --gpu H100-SXM
    chronos predict --model timm:vit_base_patch16_224 --dataset imagenet --batch-size 128 --gpu A100

`--model` takes a zoo name, `hf:NAME` (a shipped Hugging Face config; gpt2, gpt2-large, bert-large
also without the prefix), a path to any config.json, or `timm:NAME`: all built on the meta device,
no weights downloaded. Text runs also print tokens/s; which time model answered is printed too.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

from chronos_core.validation import arg, finite_float, non_negative_float, positive_float, positive_int


def loss_list(name: str, text: str) -> list[float]:
    """'4.2,3.6,3.3' (commas or spaces) -> finite losses, else one line naming the bad entry."""
    from chronos_core.errors import ChronosError

    parts = [part for part in text.replace(",", " ").split() if part]
    if not parts:
        raise ChronosError(f"{name}: give the finished epochs' validation losses, e.g. 4.2,3.6,3.3")
    values = []
    for i, part in enumerate(parts):
        try:
            value = float(part)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ChronosError(f"{name}: entry {i + 1} {part!r} is not a finite number (e.g. 4.2,3.6,3.3)")
        values.append(value)
    return values


def _predictor(args: argparse.Namespace, gpu: str):
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no library chatter on the terminal
    from chronos_core.api import TrainingTimePredictor

    return TrainingTimePredictor(
        model=args.model, dataset=args.dataset, optimizer=args.optimizer, batch_size=args.batch_size,
        learning_rate=args.lr, precision=args.precision, gpu=gpu, patience=args.patience,
        min_delta=args.min_delta, max_epochs=args.max_epochs, momentum=args.momentum,
        measure=not args.no_measure, host=args.host, seq_len=args.seq_len, num_gpus=args.num_gpus,
        parallel=args.parallel, microbatches=args.microbatches,
    )  # fmt: skip


def _hours(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def _money(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"${value:,.2f}"


_SCHEME_NAMES = {"dp": " (data parallel)", "tp": " (tensor parallel)", "pp": " (pipeline parallel)"}


def format_summary(s: dict[str, Any]) -> str:
    """The human-readable block `chronos predict` prints."""
    e, n, t = s["epoch_time_s"], s["epochs"], s["total_time_s"]
    seq = f", seq_len {s['seq_len']}" if s.get("seq_len") is not None else ""
    gpus = f"{s['num_gpus']} x " if s.get("num_gpus", 1) > 1 else ""
    scheme = _SCHEME_NAMES.get(s.get("parallel", "dp"), "") if s.get("num_gpus", 1) > 1 else ""
    chunks = f", {s['microbatches']} micro-batches" if s.get("microbatches", 1) > 1 else ""
    where = f"{gpus}{s['gpu']}{scheme}{chunks}"
    per_gpu = f" per GPU, {s['num_gpus']} GPUs" if s.get("num_gpus", 1) > 1 else ""
    lines = [
        f"{s['model']} on {s['dataset']}, {where}: batch {s['batch_size']}{seq}, precision "
        f"{s['precision']}, {s['optimizer']} lr {s['learning_rate']:g}  ({s['steps_per_epoch']} "
        f"steps/epoch, time {s['time_source']})",
    ]
    it = s.get("iteration_time_ms")
    if it is not None:
        lines.append(f"  iteration    {it['value']:10.2f} ms     80%: {it['lo']:.2f} .. {it['hi']:.2f} ms")
    tok = s.get("tokens_per_s")
    if tok is not None:
        lines.append(
            f"  throughput   {tok['value']:10,.0f} tokens/s  80%: {tok['lo']:,.0f} .. {tok['hi']:,.0f}"
        )
    lines += [
        f"  epoch time   {e['value']:10.2f} s      80%: {e['lo']:.2f} .. {e['hi']:.2f} s",
        f"  epochs       {n['value']:10.1f}        80%: {n['lo']:.1f} .. {n['hi']:.1f}",
        f"  total time   {_hours(t['value']):>12}    80%: {_hours(t['lo'])} .. {_hours(t['hi'])}",
        f"  cost         {_money(t['cost_usd']):>12}    80%: {_money(t['cost_usd_lo'])} .. "
        f"{_money(t['cost_usd_hi'])}  (price/hr {_money(s['price_per_hr_usd'])}{per_gpu})",
    ]
    if s.get("peak_memory_gb") is not None:
        lines.append(f"  memory       {s['peak_memory_gb']:10.1f} GB peak (predicted), the GPU has "
                     f"{s['gpu_memory_gb']:g} GB")  # fmt: skip
    if s.get("time_model"):
        lines.append(f"  time model   {s['time_model']}")
    run = s.get("running")
    if run:
        if run["finished"]:
            lines.append(f"  running job  early stopping fired within the {run['epochs_seen']} epochs seen")
        else:
            r, rt, rc = run["remaining_epochs"], run["remaining_time_s"], run["remaining_cost_usd"]
            lines += [
                f"  running job  after {run['epochs_seen']} epochs seen: {r['value']:.1f} more epochs "
                f"(80%: {r['lo']:.1f} .. {r['hi']:.1f})",
                f"               {_hours(rt['value'])} more (80%: {_hours(rt['lo'])} .. {_hours(rt['hi'])}), "
                f"{_money(rc['value'])} (80%: {_money(rc['lo'])} .. {_money(rc['hi'])})",
            ]
    return "\n".join(lines)


_REQUEST_FIELDS = ("model", "dataset", "seq_len", "batch_size", "precision", "optimizer", "momentum", "lr",
                   "patience", "min_delta", "max_epochs", "no_measure", "host",
                   "observed_val_loss", "num_gpus", "parallel", "microbatches")  # fmt: skip


def _answer(args: argparse.Namespace, gpu: str) -> dict[str, Any]:
    """{"summary": ...} or {"does_not_fit": line, "need_gb", "have_gb"} for one GPU, from the disk cache
    of answers already given when the same request was answered by the same code and data
    (`chronos_core.prediction_cache`: no torch, no xgboost); a run on this machine's CPU is never reused."""
    from chronos_core.prediction_cache import cached, file_digest

    def compute() -> dict[str, Any]:
        from chronos_core.api import DoesNotFit

        try:
            predictor = _predictor(args, gpu)
            answer = {"summary": predictor.summary()}
            if getattr(args, "observed_val_loss", None):
                answer["summary"]["running"] = predictor.predict_remaining(args.observed_val_loss)
            return answer
        except DoesNotFit as exc:
            return {"does_not_fit": str(exc), "need_gb": exc.need_gb, "have_gb": exc.have_gb}

    on_this_cpu = gpu.strip().lower() in ("cpu", "local", "localhost")  # measured, or this machine's specs
    request = {field: getattr(args, field, None) for field in _REQUEST_FIELDS} | {"gpu": gpu}
    request["model_file"] = file_digest(args.model.removeprefix("hf:"))  # a config.json: its content
    return cached("predict", request, compute, use=not (on_this_cpu or getattr(args, "no_cache", False)))


def _cmd_predict(args: argparse.Namespace) -> int:
    answer = _answer(args, args.gpu)
    if "does_not_fit" in answer:
        from chronos_core.errors import ChronosError

        raise ChronosError(answer["does_not_fit"])
    summary = answer["summary"]
    print(json.dumps(summary, indent=2, default=float) if args.json else format_summary(summary))
    return 0


def compare_table(args: argparse.Namespace):
    """One row per GPU: epoch time, epochs, total time and cost with their intervals (text runs:
    tokens/s too), predicted peak memory, whether the run fits, and the time model that answered. A
    GPU the run does not fit gets `fits` False, the reason in `note` and no times."""
    import pandas as pd

    rows = []
    for gpu in args.gpu:
        answer = _answer(args, gpu)
        if "does_not_fit" in answer:
            from chronos_core.catalog.devices import Devices

            rows.append({"gpu": Devices.resolve(gpu) or gpu, "fits": False,
                         "peak_memory_gb": answer["need_gb"], "gpu_memory_gb": answer["have_gb"],
                         "note": answer["does_not_fit"]})  # fmt: skip
            continue
        s = answer["summary"]
        e, t = s["epoch_time_s"], s["total_time_s"]
        rows.append({
            "gpu": s["gpu"], "epoch_s": e["value"], "epoch_s_lo": e["lo"], "epoch_s_hi": e["hi"],
            "epochs": s["epochs"]["value"], "total_h": t["value"] / 3600, "total_h_lo": t["lo"] / 3600,
            "total_h_hi": t["hi"] / 3600, "price_per_hr_usd": s["price_per_hr_usd"],
            "cost_usd": t["cost_usd"], "cost_usd_hi": t["cost_usd_hi"], "time_source": s["time_source"],
        })  # fmt: skip
        if "tokens_per_s" in s:
            tok = s["tokens_per_s"]
            rows[-1].update(tokens_per_s=tok["value"], tokens_per_s_lo=tok["lo"], tokens_per_s_hi=tok["hi"])
        rows[-1].update(time_model=s.get("time_model"), fits=True, peak_memory_gb=s.get("peak_memory_gb"),
                        gpu_memory_gb=s.get("gpu_memory_gb"), note="")  # fmt: skip
    return pd.DataFrame(rows)


def _cmd_compare(args: argparse.Namespace) -> int:
    table = compare_table(args)
    if args.json:
        print(table.to_json(orient="records", indent=2))
        return 0
    print(table.drop(columns="note").to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    for note in table.loc[~table["fits"].astype(bool), "note"]:
        print(f"  {note}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        required=True,
        help="zoo model (vgg16, resnet50, vit, distilbert), hf:NAME (gpt2, gpt2-large, bert-base-uncased, "
        "t5-small, ...), a path to a Hugging Face config.json, or timm:NAME (timm:vit_base_patch16_224)",
    )
    p.add_argument(
        "--dataset", required=True, help="e.g. cifar10, cifar100, imagenet, sst2, wikitext-103, openwebtext"
    )
    p.add_argument(
        "--seq-len",
        type=arg(positive_int, "--seq-len"),
        default=None,
        help="tokens per sequence for text datasets (default: the dataset's, capped at the model's)",
    )
    p.add_argument(
        "--batch-size", type=arg(positive_int, "--batch-size"), default=32, help="the global batch"
    )
    p.add_argument(
        "--num-gpus",
        type=arg(positive_int, "--num-gpus"),
        default=1,
        help="GPUs of one node (1-8); the cost counts all",
    )
    p.add_argument(
        "--parallel",
        default="dp",
        help="how the GPUs split the run: dp (data, each runs batch-size / num-gpus), tp (tensor, "
        "Megatron-LM; Hugging Face transformers), pp (pipeline, GPipe)",
    )
    p.add_argument(
        "--microbatches",
        type=arg(positive_int, "--microbatches"),
        default=None,
        help="micro-batches per step under --parallel pp (default 1, GPipe's)",
    )
    p.add_argument("--precision", default="32", help="32, 16 (AMP fp16) or bf16")
    p.add_argument("--optimizer", default="SGD", help="SGD, Adam, AdamW, Adafactor (SGD: momentum 0.9)")
    p.add_argument(
        "--momentum",
        type=arg(finite_float, "--momentum"),
        default=None,
        help="SGD momentum (0 for plain SGD)",
    )
    p.add_argument("--lr", type=arg(positive_float, "--lr"), default=1e-3, help="learning rate")
    p.add_argument(
        "--patience", type=arg(positive_int, "--patience"), default=5, help="early-stopping patience (epochs)"
    )
    p.add_argument(
        "--min-delta",
        type=arg(non_negative_float, "--min-delta"),
        default=1e-4,
        help="early-stopping min_delta",
    )
    p.add_argument(
        "--max-epochs",
        type=arg(positive_int, "--max-epochs"),
        default=200,
        help="cap on the number of epochs",
    )
    p.add_argument("--no-measure", action="store_true", help="on --gpu cpu: predict instead of measuring")
    p.add_argument("--host", default=None, help="cloud of the GPU's host (RunPod, GCP): sets the loader wait")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--no-cache", action="store_true", help="compute afresh instead of reusing an answer already given"
    )


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register `predict` and `compare`."""
    p = sub.add_parser("predict", help="epoch time, epochs, total time and cost of one run (80%% intervals)")
    _common(p)
    p.add_argument(
        "--gpu", default="cpu", help="catalog GPU (any common spelling, see `chronos devices`) or cpu"
    )
    p.add_argument(
        "--observed-val-loss",
        type=arg(loss_list, "--observed-val-loss"),
        default=None,
        help="a running job: validation losses of its finished epochs (4.2,3.6,3.3) -> epochs, time and "
        "cost still to come",
    )
    p.set_defaults(func=_cmd_predict)
    c = sub.add_parser("compare", help="the same run across GPUs: time, cost and intervals in a table")
    _common(c)
    c.add_argument("--gpu", action="append", required=True, help="repeat: --gpu T4 --gpu A100 --gpu H100")
    c.set_defaults(func=_cmd_compare)
