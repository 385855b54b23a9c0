"""Optimizer descriptors: how much state each keeps per parameter, and how to build it in torch."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from chronos_core.catalog._catalog import Catalog


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer family and its per-parameter state (in fp32 values)."""

    name: str
    state_values_per_param: float  # fp32 values kept per parameter (momentum, moments)
    momentum: float = 0.0
    description: str = ""

    @property
    def state_bytes_per_param(self) -> float:
        return 4.0 * self.state_values_per_param

    def build(self, params: Iterable, lr: float, weight_decay: float = 0.0):
        """A torch optimizer over `params` (imported lazily: catalogs stay torch-free)."""
        import torch

        name = self.name
        if name in ("SGD", "SGD-momentum"):
            return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=weight_decay)
        if name == "Adam":
            return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
        if name == "AdamW":
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay or 0.01)
        if name == "Adafactor":
            return torch.optim.Adafactor(params, lr=lr, weight_decay=weight_decay)
        raise NotImplementedError(name)  # every catalog entry is handled above


_SPECS = [
    OptimizerSpec("SGD", 0, 0.0, "plain SGD, no state"),
    OptimizerSpec("SGD-momentum", 1, 0.9, "SGD with momentum 0.9 (one buffer per parameter)"),
    OptimizerSpec("Adam", 2, description="first and second moments"),
    OptimizerSpec("AdamW", 2, description="Adam with decoupled weight decay"),
    # Factored second moment: O(rows + cols) per matrix, ~0 per parameter for large matrices.
    OptimizerSpec("Adafactor", 0.05, description="factored second moment (Shazeer & Stern 2018)"),
]

Optimizers: Catalog[OptimizerSpec] = Catalog(
    "optimizer",
    {spec.name: spec for spec in _SPECS},
    aliases={"sgdm": "SGD-momentum", "sgd_momentum": "SGD-momentum", "momentum": "SGD-momentum"},
)
