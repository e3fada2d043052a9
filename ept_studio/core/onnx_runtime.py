"""Run an exported EPT Studio model with ONNX Runtime: no torch, GPU when there is one, else the CPU.

This module must never import torch (directly or through another module): it is what runs on a
workstation or in a pipeline where PyTorch is not installed.

Providers are tried CUDA first, then the CPU. onnxruntime-gpu installs on machines without a GPU
and then logs red CUDA load errors when asked for the CUDA provider, so the runner first looks for an
NVIDIA driver with at least one device (through the driver library: no torch, no ``nvidia-smi``) and
only asks for CUDA when it finds one; a missing GPU is a note, not an error.

Intra-op thread spinning: ONNX Runtime's worker threads can spin (busy-wait) between the operators
of a run instead of sleeping; at batch 1 that is ~15 % faster on a quiet 2-core CPU, but spinning
threads steal the cores from torch when both run in one process (the app: training, the torch
runner). :class:`OnnxRunner` therefore spins by default only when torch is not imported in the
process when the session is made (``predict --onnx``, pipelines), and not next to torch; pass
``spinning=`` to choose. Threads spin only during a run and shortly after it (about 60 ms on the
2-core VM), never while the session idles.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ept_studio.common.errors import ConfigError, OnnxModelError
from ept_studio.core.gpu import nvidia_gpu_count
from ept_studio.core.model_io import (
    DETAIL_INPUT_NAME,
    INPUT_NAME,
    OUTPUT_NAMES,
    ModelInfo,
    ModelOutputs,
    check_model_inputs,
    model_outputs,
    preprocess_inputs,
)

logger = logging.getLogger(__name__)

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
_QUIET = 3  # ONNX Runtime log severity: errors and fatal only


class Device(str, Enum):
    """Where to run: ``auto`` (the GPU when there is one), or force the CPU or CUDA."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


# ---------------------------------------------------------------------------------------------
# Providers


def choose_providers(device: Device | str = Device.AUTO) -> tuple[list[str], list[str]]:
    """The providers to ask for, in order, and notes for the user (why not the GPU)."""
    try:
        device = Device(device)
    except ValueError as err:
        raise ConfigError(f"unknown ONNX device {device!r}: choose auto, cpu or cuda") from err
    if device is Device.CPU:
        return [CPU_PROVIDER], []
    if CUDA_PROVIDER not in ort.get_available_providers():
        return [CPU_PROVIDER], ["this ONNX Runtime has no CUDA provider; running on the CPU"]
    if nvidia_gpu_count() == 0:
        return [CPU_PROVIDER], ["no NVIDIA GPU found; running on the CPU"]
    _preload_cuda_libraries()
    return [CUDA_PROVIDER, CPU_PROVIDER], []


def _preload_cuda_libraries() -> None:
    """Let onnxruntime-gpu find the CUDA / cuDNN libraries that torch's wheels bring, if any."""
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            preload()
    except (OSError, RuntimeError, ValueError) as err:
        logger.info("ONNX Runtime could not preload the CUDA libraries: %s", err)
    if chatter.getvalue():
        logger.info("ONNX Runtime preload: %s", chatter.getvalue().strip()[:500])


INTRA_OP_SPINNING = "session.intra_op.allow_spinning"
INTER_OP_SPINNING = "session.inter_op.allow_spinning"


def torch_in_process() -> bool:
    """Whether torch is imported in this process (then ONNX Runtime's threads should not spin)."""
    return "torch" in sys.modules


def default_spinning() -> bool:
    """Spin the intra-op threads only where torch is not imported (see the module docstring)."""
    return not torch_in_process()


def session_options(threads: int | None = None, *, spinning: bool = False) -> ort.SessionOptions:
    """Quiet logs, all graph optimisations; intra-op threads spin only when ``spinning``.

    The inter-op pool is unused (sequential execution) and never spins.
    """
    options = ort.SessionOptions()
    options.log_severity_level = _QUIET
    options.add_session_config_entry(INTRA_OP_SPINNING, "1" if spinning else "0")
    options.add_session_config_entry(INTER_OP_SPINNING, "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = threads
    return options


# ---------------------------------------------------------------------------------------------
# The runner


def _ort_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception types (they derive from Exception only) plus the usual ones."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = (
        "Fail",
        "InvalidArgument",
        "InvalidGraph",
        "InvalidProtobuf",
        "NoSuchFile",
        "NoModel",
        "NotImplemented",
        "ModelLoaded",
        "RuntimeException",
        "EPFail",
        "EngineError",
        "ModelLoadCanceled",
        "ModelRequiresCompilation",
    )
    found = [getattr(state, n) for n in names if isinstance(getattr(state, n, None), type)]
    return (*found, RuntimeError, ValueError, OSError)


_ORT_ERRORS = _ort_errors()


