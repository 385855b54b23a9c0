"""Quiet defaults for the libraries chronos drives; imported first by every entry point."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("KMP_WARNINGS", "0")

try:  # triton (torch's compiler, loaded by the FLOP counter) segfaults if first imported after tensorflow
    import triton  # noqa: F401
except ImportError:  # CPU-only torch builds do not ship it
    pass


def tensorflow():
    """Import tensorflow safely beside torch: triton (torch's compiler, pulled in by the FLOP counter)
    segfaults when first imported after tensorflow, so it is imported first where installed."""
    try:
        import triton  # noqa: F401
    except ImportError:
        pass
    import tensorflow as tf

    return tf
