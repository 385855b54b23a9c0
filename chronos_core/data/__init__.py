"""Public tables (registry, adapters) and the canonical schema they are turned into."""

from chronos_core.data.adapters import load_convergence_table, load_time_table
from chronos_core.data.registry import SOURCES, fetch, read, sources_table

__all__ = ["SOURCES", "fetch", "load_convergence_table", "load_time_table", "read", "sources_table"]
