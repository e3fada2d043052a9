"""The DICOM files installed with ``pydicom`` / ``pydicom-data``, rendered as 8-bit RGB frames.

Decoding and rendering are the app's own (:func:`ept_studio.data.render.render_file` with the
default :class:`~ept_studio.data.render.RenderingSpec`: modality LUT, the file's VOI LUT or first
window, else a 0.5-99.5 percentile window, MONOCHROME1 inverted, colour and palettes to RGB), so
the benchmark sees the pixels the app would train on. The files themselves are listed by
:func:`ept_studio.data.packaged_dicom.installed_dicom_files`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from ept_studio.common.errors import ImageDecodeError
from ept_studio.data.dicom import DicomHeader, read_dicom_header
from ept_studio.data.render import RenderingSpec, render_file
from ept_studio.evidence.datasets.base import SkippedSource, shrink

DEFAULT_MAX_SIDE = 512
"""Rendered frames are shrunk to at most this many pixels a side (the model sees 224)."""


@dataclasses.dataclass(frozen=True, eq=False)
class DicomFrames:
    """The rendered frames of one DICOM file and the header facts the datasets label from."""

    name: str
    modality: str
    frames: list[np.ndarray] = dataclasses.field(repr=False)
    series_key: str


def read_dicom(
    name: str,
    path: Path,
    max_side: int = DEFAULT_MAX_SIDE,
    modalities: frozenset[str] | None = None,
) -> DicomFrames | SkippedSource:
    """Render every frame of one file, or say why it cannot be used.

    With ``modalities``, a file of another modality is skipped from its header, undecoded.
    """
    try:
        header = read_dicom_header(path)
    except ImageDecodeError as err:
        return SkippedSource(name, f"cannot be read: {err.reason}")
    modality = (header.modality or "").upper()
    if modalities is not None and modality not in modalities:
        return SkippedSource(name, f"modality {modality or 'missing'}")
    if not header.has_pixel_data:
        return SkippedSource(name, "no pixel data")
    try:
        frames = [
            shrink(render_file(path, RenderingSpec(frame=index)), max_side)
            for index in range(header.frames)
        ]
    except ImageDecodeError as err:
        return SkippedSource(name, f"cannot be decoded: {err.reason}")
    return DicomFrames(name, modality, frames, _series_key(header, name))


def _series_key(header: DicomHeader, name: str) -> str:
    """Series UID + image size, hashed: pydicom's anonymised files share one series UID."""
    parts = [header.series_instance_uid or name, str(header.rows), str(header.columns)]
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:16]


class FrameDeduplicator:
    """Drops a frame that repeats one already kept from another file (same picture, other encoding).

    pydicom ships many images several times (uncompressed, RLE, JPEG 2000, big endian ...). Two
    frames of the same shape whose 16 x 16 grey thumbnails differ by less than ``tolerance`` grey
    levels on average count as one. Frames of one file are never merged with each other.
    """

    def __init__(self, tolerance: float = 3.0) -> None:
        self.tolerance = tolerance
        self._kept: dict[tuple[int, ...], list[tuple[str, np.ndarray]]] = {}

    def is_new(self, source: str, frame: np.ndarray) -> bool:
        """Whether ``frame`` of file ``source`` is new; a new frame is remembered."""
        thumb = np.asarray(
            Image.fromarray(frame).convert("L").resize((16, 16), Image.Resampling.BILINEAR),
            dtype=np.float64,
        )
        kept = self._kept.setdefault(tuple(frame.shape), [])
        for other_source, other in kept:
            if other_source != source and float(np.abs(thumb - other).mean()) < self.tolerance:
                return False
        kept.append((source, thumb))
        return True
