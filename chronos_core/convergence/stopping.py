"""CHRONOS-style early stopping, shared by the training runner and the (torch-free) convergence models."""

from __future__ import annotations

import math
from collections.abc import Sequence


def early_stopping_epoch(curve: Sequence[float], patience: int, min_delta: float) -> int | None:
    """Epoch (1-based) at which early stopping fires on `curve`, or None if it never does.

    An epoch improves when its loss is below the best so far minus `min_delta`; stopping fires after
    `patience` epochs in a row without improvement.
    """
    best, wait = math.inf, 0
    for epoch, value in enumerate(curve, start=1):
        if value < best - min_delta:
            best, wait = value, 0
        else:
            wait += 1
            if wait >= patience:
                return epoch
    return None