class OnnxRunner:
    """An EPT Studio ONNX model in an ONNX Runtime session.

    Opening checks the file, its metadata and its inputs and outputs, so a corrupt or foreign file
    fails here with a message naming it, not at the first image.

    ``threads``: intra-op threads (None: ONNX Runtime's choice, one per core). ``spinning``: let
    those threads busy-wait between operators; None (the default) spins only if torch is not
    imported in this process now (:func:`default_spinning`): fast where ONNX Runtime runs alone,
    no stolen cores where torch runs next to it. On a machine loaded by other processes spinning can
    cost more than it saves; pass ``False`` there.
    """

    def __init__(
        self,
        path: Path,
        *,
        device: Device | str = Device.AUTO,
        threads: int | None = None,
        spinning: bool | None = None,
    ) -> None:
        self.path = Path(path)
        _check_file(self.path)
        ort.set_default_logger_severity(_QUIET)
        providers, notes = choose_providers(device)
        spin = default_spinning() if spinning is None else bool(spinning)
        try:
            self._session = ort.InferenceSession(
                str(self.path),
                sess_options=session_options(threads, spinning=spin),
                providers=providers,
            )
        except _ORT_ERRORS as err:
            raise OnnxModelError(
                f"{self.path}: not a valid ONNX model ({_short(err)}); the file may be damaged "
                "or incomplete, export it again"
            ) from err
        meta = self._session.get_modelmeta().custom_metadata_map
        self._info = ModelInfo.from_metadata_props(meta, str(self.path))
        _check_signature(self._session, self._info, self.path)
        self._provider = str(self._session.get_providers()[0])
        if providers[0] == CUDA_PROVIDER and self._provider != CUDA_PROVIDER:
            notes.append("the CUDA provider could not start; running on the CPU")
        self._notes = tuple(notes)

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def provider(self) -> str:
        """The execution provider that actually runs the model (``session.get_providers()``)."""
        return self._provider

    @property
    def notes(self) -> tuple[str, ...]:
        return self._notes

    @property
    def spinning(self) -> bool:
        """Whether the session's intra-op threads may spin (read back from its options)."""
        entry = self.session_options.get_session_config_entry(INTRA_OP_SPINNING)
        return bool(entry == "1")

    @property
    def session_options(self) -> ort.SessionOptions:
        """The options the session runs with (its config entries, threads, optimisation level)."""
        return self._session.get_session_options()

    def run(self, pixels: np.ndarray, detail_pixels: np.ndarray | None = None) -> ModelOutputs:
        """The model on preprocessed ``pixels`` and, for a model with a detail view (only then),
        ``detail_pixels`` (:func:`~ept_studio.core.model_io.check_model_inputs`)."""
        check_model_inputs(self._info, pixels, detail_pixels)
        feed = {INPUT_NAME: np.ascontiguousarray(pixels, dtype=np.float32)}
        if detail_pixels is not None:
            feed[DETAIL_INPUT_NAME] = np.ascontiguousarray(detail_pixels, dtype=np.float32)
        try:
            logits, probabilities, attention, rollout = self._session.run(list(OUTPUT_NAMES), feed)
        except _ORT_ERRORS as err:
            raise OnnxModelError(f"{self.path}: the model failed to run ({_short(err)})") from err
        return model_outputs(self._info, logits, probabilities, attention, rollout, self._provider)

    def predict(self, images: Sequence[np.ndarray]) -> ModelOutputs:
        return self.run(*preprocess_inputs(images, self._info))


def _check_file(path: Path) -> None:
    if not path.exists():
        raise OnnxModelError(f"{path}: file not found")
    if not path.is_file():
        raise OnnxModelError(f"{path}: this is a folder, not an ONNX model file")
    if path.stat().st_size == 0:
        raise OnnxModelError(f"{path}: the file is empty, not an ONNX model")


def _check_signature(session: ort.InferenceSession, info: ModelInfo, path: Path) -> None:
    """Input ``pixels [batch, 3, S, S]`` (and ``detail_pixels [batch, 3, D, D]`` exactly when the
    metadata gives a detail size) and the four outputs with the shapes the metadata says."""
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = {o.name: o.shape for o in session.get_outputs()}
    expected = {
        "logits": [len(info.class_names)],
        "probabilities": [len(info.class_names)],
        "attention": [info.heads, info.patches],
        "rollout": [info.patches],
    }
    problems = _input_problems(inputs, info)
    for name, tail in expected.items():
        if name not in outputs:
            problems.append(f"no {name!r} output")
        elif list(outputs[name][1:]) != tail:
            problems.append(f"output {name!r} has shape {outputs[name]}, expected [batch, {tail}]")
    if problems:
        raise OnnxModelError(
            f"{path}: its inputs and outputs do not match its EPT Studio metadata "
            f"({'; '.join(problems)[:300]}); export it again"
        )


def _input_problems(inputs: dict[str, list[object]], info: ModelInfo) -> list[str]:
    """What is wrong with the graph's inputs for ``info``: a detail model's graph must take the
    detail pixels, a plain model's graph must not (else one of the two views would be lost)."""
    size, detail = info.input_size, info.detail_input_size
    expected = {INPUT_NAME: [3, size, size]}
    if detail is not None:
        expected[DETAIL_INPUT_NAME] = [3, detail, detail]
    if DETAIL_INPUT_NAME in inputs and detail is None:
        return ["the graph takes detail pixels but its metadata gives no detail view"]
    if detail is not None and DETAIL_INPUT_NAME not in inputs:
        return [
            f"its metadata gives a {detail} px detail view but the graph takes no detail pixels"
        ]
    wanted = ", ".join(
        f"{name} [batch, {', '.join(map(str, tail))}]" for name, tail in expected.items()
    )
    if list(inputs) != list(expected) or any(
        list(inputs[name][1:]) != tail for name, tail in expected.items()
    ):
        return [f"input {inputs} instead of {wanted}"]
    return []


def _short(err: BaseException) -> str:
    text = str(err).replace("[ONNXRuntimeError] : ", "").strip()
    return text[:200] or type(err).__name__
