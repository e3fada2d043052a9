"""Export a prompt file to ONNX, checked against torch on real rendered images before it is kept.

The check images are the user's own (rendered as the model was tuned) or, when none are given, the
CT and MR sample files that ship inside pydicom, rendered the same way. The export records no path,
file name or header of those images: the ONNX metadata describes the model only.

``precision`` int8 (for the CPU) or fp16 (for CUDA GPUs) first makes the checked fp32 export in a
hidden file beside ``out``, then converts it and checks the result against it on the same images
(:mod:`ept_studio.core.onnx_precision`); only the reduced model is kept, and only if it passed.

A prompt file with a detail view exports with it: the graph takes the images at both sizes and
returns the combined logits, and every check feeds both.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ept_studio.common.errors import ExportError, ImageDecodeError
from ept_studio.common.files import file_sha256
from ept_studio.services.model.onnx_inference import image_decoder

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model_io import ModelInfo, PrecisionRecord
    from ept_studio.core.onnx_export import ParityReport
    from ept_studio.core.onnx_precision import PrecisionThresholds
    from ept_studio.services.model.inference import TunedHandle

REFERENCE_FILES = ("CT_small.dcm", "MR_small.dcm")
"""pydicom's own sample files (in its ``data/test_files`` folder), the default check images."""


@dataclasses.dataclass(frozen=True)
class OnnxExportResult:
    """A written ONNX file that passed its parity check (the fp32 export's, against torch) and, for
    int8 or fp16, its check against the fp32 export (``precision_check``; ``notes`` say where it
    ran when that matters)."""

    onnx_path: Path
    sha256: str
    size_bytes: int
    seconds: float
    parity: ParityReport
    check_source: str
    class_names: tuple[str, ...]
    precision: str = "fp32"
    precision_check: PrecisionRecord | None = None
    notes: tuple[str, ...] = ()


def reference_check_files() -> list[Path]:
    """pydicom's sample CT and MR files (without any download), where they are installed."""
    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    return [folder / name for name in REFERENCE_FILES if (folder / name).is_file()]


def check_images(paths: Sequence[Path], rendering: dict[str, object]) -> list[np.ndarray]:
    """Render ``paths`` as the model was tuned; a file that fails is an :class:`ExportError`."""
    decode = image_decoder(rendering)
    images = []
    for path in paths:
        try:
            images.append(decode(Path(path)))
        except ImageDecodeError as err:
            raise ExportError(f"the check image {err}; choose other check images") from err
    return images


def export_prompt_to_onnx(
    prompt_file: Path,
    out: Path,
    *,
    weights: Path | None = None,
    backbone: LoadedBackbone | None = None,
    check_files: Sequence[Path] = (),
    precision: str = "fp32",
    thresholds: PrecisionThresholds | None = None,
) -> OnnxExportResult:
    """Load ``prompt_file`` on its backbone (checksum verified) and export it to ``out``.

    ``precision``: fp32 (the default), int8 or fp16; ``thresholds`` what int8 or fp16 must reach
    against fp32 (None: top-1 agreement >= 0.99, map correlations >= 0.95).
    """
    from ept_studio.core.onnx_precision import precision_choice
    from ept_studio.services.model.inference import load_tuned_model

    precision_choice(precision)  # an unknown precision fails before the backbone loads
    handle = load_tuned_model(Path(prompt_file), weights=weights, backbone=backbone)
    return export_handle_to_onnx(
        handle, out, check_files=check_files, precision=precision, thresholds=thresholds
    )


def export_handle_to_onnx(
    handle: TunedHandle,
    out: Path,
    *,
    check_files: Sequence[Path] = (),
    precision: str = "fp32",
    thresholds: PrecisionThresholds | None = None,
) -> OnnxExportResult:
    """Export an already loaded tuned model; see :func:`export_prompt_to_onnx`."""
    from ept_studio.core.onnx_export import export_onnx, model_info
    from ept_studio.core.onnx_precision import Precision, precision_choice

    out, chosen = Path(out), precision_choice(precision)
    files, source = list(check_files), "your check images"
    if not files:
        files, source = reference_check_files(), "pydicom's CT and MR sample images"
    if not files:
        raise ExportError(
            f"{out}: not exported, no check images: pydicom's sample files are not installed "
            "here, so give a few images of your own to check the export with"
        )
    images = check_images(files, dict(handle.metadata.rendering))
    info = model_info(handle.model, handle.metadata, file_sha256(handle.prompt_file))
    if chosen is not Precision.FP32:
        return _export_reduced(handle, out, info, images, source, chosen.value, thresholds)
    report = export_onnx(handle.model, out, info, images, detail=handle.detail)
    return OnnxExportResult(
        report.path,
        report.sha256,
        report.size_bytes,
        report.seconds,
        report.parity,
        source,
        info.class_names,
    )


def _export_reduced(
    handle: TunedHandle,
    out: Path,
    info: ModelInfo,
    images: Sequence[np.ndarray],
    source: str,
    precision: str,
    thresholds: PrecisionThresholds | None,
) -> OnnxExportResult:
    """The fp32 export in a hidden file beside ``out``, then its int8 or fp16 copy as ``out``."""
    from ept_studio.core.model_io import preprocess_inputs
    from ept_studio.core.onnx_export import export_onnx
    from ept_studio.core.onnx_precision import PrecisionThresholds, export_precision

    fp32 = out.with_name(f".{out.name}.{secrets.token_hex(4)}.fp32.onnx")
    try:
        try:
            report = export_onnx(handle.model, fp32, info, images, detail=handle.detail)
        except ExportError as err:  # name the file asked for, not the hidden fp32 one
            raise type(err)(str(err).replace(str(fp32), str(out))) from err
        pixels, detail_pixels = preprocess_inputs(images, info)
        reduced = export_precision(
            fp32,
            out,
            precision,
            pixels,
            thresholds=thresholds or PrecisionThresholds(),
            detail_pixels=detail_pixels,
        )
    finally:
        fp32.unlink(missing_ok=True)
    return OnnxExportResult(
        reduced.path,
        file_sha256(reduced.path),
        reduced.size_bytes,
        report.seconds + reduced.seconds,
        report.parity,
        source,
        info.class_names,
        precision,
        reduced.record,
        reduced.notes,
    )
