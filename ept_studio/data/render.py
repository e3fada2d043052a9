"""From a decoded image to the uint8 RGB pixels that both the screen and the model see.

One function, :func:`render`, driven by a stored :class:`RenderingSpec`, so that training and
inference see the same pixels. The order is the DICOM one (PS3.3 C.11, PS3.4 N.2):

    stored values -> modality LUT (done by the decoder) -> VOI: the spec's window, else the file's
    VOI LUT Sequence, else its first window (VOI LUT Function LINEAR / LINEAR_EXACT / SIGMOID),
    else a 0.5 - 99.5 % percentile window -> MONOCHROME1 inversion -> uint8

in floating point until the last step. Colour images are only brought to 0..255 (a window applies
to them only when the spec gives one).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ept_studio.common.errors import ConfigError, ImageDecodeError
from ept_studio.data.dicom import decode_dicom, has_dicom_preamble
from ept_studio.data.images import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    VoiLut,
    decode_pillow_file,
    has_pillow_signature,
    open_for_decoding,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "POLICIES",
    "DecodedImage",
    "RenderingSpec",
    "VoiLut",
    "decode_file",
    "percentile_window",
    "render",
    "render_file",
]

POLICIES = ("file", "percentile")
"""``file``: the file's own VOI (LUT or first window), else a percentile window; ``percentile``:
always the 0.5 - 99.5 % percentile window."""

PERCENTILES = (0.5, 99.5)
_WHITE = 255.0


@dataclasses.dataclass(frozen=True)
class RenderingSpec:
    """How an image is shown: stored with every image, run and exported model.

    ``window`` is a (centre, width) pair in modality units (Hounsfield units for CT) that overrides
    the file's, applied with the DICOM LINEAR function; None lets ``policy`` decide. ``invert`` None
    means "invert MONOCHROME1 only"; ``frame`` is the frame of a multi-frame file (from 0).
    """

    window: tuple[float, float] | None = None
    policy: str = "file"
    invert: bool | None = None
    frame: int = 0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ConfigError(f"rendering policy {self.policy!r} is not one of {POLICIES}")
        if self.window is not None:
            centre, width = (float(v) for v in self.window)
            if not (math.isfinite(centre) and math.isfinite(width) and width >= 1.0):
                raise ConfigError(
                    f"window (centre {centre:g}, width {width:g}) needs finite values and a "
                    "width of at least 1"
                )
            object.__setattr__(self, "window", (centre, width))
        if self.invert is not None and not isinstance(self.invert, bool):
            raise ConfigError(f"invert must be true, false or null, got {self.invert!r}")
        if isinstance(self.frame, bool) or not isinstance(self.frame, int) or self.frame < 0:
            raise ConfigError(f"frame must be a whole number from 0, got {self.frame!r}")

    def to_dict(self) -> dict[str, object]:
        window = list(self.window) if self.window is not None else None
        return {"window": window, "policy": self.policy, "invert": self.invert, "frame": self.frame}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RenderingSpec:
        """The spec :meth:`to_dict` wrote; unknown keys (from a newer version) are ignored."""
        window = data.get("window")
        if window is not None:
            if not isinstance(window, (list, tuple)) or len(window) != 2:
                raise ConfigError(f"window must be [centre, width] or null, got {window!r}")
            window = (_number(window[0], "window centre"), _number(window[1], "window width"))
        frame = data.get("frame", 0)
        if isinstance(frame, float) and frame.is_integer():
            frame = int(frame)
        return cls(
            window=window,
            policy=str(data.get("policy", "file")),
            invert=data.get("invert"),  # type: ignore[arg-type]  # checked in __post_init__
            frame=frame,  # type: ignore[arg-type]
        )

    def to_json(self) -> str:
        """A canonical JSON text (sorted keys, no spaces): equal specs give equal texts."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    return float(value)


