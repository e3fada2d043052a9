"""A fingerprint of an image's decoded pixels, so one image is recognised in any encoding.

Two files can hold the same image with different bytes: a DICOM saved uncompressed and again
RLE- or JPEG-lossless-compressed, or with another header. Their file sha256 differ; the hash of
their decoded pixels (after the modality LUT, before any window or rendering) does not. The shape
and dtype are hashed too, so the same bytes read as another geometry are not taken as equal.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ept_studio.data.images import DecodedImage
from ept_studio.data.render import decode_file


def pixel_sha256(decoded: DecodedImage) -> str:
    """The sha256 of the decoded pixel array: its shape, dtype and bytes (C order)."""
    pixels = np.ascontiguousarray(decoded.pixels)
    digest = hashlib.sha256()
    digest.update(f"{pixels.shape}|{pixels.dtype.str}|".encode("ascii"))
    digest.update(pixels.tobytes())
    return digest.hexdigest()


def file_pixel_sha256(path: Path, frame: int = 0) -> str:
    """:func:`pixel_sha256` of frame ``frame`` of a file; an ImageDecodeError if it cannot be read."""
    return pixel_sha256(decode_file(path, frame=frame))
