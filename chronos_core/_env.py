"""Quiet defaults for the libraries chronos drives; imported first by every entry point."""

import contextlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("KMP_WARNINGS", "0")

try:  # triton (torch's compiler, loaded by the FLOP counter) segfaults if first imported after tensorflow
    import triton  # noqa: F401
except ImportError:  # CPU-only torch builds do not ship it
    pass


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null for the block: TensorFlow's C++ start-up lines (oneDNN, CUDA
    probing on a machine without a GPU) are written before its logging honours TF_CPP_MIN_LOG_LEVEL."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tensorflow():
    """Import tensorflow quietly and safely beside torch.

    triton (torch's compiler, pulled in by the FLOP counter) segfaults when first imported after
    tensorflow, so it is imported first where installed. The first import and device probe run with
    stderr silenced; Python exceptions still propagate.
    """
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _quiet_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf
