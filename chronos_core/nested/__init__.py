"""Distributed nested (bilevel) optimisation on Ray: HOPE's system, rebuilt and measured (notebook 07).

- `inner`: inner problems g(w, theta) / f(w, theta) and the digits tasks (hyper-cleaning, MLP tuning).
- `hypergrad`: hypergradients by unrolled (torch.func) and implicit (CG on Hessian-vector products).
- `versioning`: versioned outer parameters, staleness weighting / rejection, in-flight bound.
- `sparse`: significance-triggered sends with an adaptive threshold and error feedback.
- `continuum`: k-nearest-state memory (CG warm starts) and per-group update periods.
- `coordinator`, `worker`, `runner`: the Ray actors and the driver (worker replacement, checkpoints).
- `experiment`: one run -> metrics; sweeps -> CSV; time/traffic to target, claims and ablation tables.

Submodules are imported explicitly (`from chronos_core.nested.runner import run_distributed`), so that
importing the package does not import Ray or torch.
"""
