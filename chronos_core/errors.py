"""One error type for bad user input: a one-line message naming the bad value and the valid ones."""

from __future__ import annotations

from collections.abc import Iterable


class ChronosError(ValueError):
    """Bad input or missing data, explained in one line; the CLI prints it without a traceback."""


def first_line(error: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def unknown_choice(kind: str, value: object, known: Iterable[str], limit: int = 40) -> ChronosError:
    """Build the standard 'Unknown <kind> <value>. Known: a, b, c' error."""
    names = sorted(set(known), key=str.lower)
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} in all)" if len(names) > limit else "")
    return ChronosError(f"Unknown {kind} {value!r}. Known: {shown}")
