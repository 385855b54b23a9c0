"""Command-line verbs of the profiler: `measure` (one configuration), `sweep FILE`, `microbench`,
`calibrate` (a device profile of 44 kernels on a CPU, 244 on a GPU).

The main `chronos` CLI adds them with `add_parsers(sub)` (and handles errors for them).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from chronos_core import _env  # noqa: F401
from chronos_core.errors import ChronosError
from chronos_core.validation import (
    arg,
    non_negative_int,
    output_path,
    positive_float,
    positive_int,
)


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in ["chronos", *sys.argv[1:]])


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in str(text).replace("x", ",").strip("()").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an input shape like 3,32,32 or 3x32x32, got {text!r}"
        ) from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"expected positive dimensions, got {text!r}")
    return dims


def _cmd_measure_keras(args: argparse.Namespace) -> int:
    from chronos_core.profiling.keras_timer import time_keras_zoo_model

    if args.device != "cpu" and not args.device.startswith("cuda"):
        raise ChronosError(f"Keras models run on cpu or cuda here, not {args.device!r}")
    if str(args.precision).strip().lower() not in ("32", "fp32", "float32"):
        raise ChronosError(
            f"precision {args.precision!r}: Keras models are measured in fp32 only here; accepted: 32"
        )
    row = time_keras_zoo_model(
        args.model, args.dataset, args.batch_size, args.epochs, args.train_size, args.threads
    )
    if args.output:
        _append_row(args.output, row, "cpu")
    if args.json:
        print(json.dumps(row, indent=2, default=str))
        return 0
    times = ", ".join(f"{t:.2f}" for t in json.loads(row["epoch_times_json"]))
    print(
        f"{row['model']} (Keras) on {row['dataset']}, batch {row['batch_size']}, {row['train_size']} samples"
    )
    print(f"  epoch times (s): {times}; epoch 1 excluded: {row['avg_epoch_time_s']:.3f} s/epoch")
    print(f"  {row['batch_time_ms']:.2f} ms/batch, {row['images_per_sec']:.0f} samples/s")
    return 0


def _append_row(output: Path, row: dict, device: str) -> None:
    """Append one measured row to a sweep-style CSV (locked while writing) with its .json sidecar."""
    from chronos_core.profiling.environment import capture_environment, write_provenance
    from chronos_core.profiling.sweep import CsvSink, config_id, output_lock

    with output_lock(output):
        sink = CsvSink(output)
        sink.write({"config_id": config_id({"cli": _command_line()}), "status": "ok", **row})
        write_provenance(output, capture_environment(device, command=_command_line()))


def _check_device_and_precision(device: str, precision: str) -> None:
    """Refuse an unknown device or precision before any model is built or timed."""
    from chronos_core.profiling.environment import resolve_device
    from chronos_core.profiling.timers import parse_precision

    parse_precision(precision)
    resolve_device(device)


def _cmd_measure(args: argparse.Namespace) -> int:
    from chronos_core.catalog.models import Models
    from chronos_core.profiling.timers import TimingConfig, measure

    if args.output:  # checked before the measurement, so a bad path does not lose the work
        args.output = output_path(args.output)
        from chronos_core.profiling.sweep import CsvSink

        CsvSink(args.output)  # an existing file that is not a sweep table is refused now, not after
    if Models.get(args.model).framework == "keras":
        return _cmd_measure_keras(args)
    _check_device_and_precision(args.device, args.precision)
    cfg = TimingConfig(
        model=args.model,
        dataset=args.dataset,
        batch_size=args.batch_size,
        precision=args.precision,
        optimizer=args.optimizer,
        learning_rate=args.lr,
        device=args.device,
        input_shape=args.input_shape,
        repeats=args.repeats,
        warmup=args.warmup,
        iters=args.iters,
        num_workers=args.workers,
        threads=args.threads,
    )
    row = measure(cfg)
    if args.output:
        _append_row(args.output, row, args.device)
    if args.json:
        print(json.dumps(row, indent=2, default=str))
        return 0
    print(
        f"{row['model']} on {row['dataset']} {row['input_shape']}, batch {row['batch_size']}, "
        f"precision {args.precision}, {row['optimizer']}, {row['device']} ({row['threads']} threads)"
    )
    for name in ("batch_time_ms", "compute_ms", "loader_wait_ms"):
        spread = f"std {row[f'{name}_std']:.3f}, CV {100 * row[f'{name}_cv']:.1f}%"
        pcts = "/".join(f"{row[f'{name}_{p}']:.3f}" for p in ("p10", "p50", "p90"))
        print(f"  {name:>15}: {row[name]:9.3f} ms  ({spread}, p10/p50/p90 {pcts})")
    epoch_s = row["steps_per_epoch"] * row["batch_time_ms"] / 1000.0
    print(f"  over {row['n_repeats']} repeats; epoch of {row['steps_per_epoch']} steps ~ {epoch_s:.1f} s")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from chronos_core.profiling.sweep import load_sweep, run_sweep

    spec = load_sweep(args.file)
    output = output_path(
        args.output or Path("results") / "sweeps" / f"{spec.name or Path(args.file).stem}.csv",
        create_parent=not args.output,
    )
    report = run_sweep(
        spec,
        output,
        ray_address=args.ray,
        progress=not args.quiet,
        retry_failed=args.retry_failed,
        limit=args.limit,
        command=_command_line(),
    )
    print(
        f"{report.output}: {report.ran} run ({report.failed} failed), {report.skipped} already done,"
        f" {report.total} in the sweep, {report.seconds:.0f} s"
    )
    return 0


def _cmd_microbench(args: argparse.Namespace) -> int:
    from chronos_core.profiling.layers import LayerTiming, benchmark_layer, sample_layer_configs

    _check_device_and_precision(args.device, args.precision)
    configs = sample_layer_configs([args.layer], args.samples, args.seed)
    timing = LayerTiming(repeats=args.repeats)
    for cfg in configs:
        row = benchmark_layer(cfg, args.device, args.precision, timing, args.threads)
        shown = {k: v for k, v in cfg.items() if k != "layer_type"}
        print(
            f"{args.layer} {shown}: fwd {row['fwd_ms']:.3f} ms (CV {100 * row['fwd_ms_cv']:.1f}%),"
            f" train step {row['train_ms']:.3f} ms (CV {100 * row['train_ms_cv']:.1f}%),"
            f" {row['flops_fwd'] / 1e6:.1f} MFLOP fwd"
        )
    return 0


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    import time

    from chronos_core.data.device_profiles import write_profile
    from chronos_core.profiling.calibrate import calibrate, contention_note, summary_table

    start = time.perf_counter()
    frame = calibrate(
        args.device, quick=args.quick, repeats=args.repeats, threads=args.threads, command=_command_line()
    )
    device_key = str(frame["device"].iloc[0])
    path = write_profile(frame, device_key, frame.attrs["provenance"], path=args.output)
    print(summary_table(frame).to_string(index=False, formatters={"latency_ms": "{:.4f}".format}))
    note = contention_note(frame)
    if note:
        print(note, file=sys.stderr)
    seconds = time.perf_counter() - start
    print(f"calibrated {device_key}: {len(frame)} kernels in {seconds:.1f} s -> {_shown_path(path)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the `measure`, `sweep`, `microbench` and `calibrate` verbs to a `chronos` subparser set."""
    from chronos_core.profiling import LAYER_TYPES

    p = sub.add_parser("measure", help="time one training configuration on this machine (cpu, cuda, mps)")
    p.add_argument("--model", required=True, help="zoo model, e.g. resnet18, vgg16, vit, lstm")
    p.add_argument(
        "--dataset", default="CIFAR10", help="e.g. cifar10, imagenet, sst2 (synthetic tensors of its shape)"
    )
    p.add_argument("--input-shape", type=_shape, default=None, help="per-sample shape override, e.g. 3,32,32")
    p.add_argument("--batch-size", type=arg(positive_int, "--batch-size"), required=True)
    p.add_argument("--precision", default="32", help="32, 16 (AMP fp16) or bf16 (AMP bf16)")
    p.add_argument("--optimizer", default="SGD", help="SGD, SGD-momentum, Adam, AdamW, Adafactor")
    p.add_argument(
        "--lr",
        type=arg(positive_float, "--lr"),
        default=0.01,
        help="learning rate (does not change the time)",
    )
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--repeats",
        type=arg(positive_int, "--repeats"),
        default=3,
        help="blocks of timed iterations (spread across them)",
    )
    p.add_argument(
        "--warmup", type=arg(non_negative_int, "--warmup"), default=3, help="untimed iterations first"
    )
    p.add_argument(
        "--iters", type=arg(positive_int, "--iters"), default=10, help="timed iterations per repeat"
    )
    p.add_argument(
        "--workers", type=arg(non_negative_int, "--workers"), default=0, help="DataLoader worker processes"
    )
    p.add_argument(
        "--threads",
        type=arg(positive_int, "--threads"),
        default=None,
        help="torch.set_num_threads (default: leave)",
    )
    p.add_argument(
        "--epochs",
        type=arg(positive_int, "--epochs"),
        default=3,
        help="Keras models: epochs to fit (epoch 1 excluded)",
    )
    p.add_argument(
        "--train-size",
        type=arg(positive_int, "--train-size"),
        default=2048,
        help="Keras models: synthetic samples per epoch",
    )
    p.add_argument("--output", default=None, help="append the row to this CSV (with a .json sidecar)")
    p.add_argument("--json", action="store_true", help="print the whole row as JSON")
    p.set_defaults(func=_cmd_measure)

    s = sub.add_parser(
        "sweep", help="run a grid of measurements from a YAML/TOML file (resumable; --ray to fan out)"
    )
    s.add_argument("file", help="sweep file (.yaml, .yml or .toml); see sweeps/ for examples")
    s.add_argument("--output", default=None, help="CSV to append rows to (default results/sweeps/<name>.csv)")
    s.add_argument(
        "--ray", default=None, metavar="ADDRESS", help="run on a Ray cluster ('local' starts one here)"
    )
    s.add_argument("--retry-failed", action="store_true", help="run configurations that failed before again")
    s.add_argument(
        "--limit",
        type=arg(non_negative_int, "--limit"),
        default=None,
        help="run at most this many new configurations",
    )
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_sweep)

    m = sub.add_parser(
        "microbench", help="PreNeT-style microbenchmark of random configurations of one layer type"
    )
    m.add_argument("--layer", required=True, choices=LAYER_TYPES)
    m.add_argument("--samples", type=arg(positive_int, "--samples"), default=5, help="random configurations")
    m.add_argument("--seed", type=arg(non_negative_int, "--seed"), default=0)
    m.add_argument("--precision", default="32", help="32, 16 (AMP fp16) or bf16")
    m.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    m.add_argument("--repeats", type=arg(positive_int, "--repeats"), default=5, help="timed blocks per layer")
    m.add_argument(
        "--threads", type=arg(positive_int, "--threads"), default=None, help="torch.set_num_threads"
    )
    m.set_defaults(func=_cmd_microbench)

    c = sub.add_parser(
        "calibrate",
        help="time GEMMs, convolutions, elementwise, ln and softmax kernels here -> a device profile",
    )
    c.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    c.add_argument("--quick", action="store_true", help="a third of the kernels, 5 repeats (a few seconds)")
    c.add_argument("--repeats", type=int, default=None, help="timed blocks per kernel (default 10; quick 5)")
    c.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: leave)")
    c.add_argument(
        "--output",
        default=None,
        help="CSV to write (default meta_datasets/<device>/device_profile.csv; a .json sidecar beside it)",
    )
    c.set_defaults(func=_cmd_calibrate)
