"""chronos: predict how long a deep-learning training run will take, before running it."""

from chronos_core import _env  # noqa: F401  (quiet TF/Ray defaults before anything imports them)
from chronos_core.catalog.datasets import Datasets, custom_dataset
from chronos_core.catalog.optimizers import Optimizers
from chronos_core.errors import ChronosError

__version__ = "0.1.0"

__all__ = [
    "ChronosError",
    "Datasets",
    "Devices",
    "Models",
    "Optimizers",
    "TrainingTimePredictor",
    "custom_dataset",
    "custom_device",
]


def __getattr__(name: str):
    """Import the heavier catalogs (torch, the GPU table) only when first used."""
    if name == "Devices":
        from chronos_core.catalog.devices import Devices

        return Devices
    if name == "custom_device":
        from chronos_core.catalog.devices import custom_device

        return custom_device
    if name == "TrainingTimePredictor":
        from chronos_core.api import TrainingTimePredictor

        return TrainingTimePredictor
    if name == "Models":
        from chronos_core.catalog.models import Models

        return Models
    raise AttributeError(f"module 'chronos_core' has no attribute {name!r}")
