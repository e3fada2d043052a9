#!/usr/bin/env bash
# There, in one device call: `bash packaging/device/run.sh` with carry [".device"].
# PYTHON=.venv/bin/python OUT=/tmp/x bash packaging/device/run.sh --device cpu --shots 1 --draws 1
# --rounds 0 --methods prototype: a dry run here (bf16 is emulated on this CPU, ~20x slower).
set -euo pipefail
cd "$(dirname "$0")/../.."
"${PYTHON:=python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .device/whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
mkdir -p "${OUT:=/tmp/ept-bf16-out}"
"$PYTHON" packaging/device/bf16_check.py run --out "$OUT" "$@" 2>&1 \
    | tee "$OUT/run.log"
