"""Decoded images, and decoding ordinary image files (PNG, JPEG, TIFF, BMP) through Pillow.

:class:`DecodedImage` is what every decoder hands to rendering: full-precision pixels plus what the
file says about showing them. DICOM has its own decoder (``dicom.py``); this module covers the
exports clinicians and datasets hand around. Files are opened read-only, their format is recognised
from the first bytes (never from the suffix), the pixel count is checked against ``max_pixels`` from
the header before any pixel is decoded, and the whole image is decoded at once, so a truncated file
is an error instead of a padded picture.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import struct
from collections.abc import Iterator
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

from ept_studio.common.errors import ImageDecodeError

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


@dataclasses.dataclass(frozen=True, eq=False)
class VoiLut:
    """The first VOI LUT Sequence item of a DICOM file, as pydicom reads it.

    A stored value ``x`` (after the modality LUT) shows as ``table[clip(floor(x) - first_mapped)]``,
    on a scale whose white is ``2**bits - 1``.
    """

    first_mapped: int
    bits: int
    table: np.ndarray = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedImage:
    """One frame of an image file, before any display decision: what rendering starts from.

    ``pixels`` keep full precision (float32, or float64 where float32 would round) and are finite:
    ``H x W`` grey values after the modality LUT, or ``H x W x 3`` RGB for colour. ``windows`` are the file's own
    (centre, width) pairs, the first being its default; ``display_range`` is the value range that
    maps to black .. white when nothing else decides (8-bit files, colour), None meaning "use a
    percentile window".
    """

    pixels: np.ndarray = dataclasses.field(repr=False)
    photometric: str
    is_colour: bool
    frames: int = 1
    frame: int = 0
    windows: tuple[tuple[float, float], ...] = ()
    voi_function: str = "LINEAR"
    voi_lut: VoiLut | None = None
    modality: str | None = None
    pixel_spacing: tuple[float, float] | None = None
    display_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        expected = 3 if self.is_colour else 2
        shape = self.pixels.shape
        if self.pixels.ndim != expected or (self.is_colour and shape[2] != 3):
            raise ValueError(f"pixels of shape {shape} do not fit is_colour={self.is_colour}")
        if not 0 <= self.frame < self.frames:
            raise ValueError(f"frame {self.frame} is outside 0..{self.frames - 1}")

    @property
    def has_voi_lut_sequence(self) -> bool:
        return self.voi_lut is not None

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def is_image_path(path: Path) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_SUFFIXES` (any case)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def has_pillow_signature(prefix: bytes) -> bool:
    """Whether a file starting with ``prefix`` (16 bytes are enough) is one Pillow decodes here."""
    return any(prefix.startswith(magic) for magic, _ in _FACTORIES)


def decode_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image as an ``H x W x 3`` uint8 RGB array.

    Greyscale is replicated to three channels; 16-bit, 32-bit and float greyscale is stretched from
    its own minimum (0) to its maximum (255), a constant image giving zeros; 1-bit becomes 0 / 255;
    palette becomes RGB; transparency is composited on black; a JPEG's EXIF orientation is applied;
    a multi-page TIFF gives its first page. Every failure is an :class:`ImageDecodeError`.
    """
    path = Path(path)
    with open_for_decoding(path) as handle:
        image, _ = _load_page(handle, path, max_pixels, 0)
        try:
            return _to_rgb(image)
        except _PILLOW_ERRORS as err:
            raise _mode_error(path, image) from err


