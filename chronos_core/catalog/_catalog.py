"""A named collection of specs with forgiving lookup: `Devices.T4`, `Devices.get("Tesla T4")`."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from chronos_core.errors import unknown_choice

T = TypeVar("T")

# Vendor and marketing words that users add or drop freely ("NVIDIA Tesla T4" == "T4").
_NOISE_WORDS = ("nvidia", "tesla", "geforce", "quadro")


def normalize_name(name: str) -> str:
    """Lower-case, drop vendor words and every non-alphanumeric character."""
    text = str(name).lower()
    for word in _NOISE_WORDS:
        text = re.sub(rf"\b{word}\b", " ", text)
    return re.sub(r"[^a-z0-9]", "", text)


def attribute_name(name: str) -> str:
    """A Python identifier for a spec name: 'A100-PCIe-80GB' -> 'A100_PCIe_80GB'."""
    ident = re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")
    return ident if not ident[:1].isdigit() else f"_{ident}"


class Catalog(Generic[T]):
    """Specs by canonical name, plus aliases; attribute access resolves through the same lookup."""

    def __init__(self, kind: str, specs: dict[str, T], aliases: dict[str, str] | None = None):
        self._kind = kind
        self._specs = dict(specs)
        self._index: dict[str, str] = {}
        for name in self._specs:
            self._index[normalize_name(name)] = name
            self._index[normalize_name(attribute_name(name))] = name
        for alias, name in (aliases or {}).items():
            if name not in self._specs:
                raise KeyError(f"alias {alias!r} points to unknown {kind} {name!r}")
            self._index.setdefault(normalize_name(alias), name)

    @property
    def kind(self) -> str:
        return self._kind

    def names(self) -> list[str]:
        """Canonical names, in table order."""
        return list(self._specs)

    def resolve(self, name: str) -> str | None:
        """Canonical name for any known spelling, or None."""
        return self._index.get(normalize_name(name))

    def get(self, name: str | T) -> T:
        """The spec for a name (any known spelling); a spec passes through unchanged."""
        if not isinstance(name, str):
            return name
        canonical = self.resolve(name)
        if canonical is None:
            raise self._unknown(name)
        return self._specs[canonical]

    def _unknown(self, name: str) -> Exception:
        """The error for a name that does not resolve (subclasses may say more, in one line)."""
        return unknown_choice(self._kind, name, self._specs)

    def add(self, name: str, spec: T, aliases: Iterable[str] = ()) -> T:
        """Register a user-supplied spec (custom GPU, model, dataset) under a new name."""
        self._specs[name] = spec
        for alias in (name, attribute_name(name), *aliases):
            self._index[normalize_name(alias)] = name
        return spec

    def __getattr__(self, attr: str) -> T:
        if attr.startswith("__") or attr in {"_kind", "_specs", "_index"}:
            raise AttributeError(attr)
        return self.get(attr)

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.resolve(name) is not None

    def __iter__(self) -> Iterator[T]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {attribute_name(n) for n in self._specs})

    def __repr__(self) -> str:
        return f"<{self._kind} catalog: {', '.join(self._specs)}>"
