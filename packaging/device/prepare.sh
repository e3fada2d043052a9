#!/usr/bin/env bash
# Here, once, before a device call: the backbone's half copy and the wheels the device lacks, in
# .device/ (ignored by git, carried by the call). See packaging/device/bf16_check.py.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
.venv/bin/python packaging/device/bf16_check.py half-copy
rm -rf .device/whl
# Pure-Python packages the device image does not hold (it has torch, timm, numpy, scikit-image,
# onnx, onnxscript and the CPU build of onnxruntime; crepes makes the prediction sets).
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux2014_x86_64 -d .device/whl \
    pydicom==3.0.2 sqlite-utils==4.2.1 sqlite-fts4==1.0.3 click-default-group==1.2.4 \
    platformdirs==4.14.9 crepes==0.9.1
du -sh .device .device/*