def decode_pillow_file(
    path: Path, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """One page (``frame``) of a PNG / JPEG / TIFF / BMP file, at its full bit depth.

    8-bit grey and every colour image get a ``display_range`` of 0..255 (shown as stored); 16-bit,
    32-bit and float grey keep their values for a window or a percentile to decide. Transparency is
    composited on black, palette becomes RGB, a JPEG's EXIF orientation is applied.
    """
    path = Path(path)
    with open_for_decoding(path) as handle:
        image, frames = _load_page(handle, path, max_pixels, frame)
        try:
            return _to_decoded(image, frames, frame)
        except _PILLOW_ERRORS as err:
            raise _mode_error(path, image) from err


@contextlib.contextmanager
def open_for_decoding(path: Path) -> Iterator[BinaryIO]:
    """``open(path, "rb")`` whose failures are :class:`ImageDecodeError` naming the file."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as err:
        raise read_failure(path, err) from err
    with handle:
        yield handle


def read_failure(path: Path, err: OSError) -> ImageDecodeError:
    """The :class:`ImageDecodeError` for a file that cannot be opened or read."""
    if isinstance(err, FileNotFoundError):
        return ImageDecodeError(str(path), "file not found")
    if isinstance(err, IsADirectoryError):
        return ImageDecodeError(str(path), "this is a folder, not an image file")
    if isinstance(err, PermissionError):
        return ImageDecodeError(str(path), "permission denied")
    return ImageDecodeError(
        str(path), f"file cannot be read ({err.strerror or type(err).__name__})"
    )


def _mode_error(path: Path, image: Image.Image) -> ImageDecodeError:
    return ImageDecodeError(str(path), f"colour mode {image.mode} cannot be shown")


def _load_page(
    handle: BinaryIO, path: Path, max_pixels: int, frame: int
) -> tuple[Image.Image, int]:
    """Page ``frame`` of the image, decoded, and the number of pages (EXIF orientation applied)."""
    source = _open(handle, path)
    check_pixel_limit(path, source.size[0], source.size[1], 1, max_pixels)
    frames = _page_count(source, path)
    check_frame_index(path, frame, frames)
    try:
        if frame:
            source.seek(frame)
            check_pixel_limit(path, source.size[0], source.size[1], 1, max_pixels)
        source.load()
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(str(path), _load_failure(err)) from err
    image = _apply_exif_orientation(source) if source.format == "JPEG" else source
    return image, frames


def _page_count(image: ImageFile.ImageFile, path: Path) -> int:
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except _PILLOW_ERRORS as err:
        raise ImageDecodeError(str(path), _load_failure(err)) from err


def check_frame_index(path: Path, frame: int, frames: int) -> None:
    """An :class:`ImageDecodeError` unless ``0 <= frame < frames``."""
    if not 0 <= frame < frames:
        noun = "frame" if frames == 1 else "frames"
        raise ImageDecodeError(
            str(path),
            f"frame {frame} asked for, but the file has {frames} {noun} (0 to {frames - 1})",
        )


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


def check_pixel_limit(path: Path, width: int, height: int, frames: int, max_pixels: int) -> None:
    """An :class:`ImageDecodeError` when ``width x height (x frames)`` is above ``max_pixels``."""
    pixels = width * height * frames
    if pixels > max_pixels:
        size = f"{width} x {height}" + (f" x {frames} frames" if frames != 1 else "")
        raise ImageDecodeError(
            str(path),
            f"image is {size} = {_megapixels(pixels)}, above the {_megapixels(max_pixels)} limit",
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


def _to_decoded(image: Image.Image, frames: int, frame: int) -> DecodedImage:
    mode = image.mode
    if mode in _HIGH_DEPTH_MODES:
        values = np.asarray(image)
        dtype = np.float64 if mode == "I" else np.float32  # 32-bit integers need float64
        return DecodedImage(
            replace_non_finite(values.astype(dtype)), "MONOCHROME2", False, frames, frame
        )
    if mode in ("1", "L"):
        grey = np.asarray(image.convert("L") if mode == "1" else image).astype(np.float32)
        return DecodedImage(grey, "MONOCHROME2", False, frames, frame, display_range=(0.0, 255.0))
    rgb = _to_rgb(image).astype(np.float32)
    return DecodedImage(rgb, "RGB", True, frames, frame, display_range=(0.0, 255.0))


def replace_non_finite(data: np.ndarray) -> np.ndarray:
    """Non-finite values (float TIFFs) become the image's finite minimum, or 0 if none is finite."""
    finite = np.isfinite(data)
    if not finite.all():
        data[~finite] = data[finite].min() if finite.any() else 0.0
    return data


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
