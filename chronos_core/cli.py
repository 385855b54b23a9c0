"""The `chronos` command line (also `python -m chronos_core`).

Every verb is a small function taking parsed arguments; bad input surfaces as one line on
stderr (exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence

from chronos_core import _env  # noqa: F401
from chronos_core.errors import ChronosError
from chronos_core.validation import (
    arg,
    fraction,
    output_path,
    positive_float,
    positive_int,
)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (the bad value and what is accepted), exit code 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _cmd_devices(args: argparse.Namespace) -> int:
    from chronos_core.catalog.devices import Devices, device_table, format_device_table, local_cpu

    if args.json:
        table = device_table()
        rows = json.loads(table.to_json(orient="records"))
        if args.name:
            wanted = Devices.get(args.name).name  # an unknown name is one error line
            rows = [r for r in rows if r.get("name") == wanted]
        if args.cpu:
            rows.append({k: v for k, v in local_cpu().__dict__.items()})
        print(json.dumps(rows, indent=2, default=str))
        return 0
    if args.name:
        spec = Devices.get(args.name)
        for key, value in spec.__dict__.items():
            print(f"{key:>26}  {value}")
        return 0
    print(format_device_table())
    if args.cpu:
        cpu = local_cpu()
        print(f"\nlocal cpu: {cpu.name}  peak fp32 ~{cpu.peak_fp32_tflops:.2f} TFLOPS ({cpu.notes})")
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from chronos_core.data import registry

    if args.data_verb == "list":
        table = registry.sources_table()
        if args.json:
            print(table.to_json(orient="records", indent=2))
        else:
            mirror = registry.mirror_dir()
            print(f"mirror: {mirror or '(none; set CHRONOS_DATA_MIRROR)'}   cache: {registry.cache_dir()}\n")
            print(table[["name", "kind", "available", "description"]].to_string(index=False, max_colwidth=70))
        return 0
    if args.data_verb == "fetch":
        names = list(registry.SOURCES) if args.name == "all" else [args.name]
        for name in names:
            print(f"{name}: {registry.fetch(name, force=args.force)}")
        return 0
    if args.data_verb == "show":
        if registry.get_source(args.name).kind in registry.TEXT_KINDS:
            print(registry.read_text(args.name))
            return 0
        frame = registry.read(args.name)
        print(f"{args.name}: {len(frame)} rows from {registry.path(args.name)}")
        print(frame.head(args.rows).to_string())
        return 0
    raise ChronosError(f"Unknown data verb {args.data_verb!r}. Known: list, fetch, show")


def _cmd_features(args: argparse.Namespace) -> int:
    from chronos_core.features import compute_features

    feats = compute_features(args.model, args.dataset, args.batch_size, args.precision, args.optimizer)
    values = feats.as_dict() if hasattr(feats, "as_dict") else dict(feats)
    if args.json:
        print(json.dumps(values, indent=2, default=float))
    else:
        width = max(len(k) for k in values)
        for key, value in values.items():
            shown = (
                f"{value:,.6g}"
                if isinstance(value, float)
                else f"{value:,}"
                if isinstance(value, int)
                else value
            )
            print(f"{key:>{width}}  {shown}")
    return 0


def _add_devices(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("devices", help="print the GPU catalog (datasheet specs, one source per row)")
    p.add_argument("name", nargs="?", help="show one device (any common spelling, e.g. 'Tesla T4')")
    p.add_argument("--cpu", action="store_true", help="also detect and show this machine's CPU")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_devices)


def _add_data(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="public measurement tables: list, fetch, show")
    verbs = p.add_subparsers(dest="data_verb", required=True)
    lst = verbs.add_parser("list", help="registered tables and whether they are available offline")
    lst.add_argument("--json", action="store_true")
    fetch = verbs.add_parser("fetch", help="download a table (pinned commit) into the user cache")
    fetch.add_argument("name", help="a registered name, or 'all'")
    fetch.add_argument("--force", action="store_true", help="download again even if cached")
    show = verbs.add_parser("show", help="print the first rows of a table as published")
    show.add_argument("name")
    show.add_argument("--rows", type=arg(positive_int, "--rows"), default=5, help="rows to print (>= 1)")
    p.set_defaults(func=_cmd_data)


def _add_features(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="computational features (FLOPs, bytes, intensity, layer mix)")
    p.add_argument("--model", required=True, help="zoo model, e.g. resnet50, vgg16, vit, distilbert")
    p.add_argument("--dataset", required=True, help="e.g. cifar10, imagenet, sst2")
    p.add_argument("--batch-size", type=arg(positive_int, "--batch-size"), required=True)
    p.add_argument("--precision", default="32", help="32, 16 (AMP fp16) or bf16")
    p.add_argument("--optimizer", default="SGD", help="SGD, SGD-momentum, Adam, AdamW, Adafactor")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_features)


def _parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def _cmd_plan(args: argparse.Namespace) -> int:
    from chronos_core import planner

    output = output_path(args.output) if args.output else None
    request = planner.PlanRequest(
        budget_sec=args.budget_sec,
        epochs=args.epochs,
        value=args.value,
        min_acc=args.min_acc,
        time_source=args.time_source,
        budget_usd=args.budget_usd,
        use_upper_bound=args.upper_bound,
    )
    candidates = planner.candidates_for(request, args.candidates)
    plan = planner.plan_runs(candidates, request)
    if args.json:
        print(plan.chosen.to_json(orient="records", indent=2))
    else:
        print(plan.explain())
    for note in plan.warnings:
        print(f"chronos plan: warning: {note}", file=sys.stderr)
    if output is not None:
        plan.chosen.to_csv(output, index=False)
        print(f"plan: {len(plan.chosen)} of {len(plan.candidates)} candidates chosen -> {output}")
    return 0


def _add_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="choose runs under a time (and dollar) budget: exact 0/1 knapsack")
    p.add_argument(
        "--budget-sec", type=arg(positive_float, "--budget-sec"), required=True, help="time budget in seconds"
    )
    p.add_argument(
        "--budget-usd", type=arg(positive_float, "--budget-usd"), default=None, help="optional dollar budget"
    )
    p.add_argument(
        "--epochs", type=arg(positive_int, "--epochs"), default=50, help="epochs per candidate run"
    )
    p.add_argument(
        "--min-acc", type=arg(fraction, "--min-acc"), default=None, help="drop candidates below this accuracy"
    )
    p.add_argument("--value", default="acc", choices=("acc", "thr"), help="what to maximise: acc or thr")
    p.add_argument(
        "--time-source",
        default="measured",
        choices=("measured", "predicted"),
        help="measured or predicted time per epoch",
    )
    p.add_argument("--upper-bound", action="store_true", help="plan with the p80 upper time, not the point")
    p.add_argument("--candidates", default=None, help="CSV of candidates (default: the A100 project's runs)")
    p.add_argument("--output", default=None, help="also write the chosen runs to this CSV")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_plan)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from chronos_core.reproduce import reproduce

    for name, seconds in reproduce(reuse=args.reuse, selection=args.notebooks):
        print(f"{name}: ok in {seconds:.1f} s", flush=True)
    return 0


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="execute notebooks 01..08 headless with papermill")
    p.add_argument(
        "--reuse",
        type=_parse_bool,
        default=True,
        help="True: load committed results (default); False: measure again on this machine",
    )
    p.add_argument("notebooks", nargs="*", help="only these (prefix like 03 or full stem)")
    p.set_defaults(func=_cmd_reproduce)


# Verbs, in the order `chronos --help` lists them; each issue's package adds its own adder here.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_devices,
    _add_data,
    _add_features,
    _add_plan,
    _add_reproduce,
]
# verbs that live beside the code they drive; importing their modules is cheap (no torch, no tf)
EXTERNAL_VERBS = (
    "chronos_core.api_cli",  # predict, compare
    "chronos_core.profiling.cli",  # measure, sweep, microbench
    "chronos_core.predict.predict_time_cli",  # predict-time
    "chronos_core.predict.kernel_cli",  # predict-ops, predict-step
    "chronos_core.convergence.cli",  # predict-epochs
)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="chronos", description="Predict training time before training.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    for module in EXTERNAL_VERBS:
        importlib.import_module(module).add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse, dispatch, and turn ChronosError into one line on stderr."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ChronosError as exc:
        print(f"chronos: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chronos: interrupted (rows already written are kept; run a sweep again to resume)",
              file=sys.stderr)  # fmt: skip
        return 130
    except BrokenPipeError:
        return 0
