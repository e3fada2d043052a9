"""The ONNX Runtime side of ``ept-studio bench latency``, in a process that never imports torch.

``python -m ept_studio.evidence.onnx_bench_worker MODEL PIXELS THREADS SPINNING [DEVICE]`` opens the
model the way ``predict --onnx`` does (an :class:`~ept_studio.core.onnx_runtime.OnnxRunner`;
SPINNING is ``auto``, ``on`` or ``off``; DEVICE ``cpu``, the default, or ``cuda``), warms it up on the
preprocessed ``PIXELS`` (batch 1: a ``.npy`` file, or for a model with a detail view a ``.npz`` file
holding ``pixels`` and ``detail_pixels``, see :func:`save_inputs`), prints one JSON line describing
the session, then answers JSON requests, one per line on stdin:

- ``{"op": "latency", "calls": N}`` -> ``{"seconds": [...]}``, one batch-1 run per value;
- ``{"op": "throughput", "folder": F, "batch_size": B}`` -> ``{"model_only_ips": x, "folder_ips":
  y}``: the model alone on preprocessed batches, and ``predict_paths`` over the folder;
- ``{"op": "quit"}``.

Between requests the process waits on its stdin, so its threads sleep while the parent measures
torch. Nothing here may import torch: the session must see the torch-free process ``predict
--onnx`` runs in (the parent checks ``torch_imported`` in the first line).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SPINNING_CHOICES = {"auto": None, "on": True, "off": False}

Inputs = tuple[np.ndarray, np.ndarray | None]
"""A model's preprocessed inputs: its pixels and, for a model with a detail view, its detail
pixels (else None)."""


def save_inputs(path: Path, pixels: np.ndarray, detail_pixels: np.ndarray | None = None) -> Path:
    """Write the worker's ``PIXELS`` file: ``.npy`` for a plain model, ``.npz`` with both arrays
    for a model with a detail view; returns the path written (its suffix set accordingly)."""
    if detail_pixels is None:
        target = path.with_suffix(".npy")
        np.save(target, pixels)
    else:
        target = path.with_suffix(".npz")
        np.savez(target, pixels=pixels, detail_pixels=detail_pixels)
    return target


def load_inputs(path: Path) -> Inputs:
    """What :func:`save_inputs` wrote."""
    if path.suffix == ".npz":
        with np.load(path) as stored:
            return stored["pixels"], stored["detail_pixels"]
    return np.load(path), None


def _latency(runner: Any, inputs: Inputs, calls: int) -> dict[str, Any]:
    seconds = []
    for _ in range(calls):
        start = time.perf_counter()
        runner.run(*inputs)
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds}


def _throughput(runner: Any, inputs: Inputs, folder: Path, batch_size: int) -> dict[str, Any]:
    from ept_studio.services.model import predict_paths

    files = len(list(folder.iterdir()))
    pixels = np.repeat(inputs[0], batch_size, axis=0)
    detail = None if inputs[1] is None else np.repeat(inputs[1], batch_size, axis=0)
    calls = max(1, files // batch_size)
    start = time.perf_counter()
    for _ in range(calls):
        runner.run(pixels, detail)
    model_only = batch_size * calls / (time.perf_counter() - start)
    finished = predict_paths(runner, [folder], batch_size=batch_size)
    return {
        "model_only_ips": model_only,
        "folder_ips": len(finished.predictions) / finished.seconds,
    }


def _reply(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    from ept_studio.core.onnx_runtime import OnnxRunner

    model, pixels_file, threads, spinning, *device = argv if argv is not None else sys.argv[1:]
    inputs = load_inputs(Path(pixels_file))
    runner = OnnxRunner(
        Path(model),
        device=device[0] if device else "cpu",
        threads=int(threads),
        spinning=SPINNING_CHOICES[spinning],
    )
    for _ in range(3):  # warm-up
        runner.run(*inputs)
    _reply(
        {
            "provider": runner.provider,
            "threads": runner.session_options.intra_op_num_threads,
            "spinning": runner.spinning,
            "torch_imported": "torch" in sys.modules,
        }
    )
    warmed_folders: set[str] = set()
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "latency":
            _reply(_latency(runner, inputs, int(request["calls"])))
        elif request["op"] == "throughput":
            folder = Path(request["folder"])
            if str(folder) not in warmed_folders:  # imports, the file cache
                _throughput(runner, inputs, folder, int(request["batch_size"]))
                warmed_folders.add(str(folder))
            _reply(_throughput(runner, inputs, folder, int(request["batch_size"])))
        elif request["op"] == "quit":
            break
        else:
            _reply({"error": f"unknown request {request['op']!r}"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
