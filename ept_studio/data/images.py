"""Decoding ordinary image files (PNG, JPEG, TIFF, BMP) to RGB pixels for display and the model.

DICOM has its own decoder; this one covers the exports clinicians and datasets hand around. Files
are opened read-only, their format is recognised from the first bytes (never from the suffix), the
pixel count is checked against ``max_pixels`` from the header before any pixel is decoded, and the
whole image is decoded at once, so a truncated file is an error instead of a padded picture.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import (
    BmpImagePlugin,
    Image,
    ImageFile,
    ImageOps,
    JpegImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
)

from ept_studio.errors import ImageDecodeError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"})
"""The lower-case suffixes of the files :func:`decode_image` reads."""

DEFAULT_MAX_PIXELS = 178_956_970
"""About 179 megapixels: above this a file is refused as a possible decompression bomb."""

_FACTORIES: tuple[tuple[bytes, type[ImageFile.ImageFile]], ...] = (
    (b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile),
    (b"\xff\xd8\xff", JpegImagePlugin.JpegImageFile),
    (b"II*\x00", TiffImagePlugin.TiffImageFile),
    (b"MM\x00*", TiffImagePlugin.TiffImageFile),
    (b"II+\x00", TiffImagePlugin.TiffImageFile),
    (b"MM\x00+", TiffImagePlugin.TiffImageFile),
    (b"BM", BmpImagePlugin.BmpImageFile),
)

# What Pillow raises on damaged or hostile data (its decoders are not uniform about it).
_PILLOW_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    IndexError,
    TypeError,
    KeyError,
    ZeroDivisionError,
    MemoryError,
    Image.DecompressionBombError,
)

_HIGH_DEPTH_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I", "F"})


def is_image_path(path: Path) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def decode_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image as an ``H x W x 3`` uint8 RGB array.

    Greyscale is replicated to three channels; 16-bit, 32-bit and float greyscale is stretched from
    its own minimum (0) to its maximum (255), a constant image giving zeros; 1-bit becomes 0 / 255;
    palette becomes RGB; transparency is composited on black; a JPEG's EXIF orientation is applied;
    a multi-page TIFF gives its first page. Every failure is an :class:`ImageDecodeError`.
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _decode(handle, path, max_pixels)
    except FileNotFoundError as err:
        raise ImageDecodeError(str(path), "file not found") from err
    except IsADirectoryError as err:
        raise ImageDecodeError(str(path), "this is a folder, not an image file") from err
    except PermissionError as err:
        raise ImageDecodeError(str(path), "permission denied") from err
    except OSError as err:
        raise ImageDecodeError(str(path), f"file cannot be read ({err.strerror or err})") from err


def _decode(handle: BinaryIO, path: Path, max_pixels: int) -> np.ndarray:
    source = _open(handle, path)
    _check_pixel_count(source, path, max_pixels)
    try:
        source.load()
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(str(path), _load_failure(err)) from err
    image = _apply_exif_orientation(source) if source.format == "JPEG" else source
    try:
        return _to_rgb(image)
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(str(path), f"colour mode {image.mode} cannot be shown") from err


def _open(handle: BinaryIO, path: Path) -> ImageFile.ImageFile:
    """Read only the header, with the plugin named by the signature (Pillow checks no size here)."""
    try:
        prefix = handle.read(16)
    except OSError as err:
        raise ImageDecodeError(str(path), f"file cannot be read ({err.strerror or err})") from err
    if not prefix:
        raise ImageDecodeError(str(path), "file is empty")
    factory = next((f for magic, f in _FACTORIES if prefix.startswith(magic)), None)
    if factory is None:
        raise ImageDecodeError(
            str(path), "not a recognised image format (PNG, JPEG, TIFF or BMP expected)"
        )
    handle.seek(0)
    try:
        return factory(handle, str(path))
    except _PILLOW_ERRORS as err:
        kind = factory.format
        raise ImageDecodeError(str(path), f"the {kind} header is damaged ({_short(err)})") from err


def _check_pixel_count(image: Image.Image, path: Path, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            str(path),
            f"image is {width} x {height} = {_megapixels(width * height)}, "
            f"above the {_megapixels(max_pixels)} limit",
        )


def _megapixels(pixels: int) -> str:
    megapixels = pixels / 1e6
    return f"{megapixels:.3g} MP" if megapixels < 1000 else f"{megapixels:,.0f} MP"


def _load_failure(err: BaseException) -> str:
    if isinstance(err, EOFError) or "truncated" in str(err).lower():
        return "file is truncated"
    if isinstance(err, Image.DecompressionBombError):
        return "image is above Pillow's own decompression-bomb limit"
    if isinstance(err, MemoryError):
        return "image is too large to decode in the memory available"
    return f"the image data is damaged ({_short(err)})"


def _short(err: BaseException) -> str:
    message = str(err)[:120]
    if isinstance(err, KeyError) or not message:  # a bare KeyError says only "133"
        message = f"{type(err).__name__} {message}".strip()
    return message


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    """Rotate / mirror as the EXIF orientation says; a broken EXIF block is ignored, not fatal."""
    try:
        rotated = ImageOps.exif_transpose(image)
    except (*_PILLOW_ERRORS, AttributeError) as err:
        logger.warning("ignoring an unreadable EXIF orientation (%s)", type(err).__name__)
        return image
    return rotated if rotated is not None else image


def _to_rgb(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        return _replicate(_stretch(np.asarray(image)))
    if mode == "1":
        return _replicate(np.asarray(image.convert("L")))
    if "A" in mode or "a" in mode or "transparency" in image.info:
        return _composite_on_black(np.asarray(image.convert("RGBA")))
    if mode == "L":
        return _replicate(np.asarray(image))
    return _writeable(np.asarray(image.convert("RGB")))


def _stretch(values: np.ndarray) -> np.ndarray:
    """Map the image's own finite min..max to 0..255; a constant (or all non-finite) image is 0."""
    data = values.astype(np.float32)
    finite = np.isfinite(data)
    if not finite.all():
        if not finite.any():
            return np.zeros(data.shape, dtype=np.uint8)
        data[~finite] = data[finite].min()
    low, high = float(data.min()), float(data.max())
    if high <= low:
        return np.zeros(data.shape, dtype=np.uint8)
    data -= low
    data *= np.float32(255.0 / (high - low))
    np.rint(data, out=data)
    np.clip(data, 0, 255, out=data)
    return data.astype(np.uint8)


def _replicate(grey: np.ndarray) -> np.ndarray:
    return np.repeat(grey.astype(np.uint8, copy=False)[:, :, None], 3, axis=2)


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    colour = rgba[:, :, :3].astype(np.uint16)
    alpha = rgba[:, :, 3:].astype(np.uint16)
    return ((colour * alpha + 127) // 255).astype(np.uint8)


def _writeable(array: np.ndarray) -> np.ndarray:
    return array if array.flags.writeable else array.copy()
