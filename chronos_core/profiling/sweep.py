"""Sweeps: a grid (or random sample) of configurations measured one by one into a CSV.

A sweep file (YAML or TOML) names the kind of measurement and its configurations:

    kind: model            # model: whole training iterations; layer: layer microbenchmarks
    mode: grid             # grid: every combination; random: `samples` points drawn from the grid
    seed: 0
    fixed: {dataset: CIFAR10, device: cpu, repeats: 3, threads: 1}
    grid:                  # a mapping, or a list of mappings (their union)
      model: [resnet18, vgg16]
      batch_size: [16, 32]

For `kind: layer` the grid spans `layer_type` and `precision`, and `samples` random layer
configurations are drawn per grid point (the same ones for every precision).

Rows are appended to the CSV as they finish (flushed), so an interrupted sweep resumes where it
stopped: configurations whose `config_id` is already in the file are skipped. Failures (out of
memory, unsupported op) become rows with status 'error' and the message, not a crash. With
`ray_address` the configurations run as Ray tasks (one GPU each where the cluster has GPUs) and
the driver writes their rows.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gc
import hashlib
import itertools
import json
import logging
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from chronos_core import validation as v
from chronos_core.errors import ChronosError, first_line, unknown_choice

log = logging.getLogger(__name__)

KINDS = ("model", "layer")
MODES = ("grid", "random")
_SPEC_KEYS = {"kind", "mode", "seed", "samples", "fixed", "grid", "name", "configs"}
_LAYER_KEYS = {"layer_type", "precision", "device", "repeats", "warmup", "iters", "threads"}
_LAYER_KEYS |= {"min_block_ms", "max_iters", "max_flops"}
STATUS_OK, STATUS_ERROR = "ok", "error"


def _model_keys() -> set[str]:
    from chronos_core.profiling.timers import TimingConfig

    return {f.name for f in dataclasses.fields(TimingConfig)}


@dataclass
class SweepSpec:
    """A sweep: what kind of measurement, the grid(s), settings shared by every point."""

    kind: str = "model"
    grid: list[dict[str, list]] = field(default_factory=list)
    fixed: dict[str, Any] = field(default_factory=dict)
    configs: list[dict[str, Any]] = field(default_factory=list)  # explicit points, beside the grid
    mode: str = "grid"
    samples: int | None = None
    seed: int = 0
    name: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise unknown_choice("sweep kind", self.kind, KINDS)
        if self.mode not in MODES:
            raise unknown_choice("sweep mode", self.mode, MODES)
        if isinstance(self.grid, dict):
            self.grid = [self.grid]
        if not isinstance(self.grid, list) or not all(isinstance(g, dict) for g in self.grid):
            raise ChronosError(
                f"Sweep {self.source or self.name!r}: 'grid' must be a mapping or a list of mappings"
            )
        if not isinstance(self.fixed, dict):
            raise ChronosError(f"Sweep {self.source or self.name!r}: 'fixed' must be a mapping")
        for grid in self.grid:
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ChronosError(
                        f"Sweep {self.source or self.name!r}: grid entry {key!r} must be a non-empty list"
                    )
        if self.samples is not None:
            self.samples = v.positive_int("sweep samples", self.samples)
        self.seed = v.non_negative_int("sweep seed", self.seed)
        if self.kind == "layer" and self.samples is None:
            raise ChronosError("A layer sweep needs 'samples' (random layer configurations per grid point)")
        if self.mode == "random" and self.kind == "model" and self.samples is None:
            raise ChronosError("A random model sweep needs 'samples' (points drawn from the grid)")
        if self.kind == "layer" and self.fixed.get("max_flops") is not None:
            v.positive_float("sweep setting max_flops", self.fixed["max_flops"])
        allowed = _LAYER_KEYS if self.kind == "layer" else _model_keys()
        used = set(self.fixed) | {k for g in self.grid for k in g} | {k for c in self.configs for k in c}
        unknown = sorted(used - allowed)
        if unknown:
            raise ChronosError(
                f"Unknown {self.kind} sweep setting(s) {', '.join(map(repr, unknown))}."
                f" Known: {', '.join(sorted(allowed))}"
            )
        if not self.grid and not self.configs:
            raise ChronosError(
                f"Sweep {self.source or self.name!r} has no 'grid' and no 'configs': nothing to run"
            )


def load_sweep(path: str | os.PathLike) -> SweepSpec:
    """Read a YAML (.yaml/.yml) or TOML (.toml) sweep file; malformed files raise one ChronosError line."""
    path = Path(path)
    if not path.is_file():
        raise ChronosError(f"Sweep file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise ChronosError(f"Sweep file {str(path)!r} must end in .yaml, .yml or .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ChronosError(f"Sweep file {str(path)!r} is malformed: {first_line(exc)}") from exc
    return sweep_from_dict(data, source=str(path))


def sweep_from_dict(data: Any, source: str = "") -> SweepSpec:
    """Build a SweepSpec from plain data (what a YAML/TOML file holds)."""
    if not isinstance(data, dict):
        raise ChronosError(
            f"Sweep {source!r} must be a mapping with kind, grid and fixed; got {type(data).__name__}"
        )
    unknown = sorted(set(data) - _SPEC_KEYS)
    if unknown:
        raise ChronosError(
            f"Unknown sweep key(s) {', '.join(map(repr, unknown))}. Known: {', '.join(sorted(_SPEC_KEYS))}"
        )
    return SweepSpec(
        kind=str(data.get("kind", "model")),
        grid=data.get("grid", []) or [],
        fixed=data.get("fixed", {}) or {},
        configs=list(data.get("configs", []) or []),
        mode=str(data.get("mode", "grid")),
        samples=data.get("samples"),
        seed=data.get("seed", 0),
        name=str(data.get("name", Path(source).stem if source else "")),
        source=source,
    )


# ------------------------------------------------------------------------------------------ expansion


def config_id(config: dict[str, Any]) -> str:
    """A stable 12-hex id of a configuration (order of keys does not matter)."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _grid_points(grid: dict[str, list]) -> Iterator[dict[str, Any]]:
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def expand(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every configuration of the sweep (fixed settings merged in), in run order, without duplicates."""
    points: list[dict[str, Any]] = [p for grid in spec.grid for p in _grid_points(grid)]
    if (
        spec.mode == "random"
        and spec.kind == "model"
        and spec.samples is not None
        and spec.samples < len(points)
    ):
        rng = np.random.default_rng(spec.seed)
        points = [points[i] for i in sorted(rng.choice(len(points), spec.samples, replace=False))]
    points += list(spec.configs)
    configs: list[dict[str, Any]] = []
    if spec.kind == "layer":
        from chronos_core.profiling.layers import MAX_FLOPS_FWD, sample_layer_configs

        max_flops = float(spec.fixed.get("max_flops", MAX_FLOPS_FWD))
        for point in points:
            merged = {**spec.fixed, **point}
            layer_type = merged.pop("layer_type", None)
            if layer_type is None:
                raise ChronosError("Every layer sweep point needs a 'layer_type'")
            for layer in sample_layer_configs([layer_type], int(spec.samples or 1), spec.seed, max_flops):
                configs.append({**merged, "layer": layer})
    else:
        configs = [{**spec.fixed, **point} for point in points]
    seen: set[str] = set()
    unique = []
    for cfg in configs:
        cid = config_id(cfg)
        if cid not in seen:
            seen.add(cid)
            unique.append(cfg)
    return unique


_LAYER_NUMBERS = {
    "repeats": v.positive_int,
    "iters": v.positive_int,
    "warmup": v.non_negative_int,
    "max_iters": v.positive_int,
    "threads": v.positive_int,
    "min_block_ms": v.non_negative_float,
    "max_flops": v.positive_float,
}


def _check_numbers(kind: str, cfg: dict[str, Any]) -> None:
    """Counts, thread numbers and seeds of one configuration (a model run is a TimingConfig)."""
    if kind == "layer":
        for key, check in _LAYER_NUMBERS.items():
            if cfg.get(key) is not None:
                check(f"sweep setting {key}", cfg[key])
        return
    from chronos_core.profiling.timers import TimingConfig

    numbers = ("batch_size", "repeats", "iters", "warmup", "num_workers", "seed", "threads", "learning_rate")
    try:
        TimingConfig(**{"model": "check", **{k: cfg[k] for k in numbers if k in cfg}})
    except ChronosError as exc:
        raise ChronosError(f"sweep setting {exc}") from None


def validate_configs(kind: str, configs: Iterable[dict[str, Any]]) -> None:
    """Fail fast, before any timing and before the CSV is touched, on names and numbers no run could
    accept (an unknown precision, threads: 0, batch_size: 2.5, ...)."""
    from chronos_core.catalog.datasets import Datasets
    from chronos_core.catalog.optimizers import Optimizers
    from chronos_core.profiling.environment import resolve_device
    from chronos_core.profiling.timers import parse_precision

    seen: set[tuple[str, str]] = set()
    for cfg in configs:
        for key, check in (
            ("precision", parse_precision),
            ("device", resolve_device),
            ("dataset", Datasets.get),
            ("optimizer", Optimizers.get),
            ("model", _check_model),
        ):
            if key in cfg and (key, str(cfg[key])) not in seen:
                seen.add((key, str(cfg[key])))
                check(cfg[key])
        _check_numbers(kind, cfg)


def _check_model(name: Any) -> None:
    try:
        from chronos_core.catalog.models import Models
    except ImportError:
        return
    Models.get(str(name))


# ------------------------------------------------------------------------------------------ running


def _error_kind(exc: BaseException) -> str:
    from chronos_core.profiling.timers import is_oom

    text = str(exc).lower()
    if is_oom(exc) or "does not fit in memory" in text:
        return "oom"
    if isinstance(exc, NotImplementedError) or any(
        m in text for m in ("not implemented", "not supported", "unsupported", "primitive descriptor")
    ):
        return "unsupported"
    return "error"


def _config_columns(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """The configuration as table columns (precision as bits/amp/amp_dtype like the measured rows)."""
    from chronos_core.profiling.timers import parse_precision

    cols = dict(cfg.get("layer", {})) if kind == "layer" else {}
    cols.update({k: v for k, v in cfg.items() if k != "layer"})
    if "precision" in cols:
        try:
            prec = parse_precision(cols["precision"])
            cols.update(precision=prec.bits, amp=prec.amp, amp_dtype=prec.amp_dtype)
        except ChronosError:
            pass
    if "input_shape" in cols and cols["input_shape"] is not None:
        cols["input_shape"] = str(tuple(cols["input_shape"]))
    return cols


def run_config(kind: str, cfg: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration into a row; failures become an error row (never raises, but Ctrl-C)."""
    start = time.perf_counter()
    base = {"config_id": config_id(cfg), "config_json": json.dumps(cfg, sort_keys=True, default=str)}
    try:
        if kind == "layer":
            from chronos_core.profiling.layers import LayerTiming, benchmark_layer

            timing_keys = {f.name for f in dataclasses.fields(LayerTiming)}
            timing = LayerTiming(**{k: cfg[k] for k in timing_keys if k in cfg})
            result = benchmark_layer(
                cfg["layer"],
                cfg.get("device", "cpu"),
                str(cfg.get("precision", "32")),
                timing,
                cfg.get("threads"),
            )
        else:
            from chronos_core.profiling.timers import TimingConfig, measure

            settings = dict(cfg)
            if settings.get("input_shape") is not None:
                settings["input_shape"] = tuple(settings["input_shape"])
            result = measure(TimingConfig(**settings))
        row = {
            **base,
            "status": STATUS_OK,
            "error_kind": "",
            "error": "",
            **_config_columns(kind, cfg),
            **result,
        }
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is recorded as a row
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        row = {
            **base,
            "status": STATUS_ERROR,
            "error_kind": _error_kind(exc),
            "error": f"{type(exc).__name__}: {message}",
            **_config_columns(kind, cfg),
        }
    finally:
        gc.collect()
    row["elapsed_s"] = round(time.perf_counter() - start, 3)
    return row


def _warn(message: str) -> None:
    """One warning line on stderr (and in the log)."""
    log.warning(message)
    print(f"chronos: warning: {message}", file=sys.stderr)


class CsvSink:
    """Append-only CSV of rows whose header grows when new columns appear (atomic rewrite then).

    Every row is flushed and fsynced. A row torn by a crash mid-write (no final newline, or the
    wrong number of fields) is cut off when the table is opened again, with a one-line warning,
    so the table stays readable and the torn configuration runs again.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.columns: list[str] = []
        self.n_rows = 0
        if self.path.exists() and self.path.stat().st_size > 0:
            self._repair_torn_tail()
            with self.path.open(newline="") as fh:
                reader = csv.reader(fh)
                self.columns = next(reader, [])
                if "config_id" not in self.columns:
                    raise ChronosError(
                        f"{str(self.path)!r} exists but is not a sweep table (no config_id column);"
                        " choose another --output"
                    )
                for line, rec in enumerate(reader, start=2):
                    if len(rec) != len(self.columns):
                        raise ChronosError(
                            f"{str(self.path)!r} line {line} has {len(rec)} fields where the header has"
                            f" {len(self.columns)}; repair or move the file, or choose another --output"
                        )
                    self.n_rows += 1

    def _repair_torn_tail(self) -> None:
        """Cut a last row that a crash left incomplete (no newline or too few fields)."""
        data = self.path.read_bytes()
        keep = len(data)
        if not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
        header_end = data.find(b"\n") + 1
        if 0 < header_end < keep:  # a complete-looking last line with the wrong field count is torn too
            last_start = data.rfind(b"\n", 0, keep - 1) + 1
            header = next(csv.reader([data[:header_end].decode("utf-8", "replace")]), [])
            last = next(csv.reader([data[last_start:keep].decode("utf-8", "replace")]), [])
            if last_start >= header_end and len(last) != len(header):
                keep = last_start
        if keep == len(data) or keep < header_end or header_end == 0:
            return
        torn = data[keep:].decode("utf-8", "replace")
        with self.path.open("r+b") as fh:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        shown = torn[:60] + ("..." if len(torn) > 60 else "")
        _warn(f"{self.path}: cut a torn last row left by an interrupted write ({shown!r}); it will run again")

    def finished(self, include_errors: bool = True) -> set[str]:
        """config_ids already in the file (ok rows, plus error rows unless `include_errors` is False)."""
        if not self.n_rows:
            return set()
        done: set[str] = set()
        with self.path.open(newline="") as fh:
            for rec in csv.DictReader(fh):
                if include_errors or rec.get("status") == STATUS_OK:
                    done.add(rec["config_id"])
        return done

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.columns]
        if new and self.n_rows:
            self._widen(new)
        elif new:
            self.columns += new
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("w", newline="") as fh:
                csv.writer(fh).writerow(self.columns)
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self.columns, restval="").writerow({k: _cell(v) for k, v in row.items()})
            fh.flush()
            os.fsync(fh.fileno())
        self.n_rows += 1

    def _widen(self, new: list[str]) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with self.path.open(newline="") as src, tmp.open("w", newline="") as dst:
            reader = csv.reader(src)
            writer = csv.writer(dst)
            writer.writerow([*next(reader), *new])
            for rec in reader:
                writer.writerow(rec + [""] * len(new))
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, self.path)
        self.columns += new


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return value


@dataclass
class SweepReport:
    """What a sweep call did."""

    output: Path
    total: int
    skipped: int
    ran: int
    failed: int
    seconds: float


def run_sweep(
    spec: SweepSpec,
    output: str | os.PathLike,
    ray_address: str | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    limit: int | None = None,
    command: str | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> SweepReport:
    """Run every configuration of `spec` not yet in `output`, appending one row per configuration
    (the output is locked for the run: a second run on it is refused)."""
    configs = expand(spec)
    validate_configs(spec.kind, configs)
    if limit is not None:
        limit = v.non_negative_int("limit", limit)
    with output_lock(output):
        return _run_locked(spec, configs, Path(output), ray_address, progress, retry_failed, limit, command,
                           on_row)  # fmt: skip


def _run_locked(
    spec: SweepSpec,
    configs: list[dict[str, Any]],
    output: Path,
    ray_address: str | None,
    progress: bool,
    retry_failed: bool,
    limit: int | None,
    command: str | None,
    on_row: Callable[[dict[str, Any]], None] | None,
) -> SweepReport:
    from tqdm.auto import tqdm

    sink = CsvSink(output)
    done = sink.finished(include_errors=not retry_failed)
    todo = [c for c in configs if config_id(c) not in done]
    already = len(configs) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    _write_sidecar(spec, output, command, len(configs), already)
    start = time.perf_counter()
    failed = 0
    rows = (
        _ray_rows(spec.kind, todo, ray_address) if ray_address else (run_config(spec.kind, c) for c in todo)
    )
    bar = tqdm(
        total=len(todo), desc=spec.name or spec.kind, unit="cfg", disable=not progress, dynamic_ncols=True
    )
    try:
        for row in rows:
            sink.write(row)
            failed += row["status"] != STATUS_OK
            bar.update(1)
            bar.set_postfix(failed=failed, refresh=False)
            if on_row is not None:
                on_row(row)
    finally:
        bar.close()
    return SweepReport(Path(output), len(configs), already, len(todo), failed, time.perf_counter() - start)


def _ray_rows(kind: str, configs: list[dict[str, Any]], address: str) -> Iterator[dict[str, Any]]:
    """Run configurations as Ray tasks (num_gpus=1 each where the cluster has GPUs); yield rows as done."""
    try:
        import ray
    except ImportError as exc:
        raise ChronosError("--ray needs the 'ray' package (pip install ray)") from exc
    if not configs:
        return
    local = address in ("local", "")
    options: dict[str, Any] = {}
    if local:  # a fresh instance on this machine, sized to the CPUs this process may use (taskset)
        usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
        options["num_cpus"] = len(usable)
    try:
        ray.init(
            address=None if local else address,
            ignore_reinit_error=True,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            **options,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ChronosError(f"Cannot connect to Ray at {address!r}: {str(exc).splitlines()[0]}") from exc
    gpus = 1 if ray.cluster_resources().get("GPU", 0) > 0 else 0
    task = ray.remote(num_gpus=gpus, num_cpus=1, max_retries=0)(run_config)
    pending = {task.remote(kind, cfg): cfg for cfg in configs}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            cfg = pending.pop(ref)
            try:
                yield ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a crashed worker is a failed configuration
                yield {
                    "config_id": config_id(cfg),
                    "config_json": json.dumps(cfg, sort_keys=True, default=str),
                    "status": STATUS_ERROR,
                    "error_kind": "worker",
                    "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
                    **_config_columns(kind, cfg),
                }


def _write_sidecar(spec: SweepSpec, output: Path, command: str | None, total: int, skipped: int) -> None:
    """Provenance JSON beside the CSV; every (re)start of the sweep appends a session entry."""
    from chronos_core.profiling.environment import capture_environment

    devices = {str(c.get("device", "cpu")) for c in expand_preview(spec)}
    device = sorted(devices)[0] if devices else "cpu"
    threads = spec.fixed.get("threads")
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    env = capture_environment(device, command=command)
    sidecar = output.with_suffix(".json")
    sessions: list[dict[str, Any]] = []
    notes: list[str] = []  # free-text remarks a person added to the sidecar; kept across sessions
    if sidecar.exists():
        try:
            previous = json.loads(sidecar.read_text())
            sessions = list(previous.get("sessions", []))
            notes = list(previous.get("notes", []))
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError) as exc:
            kept = sidecar.with_suffix(f".json.corrupt-{int(time.time())}")
            os.replace(sidecar, kept)
            _warn(
                f"{sidecar} was unreadable ({type(exc).__name__}); kept as {kept.name}, history starts anew"
            )
            sessions, notes = [], []
    sessions.append(
        {
            "date_utc": env.date_utc,
            "git_revision": env.git_revision,
            "command": env.command,
            "threads": env.threads,
            "configs_total": total,
            "configs_already_done": skipped,
        }
    )
    record = {
        "table": output.name,
        **env.as_dict(),
        "sweep": {
            "name": spec.name,
            "source": spec.source,
            "kind": spec.kind,
            "mode": spec.mode,
            "seed": spec.seed,
            "samples": spec.samples,
            "fixed": spec.fixed,
            "grid": spec.grid,
            "configs": spec.configs,
        },
        "sessions": sessions,
        "notes": notes,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(sidecar, json.dumps(record, indent=2, default=str) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it: never a torn file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def output_lock(output: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive lock on `<output>.lock` while a run writes `output`; a second run on the
    same output is refused with one line instead of interleaving rows."""
    import fcntl

    lock = Path(f"{output}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fh = lock.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise ChronosError(
                f"{str(output)!r} is being written by another run ({holder}); wait for it or choose another"
                f" --output (lock file {lock})"
            ) from None
        try:  # the file we locked may have been removed by a run that just finished: lock again
            same = os.fstat(fh.fileno()).st_ino == lock.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        fh.close()


def expand_preview(spec: SweepSpec) -> list[dict[str, Any]]:
    """The sweep's fixed settings merged with each grid point (no layer sampling): for quick looks."""
    return [{**spec.fixed, **p} for grid in spec.grid for p in _grid_points(grid)] + list(spec.configs)


def read_sweep(path: str | os.PathLike, ok_only: bool = True):
    """A sweep CSV as a DataFrame, keeping the last row per config_id (and only ok rows by default)."""
    import pandas as pd

    frame = pd.read_csv(path)
    frame = frame.drop_duplicates("config_id", keep="last")
    if ok_only and "status" in frame:
        frame = frame[frame["status"] == STATUS_OK]
    return frame.reset_index(drop=True)
