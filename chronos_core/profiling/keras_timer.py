"""Time Keras training by the epoch, as the A100 project did: `model.fit` with an epoch-timer callback.

Their protocol (run_one.py): compile with Adam and sparse categorical cross-entropy, fit for a
few epochs, drop epoch 1 (graph tracing, autotuning), average the rest, and report throughput as
training-set size / average epoch time. `time_a100_cnn` runs that workload for one (depth,
base_filters, batch_size) and returns a row in their runs.csv schema, so our aggregation
reproduces theirs. Data are synthetic tensors of CIFAR-10's shape unless real arrays are given
(nothing is downloaded); `test_acc` is NaN then, since accuracy on noise means nothing.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from chronos_core.errors import ChronosError


@dataclass
class KerasTiming:
    """Per-epoch wall times of one `fit`, and the A100 project's summary of them."""

    epoch_times_s: list[float]
    train_size: int
    params: int

    @property
    def avg_time_sec(self) -> float:
        """Mean epoch time excluding epoch 1 (all epochs when only one ran)."""
        times = self.epoch_times_s[1:] if len(self.epoch_times_s) > 1 else self.epoch_times_s
        return float(np.mean(times))

    @property
    def images_per_sec(self) -> float:
        return self.train_size / self.avg_time_sec


def _epoch_timer_callback():
    from chronos_core._env import tensorflow

    tf = tensorflow()

    class EpochTimer(tf.keras.callbacks.Callback):
        """Wall time of each epoch (perf_counter around on_epoch_begin/on_epoch_end)."""

        def __init__(self) -> None:
            super().__init__()
            self.times: list[float] = []
            self._start = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.times.append(time.perf_counter() - self._start)

    return EpochTimer()


def set_keras_threads(threads: int | None) -> None:
    """Limit TensorFlow to `threads` (must run before TensorFlow executes anything)."""
    if threads is None:
        return
    from chronos_core._env import tensorflow

    tf = tensorflow()

    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:  # already initialized: keep the current setting
        pass


def time_keras_epochs(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    epochs: int = 3,
    optimizer: str = "adam",
    loss: str = "sparse_categorical_crossentropy",
) -> KerasTiming:
    """Compile (when needed) and fit `model` on (x, y), timing every epoch."""
    if epochs < 1 or batch_size < 1:
        raise ChronosError(f"epochs and batch_size must be positive, got {epochs!r}, {batch_size!r}")
    if getattr(model, "optimizer", None) is None or not getattr(model, "compiled", True):
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    timer = _epoch_timer_callback()
    try:
        model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=[timer], shuffle=True)
    except Exception as exc:
        from chronos_core.profiling.timers import is_oom

        if is_oom(exc) or "resourceexhausted" in type(exc).__name__.lower():
            raise ChronosError(
                f"batch_size {batch_size} does not fit in memory: {str(exc).splitlines()[0][:160]}"
            ) from exc
        raise
    return KerasTiming(list(timer.times), int(len(x)), int(model.count_params()))


def synthetic_cifar10(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` random images of CIFAR-10's shape (NHWC, float32 in [0, 1]) and labels in 0..9."""
    rng = np.random.default_rng(seed)
    return rng.random((n, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, n).astype(np.int64)


def time_keras_zoo_model(
    model: str,
    dataset: str = "CIFAR10",
    batch_size: int = 32,
    epochs: int = 3,
    train_size: int = 2048,
    threads: int | None = None,
    seed: int = 0,
    **model_kwargs: Any,
) -> dict[str, Any]:
    """Time a Keras model of the zoo on synthetic data of the dataset's shape (NHWC for images)."""
    from chronos_core.catalog.datasets import Datasets
    from chronos_core.catalog.models import Models

    spec = Models.get(model)
    if spec.framework != "keras":
        raise ChronosError(
            f"Model {spec.name} is a {spec.framework} model; time it with chronos_core.profiling.timers"
        )
    set_keras_threads(threads)
    from chronos_core._env import tensorflow

    tf = tensorflow()

    data = Datasets.get(dataset)
    tf.keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    shape = tuple(data.input_shape)
    if data.modality == "image" and len(shape) == 3:
        shape = (shape[1], shape[2], shape[0])
    x = rng.random((train_size, *shape), dtype=np.float32)
    y = rng.integers(0, data.num_classes, train_size).astype(np.int64)
    keras_model = spec.build(data, **model_kwargs)
    timing = time_keras_epochs(keras_model, x, y, batch_size, epochs)
    steps = math.ceil(train_size / batch_size)
    return {
        "model": spec.name,
        "dataset": data.name,
        "batch_size": batch_size,
        "epochs": epochs,
        "train_size": train_size,
        "param_count": timing.params,
        "epoch_times_json": json.dumps(timing.epoch_times_s),
        "avg_epoch_time_s": timing.avg_time_sec,
        "batch_time_ms": 1000.0 * timing.avg_time_sec / steps,
        "images_per_sec": timing.images_per_sec,
        "tf_version": tf.__version__,
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }


def time_a100_cnn(
    depth: int,
    base_filters: int,
    batch_size: int,
    epochs: int = 3,
    train_size: int = 50_000,
    data: tuple[np.ndarray, np.ndarray] | None = None,
    test_data: tuple[np.ndarray, np.ndarray] | None = None,
    threads: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One run of the A100 project's workload -> a row in their runs.csv schema (plus device fields)."""
    set_keras_threads(threads)
    from chronos_core._env import tensorflow

    tf = tensorflow()

    from chronos_core.catalog.models import Models

    tf.keras.utils.set_random_seed(seed)
    x, y = data if data is not None else synthetic_cifar10(train_size, seed)
    model = Models.get("KerasCNN").build("CIFAR10", depth=depth, base_filters=base_filters)
    timing = time_keras_epochs(model, x, y, batch_size, epochs)
    test_acc = math.nan
    if test_data is not None:
        test_acc = float(model.evaluate(*test_data, batch_size=batch_size, verbose=0)[1])
    return {
        "timestamp_utc": _dt.datetime.now(_dt.UTC).replace(tzinfo=None).isoformat(timespec="seconds"),
        "tf_version": tf.__version__,
        "depth": depth,
        "base_filters": base_filters,
        "batch_size": batch_size,
        "epochs": epochs,
        "params": timing.params,
        "epoch_times_json": json.dumps(timing.epoch_times_s),
        "avg_time_sec": timing.avg_time_sec,
        "images_per_sec": timing.images_per_sec,
        "test_acc": test_acc,
        "train_size": timing.train_size,
        "data": "real" if data is not None else "synthetic",
        "threads": tf.config.threading.get_intra_op_parallelism_threads(),
    }
