"""Device profiles: kernel timings that `chronos calibrate` measured on one device, stored per device.

A profile is `meta_datasets/<slug>/device_profile.csv` (one row per kernel, in the canonical kernel
schema `KERNEL_COLUMNS`) with a `device_profile.json` provenance sidecar. `CHRONOS_PROFILE_DIR`
replaces `meta_datasets/` as the folder that holds the `<slug>/` folders. The predict side reads
profiles only through this module, which imports neither torch nor the profiler.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from chronos_core.data.kernels import KERNEL_COLUMNS as _BASE
from chronos_core.data.registry import REPO_ROOT
from chronos_core.errors import ChronosError

# One measured kernel per row: NeuSight's op names and shape columns (B, M, N, K for GEMMs; a B x H
# tensor for elementwise, ln and softmax; in_channels ... padding for conv) plus how it was measured.
KERNEL_COLUMNS: tuple[str, ...] = (*_BASE[:-2], "latency_ms_std", "repeats", *_BASE[-2:])
PROFILE_FILE = "device_profile.csv"
PROFILE_DIR_ENV = "CHRONOS_PROFILE_DIR"
_NUMERIC = ("B", "M", "N", "K", "H", "in_channels", "out_channels", "kernel_size", "input_size", "stride",
            "padding", "latency_ms", "latency_ms_std", "repeats")  # fmt: skip


def profile_root() -> Path:
    """The folder holding `<slug>/device_profile.csv`: $CHRONOS_PROFILE_DIR, else meta_datasets/."""
    env = os.environ.get(PROFILE_DIR_ENV)
    return Path(env).expanduser() if env else REPO_ROOT / "meta_datasets"


def _canonical(device_key: str) -> str:
    """The catalog name of a device ('NVIDIA H100 80GB HBM3' -> 'H100-SXM', 'cpu' -> this CPU)."""
    from chronos_core.catalog.devices import Devices  # the spec table only: no torch

    key = str(device_key).strip()
    return Devices.resolve(key) or key


def profile_slug(device_key: str) -> str:
    """Filesystem-safe lowercase folder name of a device ('H100-SXM' -> 'h100-sxm')."""
    slug = re.sub(r"[^a-z0-9]+", "-", _canonical(device_key).lower()).strip("-")
    if not slug:
        raise ChronosError(f"Device key {device_key!r} has no letters or digits to name a profile by")
    return slug


def profile_path(device_key: str) -> Path:
    """Where the profile of a device lives: `<profile root>/<slug>/device_profile.csv`."""
    return profile_root() / profile_slug(device_key) / PROFILE_FILE


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temp file in the same folder, then os.replace: never a torn `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a profile is a shared table
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_columns(columns: Any, where: str) -> None:
    found = [str(c) for c in columns]
    missing = [c for c in KERNEL_COLUMNS if c not in found]
    extra = [c for c in found if c not in KERNEL_COLUMNS]
    if missing or extra:
        parts = [
            f"missing {', '.join(missing)}" if missing else "",
            f"unexpected {', '.join(extra)}" if extra else "",
        ]
        raise ChronosError(f"{where} is not a kernel table: {'; '.join(p for p in parts if p)}")


def write_profile(
    frame: pd.DataFrame,
    device_key: str,
    provenance: dict[str, Any],
    *,
    path: str | os.PathLike | None = None,
) -> Path:
    """Store a kernel table as the device's profile (or at `path`) with a JSON provenance sidecar.

    Both files are written to temp files first and moved into place, so a crash leaves the previous
    profile whole.
    """
    _check_columns(frame.columns, "the profile to write")
    if frame.empty:
        raise ChronosError(f"refusing to write an empty device profile for {device_key!r}")
    target = Path(path) if path is not None else profile_path(device_key)
    sidecar = target.with_suffix(".json")
    record = {"table": target.name, "device_key": str(device_key), "rows": len(frame), **provenance}
    table = frame.loc[:, list(KERNEL_COLUMNS)]
    try:
        _atomic_write(target, lambda tmp: table.to_csv(tmp, index=False))
        _atomic_write(sidecar, lambda tmp: tmp.write_text(json.dumps(record, indent=2, default=str) + "\n"))
    except OSError as exc:
        raise ChronosError(f"cannot write the device profile {target}: {exc.strerror or exc}") from None
    return target


def read_profile(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a kernel table file (ChronosError when it is malformed)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ChronosError(f"device profile {path} is malformed: {str(exc).splitlines()[0]}") from None
    _check_columns(frame.columns, f"device profile {path}")
    for column in _NUMERIC:
        values = pd.to_numeric(frame[column], errors="coerce")
        if (values.isna() & frame[column].notna()).any():
            raise ChronosError(f"device profile {path} is malformed: non-numeric values in {column!r}")
        frame[column] = values
    latency = frame["latency_ms"]
    if frame.empty or not all(math.isfinite(v) and v > 0 for v in latency):
        raise ChronosError(f"device profile {path} is malformed: latency_ms must be positive and finite")
    if frame["op"].isna().any() or frame["dtype"].isna().any():
        raise ChronosError(f"device profile {path} is malformed: rows without an op or dtype")
    return frame.loc[:, list(KERNEL_COLUMNS)]


def load_profile(device_key: str) -> pd.DataFrame | None:
    """The stored profile of a device (catalog name, a spelling the catalog knows, or a slug); else None."""
    path = profile_path(device_key)
    return read_profile(path) if path.is_file() else None


def available_profiles() -> list[str]:
    """Slugs of the devices that have a stored profile (each is a valid `load_profile` key)."""
    root = profile_root()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{PROFILE_FILE}") if p.is_file())
