"""Smaller, faster copies of a checked fp32 ONNX export: int8 for the CPU, fp16 for CUDA GPUs.

Torch-free (onnx, ONNX Runtime, numpy). The fp32 export is the reference: it has already passed its
parity check against torch (:mod:`ept_studio.core.onnx_export`). From it:

- **int8**: ONNX Runtime's dynamic quantization. The weights of every MatMul and Gemm with a constant
  weight (the blocks' qkv, projection and MLP layers, and the head) are stored as signed 8-bit
  integers, one scale per tensor; each run quantizes the activations on the fly. The attention
  products (queries by keys, weights by values), softmax and layer norms stay fp32, so no
  calibration images are needed. A weight the exporter stores once for two users (a detail view
  runs the backbone's weights a second time) is quantized too (:func:`inline_weight_aliases`).
- **fp16**: every float tensor and operator in half precision, except the inputs and outputs (kept
  float32, so callers see no difference) and the operators whose results leave fp16's range or lose
  its precision (:data:`FP32_OPS`, and ONNX Runtime's own list).

The reduced model is checked against the fp32 export on the check images before it is kept (the
same atomic write as the fp32 export: nothing appears unless it passed). A model with a detail view
(a second input, ``detail_pixels``) is converted whole, both views, and checked with both inputs
fed; its detail pixels are required, so the check never runs it without its second view. The figures and the
thresholds go into its metadata as a :class:`~ept_studio.core.model_io.PrecisionRecord`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import time
from collections.abc import Iterator
from enum import Enum
from pathlib import Path

import numpy as np
import onnx

from ept_studio.common.errors import ConfigError, ExportError, OnnxModelError
from ept_studio.core.model_io import ModelOutputs, PrecisionRecord
from ept_studio.core.onnx_runtime import CUDA_PROVIDER, OnnxRunner

logger = logging.getLogger(__name__)

MIN_TOP1_AGREEMENT = 0.99
MIN_MAP_CORRELATION = 0.95
FP32_OPS = ("Exp", "Log", "Pow", "Sqrt", "ReduceLogSumExp", "ReduceSumSquare")
"""Operators an fp16 model keeps in fp32: exponentials, logarithms and squares overflow or
underflow fp16's range (largest value 65504) where fp32 does not."""

INT8_METHOD = (
    "dynamic quantization (ONNX Runtime): MatMul and Gemm weights signed int8, one scale per "
    "tensor; activations quantized per run; attention products, softmax and norms in fp32"
)
FP16_METHOD = (
    "float16 (ONNX Runtime's converter): inputs and outputs float32; "
    f"{', '.join(FP32_OPS)} kept in fp32"
)


class Precision(str, Enum):
    """The number format of an exported model's weights and arithmetic."""

    FP32 = "fp32"
    INT8 = "int8"
    FP16 = "fp16"


def precision_choice(value: Precision | str) -> Precision:
    """``value`` as a :class:`Precision`; anything else is a :class:`ConfigError`."""
    try:
        return Precision(value)
    except ValueError as err:
        raise ConfigError(f"unknown precision {value!r}: choose fp32, int8 or fp16") from err


@dataclasses.dataclass(frozen=True)
class PrecisionThresholds:
    """What a reduced model must reach against the fp32 export to be kept."""

    min_agreement: float = MIN_TOP1_AGREEMENT
    min_correlation: float = MIN_MAP_CORRELATION

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(
                    f"the precision check's {name} must be between 0 and 1, got {value}"
                )


@dataclasses.dataclass(frozen=True)
class PrecisionExport:
    """A written reduced-precision model; ``notes`` say where the check ran when it matters."""

    path: Path
    size_bytes: int
    seconds: float
    record: PrecisionRecord
    notes: tuple[str, ...]


