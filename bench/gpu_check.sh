#!/usr/bin/env bash
# voicetune's GPU checks on one GPU, in under 8 minutes: speed against upstream's Trainer,
# peak memory against `voicetune plan`, recovery from a real CUDA out-of-memory, exact resume.
# See bench/gpu_check.py for what each prints. Usage: bench/gpu_check.sh [OUT_DIR]
# Needs the project's environment (make install): .venv/bin/python, or VOICETUNE_PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${VOICETUNE_PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout 480 "$PY" bench/gpu_check.py "$@"
