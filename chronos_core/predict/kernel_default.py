"""The kernel model chronos predicts with: fitted on every public kernel row, calibrated with every
device profile there is, cached on disk keyed by the data and the code.

Training rows: NeuSight's training shapes (long matmul-class calls dropped: see `kernel_eval`) and
its out-of-distribution shapes. Calibration: XLA's B200 GEMMs (the only tensor-core timings at
hand, kept per dtype as the B200's profile) and each `meta_datasets/<device>/device_profile.csv`
written by `chronos calibrate`.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from chronos_core.data import device_profiles, registry
from chronos_core.data.kernels import kernel_table, xla_kernels
from chronos_core.pickle_cache import load_or_build
from chronos_core.predict.kernel_eval import training_rows
from chronos_core.predict.kernels import KernelModel

log = logging.getLogger(__name__)
CODE_VERSION = "kernels-v1"
_LOADED: dict[str, KernelModel] = {}


def _cache_dir() -> Path:
    return Path(os.environ.get("CHRONOS_MODEL_CACHE", Path.home() / ".cache" / "chronos" / "models"))


def _key() -> str:
    """Hash of the model code, the public kernel files (path and size) and the stored profiles."""
    digest = hashlib.sha256(CODE_VERSION.encode())
    here = Path(__file__).parent
    for name in ("kernels.py", "kernel_eval.py", "kernel_default.py", "../data/kernels.py"):
        digest.update((here / name).read_bytes())
    for name, src in sorted(registry.SOURCES.items()):
        if src.kind in ("kernels", "gemm_table"):
            found = registry.locate(name)
            digest.update(f"{name}:{found.stat().st_size if found else 0}".encode())
    for slug in device_profiles.available_profiles():
        digest.update(device_profiles.profile_path(slug).read_bytes())
    return digest.hexdigest()[:16]


def profiles_table() -> pd.DataFrame:
    """Every stored device profile plus the B200's XLA GEMMs, in the canonical kernel schema."""
    parts = [xla_kernels()]
    for slug in device_profiles.available_profiles():
        profile = device_profiles.load_profile(slug)
        if profile is not None and len(profile):
            parts.append(profile)
    return pd.concat(parts, ignore_index=True)


def fit_default(exclude: str | Sequence[str] | None = None, n_estimators: int = 400) -> KernelModel:
    """Fit on all public kernel rows (less some GPUs', for held-out checks), calibrate each GPU in the
    tables with its own rows (the seen-GPU mode) and every other device with its profile."""
    left_out = [exclude] if isinstance(exclude, str) else list(exclude or [])
    table = kernel_table(include_xla=False)
    table = table[~table["device"].isin(left_out)]
    model = KernelModel(n_estimators=n_estimators).fit(training_rows(table))
    profiles = profiles_table()
    profiles = profiles[profiles["device"].map(_is_known_device) & ~profiles["device"].isin(left_out)]
    return model.calibrate(pd.concat([table, profiles], ignore_index=True))


def _is_known_device(name: str) -> bool:
    from chronos_core.catalog.devices import Devices

    return Devices.resolve(str(name)) is not None


def default_kernel_model(refit: bool = False) -> KernelModel:
    """The fitted, calibrated kernel model (memory, then disk cache, then a fit)."""
    key = _key()
    if not refit and key in _LOADED:
        return _LOADED[key]
    if refit:
        (_cache_dir() / f"kernel-model-{key}.pkl").unlink(missing_ok=True)
    model = load_or_build(_cache_dir() / f"kernel-model-{key}.pkl", fit_default)
    _LOADED[key] = model
    return model
