"""Checks shared by every verb and the API: one `ChronosError` line naming the bad value, its row
where there is one, and what is accepted. Nothing is clamped or silently ignored.

Scalar checks (`positive_int`, `positive_float`, `choice`, ...) take the argument's name first;
`arg(...)` turns one into an argparse `type=`; `output_path` is called before any work is done;
`read_csv` and `numeric_column` check input tables cell by cell.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chronos_core.errors import ChronosError


def _where(name: str, row: int | None) -> str:
    return f"row {row}: {name}" if row is not None else name


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _number(name: str, value: Any, kind: str, row: int | None) -> float:
    """`value` as a float (numbers and numeric strings; never bools)."""
    if _is_bool(value):
        raise ChronosError(f"{_where(name, row)} must be {kind}, got {value!r}")
    try:
        return float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ChronosError(f"{_where(name, row)} must be {kind}, got {value!r}") from None


def integer(name: str, value: Any, minimum: int | None = None, row: int | None = None) -> int:
    """An integer (2 and 2.0 and '2' pass; 2.5, NaN, inf, True do not), at least `minimum`."""
    kind = (
        "an integer"
        if minimum is None
        else "a positive integer"
        if minimum == 1
        else "a non-negative integer"
        if minimum == 0
        else f"an integer >= {minimum}"
    )
    number = _number(name, value, kind, row)
    if not math.isfinite(number) or number != int(number) or (minimum is not None and number < minimum):
        raise ChronosError(f"{_where(name, row)} must be {kind}, got {value!r}")
    return int(number)


def positive_int(name: str, value: Any, row: int | None = None) -> int:
    """An integer >= 1 (bools, 2.5, NaN and inf refused)."""
    return integer(name, value, 1, row)


def non_negative_int(name: str, value: Any, row: int | None = None) -> int:
    """An integer >= 0."""
    return integer(name, value, 0, row)


def finite_float(name: str, value: Any, row: int | None = None) -> float:
    """Any finite number."""
    number = _number(name, value, "a finite number", row)
    if not math.isfinite(number):
        raise ChronosError(f"{_where(name, row)} must be a finite number, got {value!r}")
    return number


def positive_float(name: str, value: Any, row: int | None = None) -> float:
    """A finite number > 0."""
    number = _number(name, value, "a positive number", row)
    if not (number > 0 and math.isfinite(number)):
        raise ChronosError(f"{_where(name, row)} must be a positive finite number, got {value!r}")
    return number


def non_negative_float(name: str, value: Any, row: int | None = None) -> float:
    """A finite number >= 0."""
    number = _number(name, value, "a non-negative number", row)
    if not (number >= 0 and math.isfinite(number)):
        raise ChronosError(f"{_where(name, row)} must be a non-negative finite number, got {value!r}")
    return number


def fraction(name: str, value: Any, row: int | None = None) -> float:
    """A number in [0, 1]."""
    number = _number(name, value, "a number in [0, 1]", row)
    if not 0 <= number <= 1:
        raise ChronosError(f"{_where(name, row)} must be a number in [0, 1], got {value!r}")
    return number


def choice(
    name: str,
    value: Any,
    accepted: Iterable[str],
    row: int | None = None,
    key: Callable[[str], str] = lambda s: s.strip().lower(),
) -> str:
    """The accepted spelling that `value` matches (compared through `key`), else one line listing them."""
    options = list(accepted)
    if isinstance(value, str):
        for option in options:
            if key(option) == key(value):
                return option
    where = f"row {row}: unknown {name}" if row is not None else f"Unknown {name}"
    raise ChronosError(f"{where} {value!r}. Accepted: {', '.join(options)}")


def arg(check: Callable[..., Any], name: str = "") -> Callable[[str], Any]:
    """An argparse `type=` from a check: bad values become one argparse error line naming them."""

    def parse(text: str) -> Any:
        try:
            return check(name or "value", text)
        except ChronosError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = check.__name__
    return parse


# ------------------------------------------------------------------------------------------ files


def output_path(path: str | os.PathLike, name: str = "--output", create_parent: bool = False) -> Path:
    """Check that `path` can be written, before any work: its folder exists (or is created when
    `create_parent`), it is not a folder, and opening it for append works. Returns it as a Path."""
    text = str(path)
    if not text.strip():
        raise ChronosError(f"{name} must be a file path, got {text!r}")
    out = Path(text).expanduser()
    if out.is_dir():
        raise ChronosError(f"{name} {text!r} is a folder; give a file path inside it")
    parent = out.parent
    if not parent.exists():
        if not create_parent:
            raise ChronosError(f"{name} {text!r}: folder {str(parent)!r} does not exist")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ChronosError(
                f"{name} {text!r}: cannot create folder {str(parent)!r}: {exc.strerror}"
            ) from None
    elif not parent.is_dir():
        raise ChronosError(f"{name} {text!r}: {str(parent)!r} is a file, not a folder")
    existed = out.exists()
    try:
        with out.open("a"):
            pass
    except OSError as exc:
        raise ChronosError(f"{name} {text!r} cannot be written: {exc.strerror or exc}") from None
    if not existed:
        out.unlink(missing_ok=True)
    return out


def read_csv(
    path: str | os.PathLike, name: str = "--input", allow_empty: bool = False, as_text: bool = True
) -> pd.DataFrame:
    """A CSV, as text cells by default (so values are written back as given, 256 stays '256');
    missing, unreadable, binary, empty or header-only files are one line each."""
    text = str(path)
    source = Path(text)
    if not source.exists():
        raise ChronosError(f"{name} file {text!r} does not exist")
    if source.is_dir():
        raise ChronosError(f"{name} {text!r} is a folder, not a CSV file")
    try:
        head = source.open("rb").read(4096)
    except OSError as exc:
        raise ChronosError(f"{name} file {text!r} cannot be read: {exc.strerror or exc}") from None
    if b"\x00" in head:
        raise ChronosError(f"{name} file {text!r} is binary, not a CSV")
    try:
        frame = (
            pd.read_csv(source, dtype=str, keep_default_na=False, skipinitialspace=True)
            if as_text
            else pd.read_csv(source)
        )
    except pd.errors.EmptyDataError:
        raise ChronosError(f"{name} file {text!r} is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ChronosError(f"{name} file {text!r} is not a readable CSV: {first}") from None
    if frame.empty and not allow_empty:
        raise ChronosError(f"{name} file {text!r} has a header but no rows")
    unnamed = [c for c in frame.columns if str(c).startswith("Unnamed: ")]
    if unnamed and len(unnamed) == len(frame.columns):
        raise ChronosError(f"{name} file {text!r} has no column names in its first line")
    return frame


_MISSING = ("", "nan", "NaN", "NA", "N/A", "null", "None")


def numeric_column(
    frame: pd.DataFrame,
    column: str,
    check: Callable[..., Any] | None = None,
    missing_ok: bool = True,
    first_row: int = 1,
) -> pd.Series:
    """A column as floats: every non-empty cell must parse as a number (and pass `check`, e.g.
    `positive_int`); empty cells become NaN when `missing_ok`, else an error naming the row."""
    values = []
    for i, cell in enumerate(frame[column].tolist()):
        row = i + first_row
        if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() in _MISSING:
            if not missing_ok:
                raise ChronosError(f"row {row}: {column} is empty; it is required")
            values.append(math.nan)
            continue
        if check is not None:
            values.append(float(check(column, cell, row=row)))
        else:
            number = _number(column, cell, "a number", row)
            values.append(number)
    return pd.Series(values, index=frame.index, dtype=float, name=column)


def text_column(
    frame: pd.DataFrame, column: str, accepted: Iterable[str], first_row: int = 1, **kwargs: Any
) -> list[str | None]:
    """A column whose non-empty cells must be one of `accepted` (None for empty cells)."""
    options = list(accepted)
    out: list[str | None] = []
    for i, cell in enumerate(frame[column].tolist()):
        if cell is None or (isinstance(cell, float) and math.isnan(cell)) or str(cell).strip() == "":
            out.append(None)
        else:
            out.append(choice(column, str(cell), options, row=i + first_row, **kwargs))
    return out


def summary_line(verb: str, read: int, predicted: int, output: str | os.PathLike) -> str:
    """The one line a batch verb ends with."""
    failed = read - predicted
    return f"{verb}: {read} rows read, {predicted} predicted, {failed} failed -> {output}"
