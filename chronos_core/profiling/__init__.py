"""Measure training time on the machine at hand (cpu, cuda, mps).

* `timers`: one PyTorch training configuration, loader wait and compute apart, over repeats.
* `keras_timer`: Keras epochs timed as the A100 project did (epoch 1 dropped).
* `layers`: PreNeT-style layer microbenchmarks with analytic features.
* `sweep`: grids from YAML/TOML into resumable CSVs, locally or as Ray tasks.
* `aggregate`: repeats -> configurations (reproduces the A100 project's runs_agg.csv).
* `environment`: provenance of every measurement.
* `cli`: `add_parsers(sub)` adds `measure`, `sweep` and `microbench` to the `chronos` CLI.

Submodules import torch lazily where they can; import them directly.
"""

# microbenchmarked layer types (here so that the CLI can list them without importing torch)
LAYER_TYPES = ("conv2d", "linear", "embedding", "attention", "layernorm", "lstm", "gru")
