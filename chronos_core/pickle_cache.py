"""Build-once objects on disk: read a pickle if a readable one is there, else build, store atomically."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def load_or_build(path: Path, build: Callable[[], T]) -> T:
    """The object pickled at `path`, or `build()` stored there (temp file, then rename: a crash never
    leaves a torn pickle). An unreadable or unwritable cache is logged and bypassed, never fatal."""
    if path.is_file():
        try:
            with path.open("rb") as fh:
                return pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            log.warning("cached %s unreadable; building it again", path)
    value = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            pickle.dump(value, fh)
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not cache %s: %s", path, exc)
    return value