def export_precision(
    reference: Path,
    out: Path,
    precision: Precision | str,
    pixels: np.ndarray,
    *,
    thresholds: PrecisionThresholds = PrecisionThresholds(),
    detail_pixels: np.ndarray | None = None,
) -> PrecisionExport:
    """Convert the fp32 model ``reference`` to ``precision``, check it on ``pixels``, write ``out``.

    ``pixels`` are the preprocessed check images ``[B, 3, S, S]``; ``detail_pixels`` the same
    images at the detail view's size, for (and only for) a model with a detail view. The model is
    built next to ``out`` and renamed over it only once it passed; otherwise :class:`ExportError`
    with the figures, and ``out`` is left as it was.
    """
    chosen = precision_choice(precision)
    if chosen is Precision.FP32:
        raise ConfigError("the fp32 model is the export itself; choose int8 or fp16")
    out, start = Path(out), time.perf_counter()
    temporary = out.with_name(f".{out.name}.{secrets.token_hex(4)}.{chosen.value}.tmp")
    try:
        convert(Path(reference), temporary, chosen)
        record, notes = check_precision(
            Path(reference), temporary, chosen, pixels, thresholds, detail_pixels=detail_pixels
        )
        _write_record(temporary, record)
        os.replace(temporary, out)
    except ExportError as err:
        raise type(err)(f"{out}: not exported, {err}") from err
    except OSError as err:
        raise ExportError(f"{out}: not exported, {err.strerror or err}") from err
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("exported an %s ONNX model: %s", chosen.value, record)
    seconds = time.perf_counter() - start
    return PrecisionExport(out, out.stat().st_size, seconds, record, notes)


def convert(reference: Path, target: Path, precision: Precision) -> None:
    """Write ``reference`` converted to ``precision`` (int8 or fp16) to ``target``."""
    try:
        if precision is Precision.INT8:
            _quantize_int8(reference, target)
        else:
            _convert_fp16(reference, target)
    except (ValueError, RuntimeError, TypeError, KeyError, onnx.checker.ValidationError) as err:
        raise ExportError(
            f"ONNX Runtime could not convert the model to {precision.value} ({str(err)[:200]})"
        ) from err


def _quantize_int8(reference: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    direct = target.with_name(f"{target.name}.direct.onnx")
    model = onnx.load(str(reference))
    if inline_weight_aliases(model):
        onnx.save(model, str(direct))
        reference = direct
    try:
        with _quiet_onnxruntime_tools():
            quantize_dynamic(
                reference,
                target,
                op_types_to_quantize=["MatMul", "Gemm"],
                per_channel=False,
                weight_type=QuantType.QInt8,
                extra_options={"MatMulConstBOnly": True},
            )
    finally:
        direct.unlink(missing_ok=True)


def inline_weight_aliases(model: onnx.ModelProto) -> int:
    """Let every operator read a weight straight from its initializer; returns how many
    ``Identity`` aliases were removed.

    The exporter stores equal weights once and gives the other users an ``Identity`` of it: a
    model with a detail view runs the same frozen backbone weights twice (at both input sizes). A
    MatMul whose weight comes through an ``Identity`` is not a constant weight to the quantizer,
    which would leave it fp32 and keep the fp32 weight beside the int8 one (a larger file).
    """
    weights = {tensor.name for tensor in model.graph.initializer}
    outputs = {value.name for value in model.graph.output}
    aliases = {
        node.output[0]: node.input[0]
        for node in model.graph.node
        if node.op_type == "Identity" and node.input[0] in weights and node.output[0] not in outputs
    }
    if not aliases:
        return 0
    kept = [
        node
        for node in model.graph.node
        if not (node.op_type == "Identity" and node.output[0] in aliases)
    ]
    for node in kept:
        for index, name in enumerate(node.input):
            if name in aliases:
                node.input[index] = aliases[name]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return len(aliases)


def _convert_fp16(reference: Path, target: Path) -> None:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(reference))
    with _quiet_onnxruntime_tools():
        converted = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *FP32_OPS]
        )
    onnx.save(converted, str(target))


