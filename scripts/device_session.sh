#!/usr/bin/env bash
# One prepared run on a lent GPU (the `device` tool runs it in the repo root there; nothing is
# installed: the machine's own python3 with PyTorch runs chronos from the working tree):
#   1. `chronos calibrate --device cuda`: 244 kernels -> $OUT/<gpu>/device_profile.csv (+ .json)
#   2. `chronos sweep sweeps/gpu_steps.yaml`: 54 measured training steps -> $OUT/steps.csv (+ .json)
# Both are resumable/atomic, so a run cut by its time limit still returns what it measured. Back here:
# copy $OUT/<gpu>/ to meta_datasets/<gpu>/ (steps.csv beside the profile; not models.csv, which feeds
# the time tables) and run `kernel_report.cpu`'s GPU twin on it: predicted vs measured steps.
# Call: run(command="bash scripts/device_session.sh", timeout_s=600)
set -uo pipefail
OUT=${OUT:-/tmp/chronos-device}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 CHRONOS_PROFILE_DIR="$OUT"
PY=${PYTHON:-python3}
{
  nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv
  "$PY" -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)'
  timeout 240 "$PY" -m chronos_core calibrate --device cuda
  timeout 300 "$PY" -m chronos_core sweep sweeps/gpu_steps.yaml --output "$OUT/steps.csv" --quiet
} 2>&1 | tee "$OUT/device_session.log"
ls -R "$OUT"
