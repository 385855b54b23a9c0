"""Answers already given, kept on disk so a repeated `chronos predict`/`compare` needs neither torch nor
xgboost: only the standard library runs before the answer is printed.

A prediction is stored under a key made of the request (the command-line arguments, normalized) and
the *version* of everything the answer depends on: the package's code and shipped data, the project's
own measurements (`meta_datasets/`) and fitted tables (`results/kernels/*.csv`), and the environment
variables that point at data or caches. Change any of them and the key changes, so a stale answer is
never served. Writes are atomic (temp file, then rename): a crash never leaves a torn entry, and an
unreadable entry is recomputed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
_CODE_SUFFIXES = (".py", ".csv", ".json", ".npz")
# Outside the package: what predictions read at run time (the project's measurements and fitted tables).
_DATA_GLOBS = ("meta_datasets/**/*.csv", "meta_datasets/**/*.json", "results/kernels/*.csv")
_ENV = ("CHRONOS_DATA_MIRROR", "CHRONOS_CACHE_DIR", "CHRONOS_MODEL_CACHE")
# Libraries whose version changes an answer (model builders, tracers, fitted regressors).
_PACKAGES = ("torch", "torchvision", "xgboost", "scikit-learn", "transformers", "timm", "numpy", "pandas")


def cache_root() -> Path:
    """$CHRONOS_CACHE_DIR or ~/.cache/chronos."""
    return Path(os.environ.get("CHRONOS_CACHE_DIR", "~/.cache/chronos")).expanduser()


def predictions_dir() -> Path:
    """Where answers are kept: <cache root>/predictions."""
    return cache_root() / "predictions"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """A digest of the package's code and data files, the project's own tables, the environment
    variables that point at data or caches, and the installed versions of the libraries answers depend
    on (about 60 ms)."""
    digest = hashlib.sha256()
    files = sorted(p for p in PACKAGE.rglob("*") if p.suffix in _CODE_SUFFIXES and p.is_file())
    for pattern in _DATA_GLOBS:
        files += sorted(REPO.glob(pattern))
    for path in files:
        try:
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
        except OSError:
            continue
    for name in _ENV:
        digest.update(f"{name}={os.environ.get(name, '')}".encode())
    for package in _PACKAGES:
        try:
            digest.update(f"{package}=={metadata.version(package)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package} absent".encode())
    return digest.hexdigest()[:16]


def file_digest(text: str) -> str:
    """The content digest of the file a request names (a config.json, or a folder holding one), '' when
    it names none: answers about a user's file follow its content, not its path."""
    path = Path(str(text)).expanduser()
    if path.is_dir():
        path = path / "config.json"
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else ""
    except OSError:
        return ""


def request_key(kind: str, request: Mapping[str, Any]) -> str:
    """The file stem for one request: its kind, normalized fields and the code version."""
    text = json.dumps({"kind": kind, **request}, sort_keys=True, default=str)
    return f"{kind}-{hashlib.sha256((text + code_version()).encode()).hexdigest()[:24]}"


def cached(kind: str, request: Mapping[str, Any], compute: Callable[[], Any], *, use: bool = True) -> Any:
    """`compute()`'s JSON-serializable answer for `request`, read from disk when it was computed before
    with the same code and data; `use=False` (or CHRONOS_PREDICTION_CACHE=0) computes and stores afresh.
    Storage problems are never fatal: the answer is computed and returned."""
    use = use and os.environ.get("CHRONOS_PREDICTION_CACHE", "1") != "0"
    path = predictions_dir() / f"{request_key(kind, request)}.json"
    if use and path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))["answer"]
        except (OSError, ValueError, KeyError):
            pass
    answer = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        entry = json.dumps({"request": dict(request), "answer": answer}, default=float)
        tmp.write_text(entry, encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass
    return json.loads(json.dumps(answer, default=float))