class _DropToolWarnings(logging.Filter):
    """ONNX Runtime's tools warn through the root logger (advice on pre-processing, truncated
    constants); those are for their own command lines, not the app's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        from_tool = "onnxruntime" in record.pathname
        return not (from_tool and record.levelno < logging.ERROR)


@contextlib.contextmanager
def _quiet_onnxruntime_tools() -> Iterator[None]:
    """Drop the tools' warnings: those sent through the root logger, and those of their own
    loggers (``onnxruntime.*``), while the block runs."""
    root, quiet = logging.getLogger(), _DropToolWarnings()
    tools = logging.getLogger("onnxruntime")
    level = tools.level
    root.addFilter(quiet)
    tools.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        tools.setLevel(level)


def check_precision(
    reference: Path,
    candidate: Path,
    precision: Precision,
    pixels: np.ndarray,
    thresholds: PrecisionThresholds = PrecisionThresholds(),
    *,
    detail_pixels: np.ndarray | None = None,
) -> tuple[PrecisionRecord, tuple[str, ...]]:
    """Run both models on ``pixels`` (and a detail model on its ``detail_pixels`` too) and
    compare; :class:`ExportError` with the figures when short.

    The fp32 reference runs on the CPU (as its parity check did). int8 runs on the CPU, where its
    integer kernels are; fp16 on a CUDA GPU when there is one, else on the CPU, and a note says so.
    """
    device = "auto" if precision is Precision.FP16 else "cpu"
    try:
        fp32 = OnnxRunner(reference, device="cpu", spinning=False).run(pixels, detail_pixels)
        runner = OnnxRunner(candidate, device=device, spinning=False)
        reduced = runner.run(pixels, detail_pixels)
    except OnnxModelError as err:
        raise ExportError(
            f"the {precision.value} model could not be run by ONNX Runtime: {err}"
        ) from err
    record = compare(fp32, reduced, precision, thresholds)
    notes = _check_notes(precision, runner.provider)
    failures = shortfalls(record)
    if failures:
        raise ExportError(
            f"the {precision.value} model is too far from the fp32 model on {record.images} "
            f"check images ({' and '.join(failures)} too low; correlations are the lowest "
            f"image's): {figures_text(record)}; use the fp32 export"
        )
    return record, notes


def _check_notes(precision: Precision, provider: str) -> tuple[str, ...]:
    if precision is Precision.FP16 and provider != CUDA_PROVIDER:
        return (
            "no CUDA GPU here: the fp16 model was checked on the CPU; a GPU runs it with other "
            "kernels, so check its results there once",
        )
    return ()


def compare(
    fp32: ModelOutputs,
    reduced: ModelOutputs,
    precision: Precision,
    thresholds: PrecisionThresholds = PrecisionThresholds(),
) -> PrecisionRecord:
    """The figures of ``reduced`` against ``fp32`` (the same images, in the same order)."""
    agreement = np.argmax(fp32.logits, axis=1) == np.argmax(reduced.logits, axis=1)
    attention = [
        pearson(a.mean(axis=0), b.mean(axis=0))
        for a, b in zip(fp32.attention, reduced.attention, strict=True)
    ]
    rollout = [pearson(a, b) for a, b in zip(fp32.rollout, reduced.rollout, strict=True)]
    return PrecisionRecord(
        precision=precision.value,
        method=INT8_METHOD if precision is Precision.INT8 else FP16_METHOD,
        images=len(agreement),
        top1_agreement=float(np.mean(agreement)),
        attention_correlation=min(attention),
        rollout_correlation=min(rollout),
        min_agreement=thresholds.min_agreement,
        min_correlation=thresholds.min_correlation,
        provider=reduced.provider,
    )


def shortfalls(record: PrecisionRecord) -> list[str]:
    """The names of the figures below the record's thresholds; empty when none."""
    return [name for name, value, needed in _figures(record) if not value >= needed]  # NaN too


def figures_text(record: PrecisionRecord) -> str:
    """Every figure with what it needs, in words."""
    return ", ".join(
        f"{name} {value:.4f} (needs >= {needed:g})" for name, value, needed in _figures(record)
    )


def _figures(record: PrecisionRecord) -> tuple[tuple[str, float, float], ...]:
    return (
        ("top-1 agreement", record.top1_agreement, record.min_agreement),
        ("attention-map correlation", record.attention_correlation, record.min_correlation),
        ("rollout-map correlation", record.rollout_correlation, record.min_correlation),
    )


def pearson(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson's correlation of two maps; two flat maps correlate 1 when equal, else 0."""
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    scale = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    if scale == 0.0:
        return 1.0 if np.allclose(first, second) else 0.0
    return float(np.sum(a * b) / scale)


def _write_record(path: Path, record: PrecisionRecord) -> None:
    """Add the record to the model's metadata (the other entries, from the fp32 export, stay)."""
    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != "precision"]
    del proto.metadata_props[:]
    entries = [*kept, ("precision", json.dumps(record.to_dict(), sort_keys=True))]
    for key, value in sorted(entries):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
