"""Init-time convergence signals: gradient statistics, NTK trace, initial loss, noise scale, Hessian."""

from chronos_core.probes.core import (
    METHODS,
    ProbeConfig,
    ProbeResult,
    check_logits,
    gradient_noise_scale,
    hessian_top_eigenvalue,
    per_sample_stats_exact,
    per_sample_stats_sketch,
    probe_model,
)

__all__ = [
    "METHODS",
    "ProbeConfig",
    "ProbeResult",
    "check_logits",
    "gradient_noise_scale",
    "hessian_top_eigenvalue",
    "per_sample_stats_exact",
    "per_sample_stats_sketch",
    "probe_model",
]
