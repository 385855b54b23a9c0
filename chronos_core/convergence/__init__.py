"""Epochs to convergence: offline training runs (tasks, nets, runner, sweep), convergence models,
their evaluation on grouped splits, and the `predict-epochs` command.

Import the submodules directly (`chronos_core.convergence.models`, `.evaluate`, `.sweep`, ...):
this package file stays import-light so the CLI can register its verb without loading torch.
"""