def decode_file(
    path: Path, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode frame ``frame`` of a DICOM, PNG, JPEG, TIFF or BMP file, recognised by its bytes."""
    path = Path(path)
    with open_for_decoding(path) as handle:
        prefix = handle.read(132)
    if not prefix:
        raise ImageDecodeError(str(path), "file is empty")
    if has_dicom_preamble(prefix):  # first: a DICOM preamble may hold a TIFF header
        return decode_dicom(path, frame=frame, max_pixels=max_pixels)
    if has_pillow_signature(prefix):
        return decode_pillow_file(path, frame=frame, max_pixels=max_pixels)
    raise ImageDecodeError(
        str(path), "not a recognised image format (DICOM, PNG, JPEG, TIFF or BMP expected)"
    )


def render_file(
    path: Path, spec: RenderingSpec | None = None, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """:func:`decode_file` then :func:`render`: the file as ``H x W x 3`` uint8."""
    spec = spec if spec is not None else RenderingSpec()
    return render(decode_file(path, frame=spec.frame, max_pixels=max_pixels), spec)


def render(decoded: DecodedImage, spec: RenderingSpec) -> np.ndarray:
    """The image as ``H x W x 3`` uint8 RGB, as ``spec`` says (see the module docstring)."""
    if spec.frame != decoded.frame:
        raise ConfigError(
            f"the spec asks for frame {spec.frame} but frame {decoded.frame} was decoded"
        )
    if decoded.is_colour:
        shown = _colour_levels(decoded, spec)
        invert = bool(spec.invert)
    else:
        shown = _grey_levels(decoded, spec)
        invert = spec.invert if spec.invert is not None else decoded.photometric == "MONOCHROME1"
    if invert:  # (255 - x then clipping is clipping then 255 - x)
        np.subtract(_WHITE, shown, out=shown)
    levels = _to_uint8(shown)
    if levels.ndim == 3:
        return levels
    rgb = np.empty((*levels.shape, 3), dtype=np.uint8)
    for channel in range(3):
        rgb[:, :, channel] = levels
    return rgb


def _grey_levels(decoded: DecodedImage, spec: RenderingSpec) -> np.ndarray:
    """0..255 float32 levels of a grey image after its VOI (the spec's, the file's or percentile)."""
    values = decoded.pixels
    if spec.window is not None:
        return _window(values, *spec.window, "LINEAR")
    if spec.policy == "file":
        if decoded.voi_lut is not None:
            return _apply_voi_lut(values, decoded.voi_lut)
        if decoded.windows:
            return _window(values, *decoded.windows[0], decoded.voi_function)
        if decoded.display_range is not None:
            return _stretch(values, *decoded.display_range)
    return _stretch(values, *percentile_window(values))


def _colour_levels(decoded: DecodedImage, spec: RenderingSpec) -> np.ndarray:
    """Colour is shown as stored (its display range to 0..255) unless the spec gives a window."""
    if spec.window is not None:
        return _window(decoded.pixels, *spec.window, "LINEAR")
    return _stretch(decoded.pixels, *(decoded.display_range or (0.0, _WHITE)))


def percentile_window(values: np.ndarray) -> tuple[float, float]:
    """The 0.5 and 99.5 % points of ``values``; the min and max when those coincide."""
    low, high = (float(v) for v in np.percentile(values, PERCENTILES))
    if high <= low:
        low, high = float(values.min()), float(values.max())
    return low, high


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``low`` -> 0 and ``high`` -> 255, linear and clipped; a constant image is black."""
    if not high > low:
        return np.zeros(values.shape, dtype=np.float32)
    return _affine(values, _WHITE / (high - low), -low * _WHITE / (high - low))


def _window(values: np.ndarray, centre: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 / C.11.2.1.3 with an output range of 0..255."""
    if function == "SIGMOID":
        with np.errstate(over="ignore"):
            exponent = _affine(values, -4.0 / width, 4.0 * centre / width)
            np.exp(exponent, out=exponent)
            exponent += 1.0
            np.divide(_WHITE, exponent, out=exponent)
        return exponent
    if function == "LINEAR_EXACT":
        # y = ((x - c) / w + 0.5) * 255 inside the window
        return _affine(values, _WHITE / width, (0.5 - centre / width) * _WHITE)
    if width <= 1.0:  # LINEAR with width 1 is a threshold at c - 0.5
        threshold: np.ndarray = (values > centre - 0.5).astype(np.float32)
        threshold *= np.float32(_WHITE)
        return threshold
    # LINEAR: y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255 inside the window
    scale = _WHITE / (width - 1.0)
    return _affine(values, scale, (0.5 - (centre - 0.5) / (width - 1.0)) * _WHITE)


def _affine(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """``values * scale + offset`` in float32 (clipped to 0..255 once, at the end)."""
    out: np.ndarray = np.multiply(values, scale, dtype=np.float32)
    out += np.float32(offset)
    return out


def _apply_voi_lut(values: np.ndarray, lut: VoiLut) -> np.ndarray:
    """The VOI LUT Sequence item, as PS3.3 C.11.2.1.1 reads it: clipped to its first/last entry."""
    index = np.floor(values) if values.dtype.kind == "f" else values
    index = np.clip(index - lut.first_mapped, 0, lut.table.size - 1).astype(np.intp)
    levels: np.ndarray = lut.table.astype(np.float32)[index]
    levels *= np.float32(_WHITE / (2**lut.bits - 1))
    return levels


def _to_uint8(levels: np.ndarray) -> np.ndarray:
    """Clip float levels to 0..255 and round them: the one and only cast to 8 bits."""
    np.clip(levels, 0.0, _WHITE, out=levels)
    np.rint(levels, out=levels)
    return levels.astype(np.uint8)
