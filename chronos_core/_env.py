"""Quiet defaults for the libraries chronos drives; imported first by every entry point."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("KMP_WARNINGS", "0")
