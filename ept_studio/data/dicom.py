"""DICOM files: the header the project store keeps, and one frame's pixels after the modality LUT.

pydicom (3.x) reads the file and, through its plugins (pylibjpeg, pylibjpeg-libjpeg, -openjpeg,
Pillow, and its own RLE decoder), decodes every common transfer syntax. The pixel count (rows x columns x frames) is
checked against ``max_pixels`` from the header before any pixel is read, only the frame asked for is
decoded, and every failure is an :class:`ImageDecodeError` naming the file and the reason.

Privacy: headers carry PHI. Nothing here logs, and no error message quotes a header value: reasons
are built from this module's own words, tag keywords and exception class names. pydicom's own
warnings (which can quote values and paths) are silenced while it reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, RLELossless

from ept_studio.common.errors import ImageDecodeError
from ept_studio.data.images import (
    DEFAULT_MAX_PIXELS,
    DecodedImage,
    VoiLut,
    check_frame_index,
    check_pixel_limit,
    open_for_decoding,
    replace_non_finite,
)

_PREAMBLE = 128
_MAGIC = b"DICM"
_DEFER_BYTES = 64 * 1024  # values above this (the pixel data) are read only when decoded
# (7FE0,0010) Pixel Data, (7FE0,0008) Float and (7FE0,0009) Double Float, little and big endian
_PIXEL_TAGS = frozenset(
    bytes.fromhex(tag)
    for tag in ("e07f1000", "e07f0800", "e07f0900", "7fe00010", "7fe00008", "7fe00009")
)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_COLOUR = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420"})
_VOI_FUNCTIONS = frozenset({"LINEAR", "LINEAR_EXACT", "SIGMOID"})
_TRUNCATION_HINTS = ("less than expected", "end of file", "truncated", "too short")


class _HeaderProblem(ValueError):
    """A header that contradicts itself; the message is this module's own words (no values)."""


@dataclasses.dataclass(frozen=True)
class DicomHeader:
    """What the project store records about a DICOM file, read without its pixel data.

    ``patient_id``, ``study_instance_uid`` and ``series_instance_uid`` are PHI: they are returned
    only to be salted and hashed, and the repr hides them.
    """

    modality: str | None
    rows: int | None
    columns: int | None
    frames: int
    photometric: str | None
    bits_stored: int | None
    pixel_representation: int | None
    transfer_syntax_uid: str | None
    transfer_syntax_name: str | None
    sop_class_uid: str | None
    sop_class_name: str | None
    burned_in_annotation: bool | None
    pixel_spacing: tuple[float, float] | None
    has_pixel_data: bool
    series_instance_uid: str | None
    patient_id: str | None
    study_instance_uid: str | None
    instance_number: int | None = None

    _PHI = ("series_instance_uid", "patient_id", "study_instance_uid")

    def __repr__(self) -> str:
        shown = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            text = "<hidden>" if field.name in self._PHI and value is not None else repr(value)
            shown.append(f"{field.name}={text}")
        return f"DicomHeader({', '.join(shown)})"

    __str__ = __repr__


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM Part 10 file ("DICM" after the 128-byte preamble)."""
    try:
        with open(path, "rb") as handle:
            return has_dicom_preamble(handle.read(_PREAMBLE + len(_MAGIC)))
    except OSError:
        return False


def has_dicom_preamble(prefix: bytes) -> bool:
    """Whether a file starting with ``prefix`` (132 bytes are enough) is a DICOM Part 10 file."""
    return prefix[_PREAMBLE : _PREAMBLE + len(_MAGIC)] == _MAGIC


def read_dicom_header(path: Path) -> DicomHeader:
    """The header of a DICOM file (its pixel data is not read)."""
    path = Path(path)
    with open_for_decoding(path) as handle, _quiet_pydicom():
        _check_part10(handle, path)
        try:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
        except Exception as err:  # pydicom raises many types on damaged files
            raise ImageDecodeError(str(path), _header_failure(err)) from err
        has_pixels = handle.read(4) in _PIXEL_TAGS
        try:
            return _header_of(ds, has_pixels)
        except Exception as err:  # a value that does not parse; never quote it (PHI)
            raise ImageDecodeError(
                str(path), f"a header value is not valid ({_kind(err)})"
            ) from err


def _header_of(ds: Dataset, has_pixels: bool) -> DicomHeader:
    syntax = _transfer_syntax(ds)
    sop_class = _text(ds, "SOPClassUID")
    burned = _text(ds, "BurnedInAnnotation")
    return DicomHeader(
        modality=_text(ds, "Modality"),
        rows=_optional_int(ds, "Rows"),
        columns=_optional_int(ds, "Columns"),
        frames=_optional_int(ds, "NumberOfFrames") or 1,
        photometric=_text(ds, "PhotometricInterpretation"),
        bits_stored=_optional_int(ds, "BitsStored"),
        pixel_representation=_optional_int(ds, "PixelRepresentation"),
        transfer_syntax_uid=str(syntax) if syntax else None,
        transfer_syntax_name=syntax.name if syntax else None,
        sop_class_uid=sop_class,
        sop_class_name=UID(sop_class).name if sop_class else None,
        burned_in_annotation={"YES": True, "NO": False}.get((burned or "").upper()),
        pixel_spacing=_pixel_spacing(ds, _frame_group(ds, 0, "PixelMeasuresSequence")),
        has_pixel_data=has_pixels or any(k in ds for k in _PIXEL_KEYWORDS),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        instance_number=_optional_int(ds, "InstanceNumber"),
    )


def decode_dicom(
    path: Path, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Frame ``frame`` of a DICOM file: grey values after the modality LUT, or RGB for colour.

    YBR is converted to RGB and PALETTE COLOR through its palette; the file's windows, VOI LUT
    Function and VOI LUT Sequence come along for :func:`ept_studio.data.render.render`.
    """
    path = Path(path)
    with open_for_decoding(path) as handle, _quiet_pydicom() as caught:
        _check_part10(handle, path)
        try:
            ds = pydicom.dcmread(handle, defer_size=_DEFER_BYTES)
        except Exception as err:  # pydicom raises many types on damaged files
            raise ImageDecodeError(str(path), _header_failure(err, caught)) from err
        try:
            return _decode_dataset(ds, path, frame, max_pixels, caught)
        except ImageDecodeError:
            raise
        except _HeaderProblem as err:
            raise ImageDecodeError(str(path), str(err)) from err
        except Exception as err:  # a damaged element shows only when its value is read
            reason = f"the DICOM header is damaged ({_kind(err)} reading a value)"
            raise ImageDecodeError(str(path), reason) from err


def _decode_dataset(
    ds: Dataset,
    path: Path,
    frame: int,
    max_pixels: int,
    caught: list[warnings.WarningMessage],
) -> DecodedImage:
    rows, columns, frames = _geometry(ds, path, caught)
    check_pixel_limit(path, columns, rows, frames, max_pixels)
    check_frame_index(path, frame, frames)
    _check_transfer_syntax(ds, path)
    stored = _decode_frame(ds, path, frame, (rows, columns))
    _check_rle_segment_lengths(path, caught)
    return _to_decoded(ds, stored, frames, frame)


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[list[warnings.WarningMessage]]:
    """Record pydicom's warnings instead of showing them, and keep its loggers quiet meanwhile.

    Its messages can quote header values and the file path, which may be PHI. (``catch_warnings``
    changes process-wide state, so two threads reading at once may see each other's filter.)
    """
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "pydicom"]
    loggers = [logging.getLogger(name) for name in ["pydicom", *names]]
    silence = logging.Filter(name="-no-record-has-this-name-")
    for logger in loggers:
        logger.addFilter(silence)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield caught
    finally:
        for logger in loggers:
            logger.removeFilter(silence)


def _check_part10(handle: BinaryIO, path: Path) -> None:
    prefix = handle.read(_PREAMBLE + len(_MAGIC))
    if not prefix:
        raise ImageDecodeError(str(path), "file is empty")
    if not has_dicom_preamble(prefix):
        raise ImageDecodeError(str(path), "not a DICOM file (no 'DICM' after the preamble)")
    handle.seek(0)


def _header_failure(err: BaseException, caught: list[warnings.WarningMessage] | None = None) -> str:
    if isinstance(err, EOFError) or _mentions_truncation(err, caught or []):
        return "file is truncated (it ends inside the DICOM header)"
    return f"the DICOM header is damaged ({_kind(err)})"


def _mentions_truncation(err: BaseException | None, caught: list[warnings.WarningMessage]) -> bool:
    texts = [str(w.message).lower() for w in caught] + ([str(err).lower()] if err else [])
    return any(hint in text for text in texts for hint in _TRUNCATION_HINTS)


def _kind(err: BaseException) -> str:
    return type(err).__name__


def _geometry(
    ds: Dataset, path: Path, caught: list[warnings.WarningMessage]
) -> tuple[int, int, int]:
    """(rows, columns, frames), or the reason the file holds no usable image."""
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise ImageDecodeError(str(path), _no_pixels_reason(ds, caught))
    values = []
    for keyword in ("Rows", "Columns", "NumberOfFrames"):
        try:
            value = _optional_int(ds, keyword)
        except Exception as err:  # never quote the value
            raise ImageDecodeError(str(path), f"the header's {keyword} is not a number") from err
        if value is None and keyword == "NumberOfFrames":
            value = 1
        if value is None or value < 1:
            raise ImageDecodeError(str(path), f"the header's {keyword} is missing or below 1")
        values.append(value)
    return values[0], values[1], values[2]


def _no_pixels_reason(ds: Dataset, caught: list[warnings.WarningMessage]) -> str:
    if _mentions_truncation(None, caught):
        return "file is truncated (it ends inside the pixel data)"
    if len(ds) == 0:
        return "file is truncated, or holds only its file meta information (no data set)"
    what = _text(ds, "SOPClassUID")
    name = UID(what).name if what else ""
    if "Rows" in ds or name.endswith("Image Storage"):
        return "no pixel data found although the header describes an image: the file is damaged"
    kind = f" (it is a {name} object)" if name and name != what else ""
    return f"no pixel data: this DICOM file holds no image{kind}"


def _check_transfer_syntax(ds: Dataset, path: Path) -> None:
    """A clear error when no installed plugin decodes the file's transfer syntax."""
    syntax = _transfer_syntax(ds)
    if syntax is None:
        raise ImageDecodeError(str(path), "the file meta information has no transfer syntax")
    if not syntax.is_transfer_syntax:
        raise ImageDecodeError(str(path), f"unknown transfer syntax {str(syntax)[:64]}")
    if not syntax.is_compressed:
        return
    name = f"{syntax.name} ({syntax})"
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as err:
        raise ImageDecodeError(
            str(path),
            f"unsupported transfer syntax {name}: pydicom has no decoder for it; convert the file "
            "to an uncompressed transfer syntax first (for example with gdcmconv --raw)",
        ) from err
    if not decoder.is_available:
        plugins = "; ".join(decoder.missing_dependencies) or "a pydicom decoding plugin"
        raise ImageDecodeError(
            str(path), f"transfer syntax {name} needs a plugin that is not installed: {plugins}"
        )


def _decode_frame(ds: Dataset, path: Path, frame: int, shape: tuple[int, int]) -> np.ndarray:
    rle = _transfer_syntax(ds) == RLELossless
    try:
        stored = pixel_array(ds, index=frame, decoding_plugin=_RLE_PLUGIN if rle else "")
    except Exception as err:  # the plugins raise many types on damaged data
        reason = _rle_failure(err) if rle else _pixel_failure(err)
        raise ImageDecodeError(str(path), reason) from err
    except BaseException as err:
        if not _is_decoder_panic(err):
            raise
        syntax = _transfer_syntax(ds)
        name = syntax.name if syntax else "pixel data"
        reason = f"the pixel data cannot be decoded (the {name} decoder failed on it)"
        raise ImageDecodeError(str(path), reason) from err
    if stored.shape[:2] != shape or stored.ndim not in (2, 3):
        raise ImageDecodeError(str(path), f"decoded pixels have shape {stored.shape}, not {shape}")
    return stored


_RLE_PLUGIN = "pydicom"
"""RLE Lossless through pydicom's own decoder, not pylibjpeg-rle: the Rust plugin panics on some
damaged segments (a run past the pixels), printing a panic and backtrace on stderr however the
refusal is handled, and it accepts a header whose segment count is wrong. pydicom's decoder checks
both and raises. It is slower: 0.4 ms instead of 0.2 ms for a 64 x 64 16-bit frame, 18 ms instead
of 5.5 ms for 600 x 800 8-bit, 172 ms instead of 27 ms for 2048 x 2048 16-bit."""

_PLUGIN_PREFIX = "pydicom: "
_RLE_DAMAGED = "the pixel data cannot be decoded (the RLE Lossless data is damaged: {})"
_RLE_PADDING = re.compile(r"non-conformant padding - (\d+) vs\. (\d+) bytes")


def _check_rle_segment_lengths(path: Path, caught: list[warnings.WarningMessage]) -> None:
    """Refuse an RLE segment that decodes to more than its pixels and one pad byte.

    pydicom only warns and keeps the first bytes; DICOM pads a segment to an even length, which
    may decode to one extra byte, so anything longer is damage (a run past the pixels).
    """
    for warning in caught:
        found = _RLE_PADDING.search(str(warning.message))
        if found and int(found[1]) > int(found[2]) + 1:
            reason = f"a segment decodes to {found[1]} bytes, {found[2]} expected"
            raise ImageDecodeError(str(path), _RLE_DAMAGED.format(reason))


def _rle_failure(err: Exception) -> str:
    """pydicom's own reason (segment count, decoded length), without its plugin-list preamble."""
    if isinstance(err, EOFError) or _mentions_truncation(err, []):
        return _pixel_failure(err)
    message = " ".join(str(err).split())
    reason = message.split(_PLUGIN_PREFIX, 1)[-1]
    return _RLE_DAMAGED.format(reason[:200])


def _pixel_failure(err: Exception) -> str:
    if isinstance(err, EOFError) or _mentions_truncation(err, []):
        return "file is truncated (the pixel data is shorter than the header says)"
    message = " ".join(str(err).split())  # the plugins' messages span several lines
    return f"the pixel data cannot be decoded ({_kind(err)}: {message[:200]})"


def _is_decoder_panic(err: BaseException) -> bool:
    """A Rust panic inside a plugin (pylibjpeg-rle, kept as a safeguard: RLE goes to pydicom's own
    decoder) reaches Python as pyo3's ``PanicException``, which derives from BaseException: damaged
    data, not a reason to stop the program."""
    return type(err).__name__ == "PanicException"


def _to_decoded(ds: Dataset, stored: np.ndarray, frames: int, frame: int) -> DecodedImage:
    photometric = (_text(ds, "PhotometricInterpretation") or "").upper()
    common: dict[str, Any] = {
        "photometric": photometric or "MONOCHROME2",
        "frames": frames,
        "frame": frame,
        "modality": _text(ds, "Modality"),
        "pixel_spacing": _pixel_spacing(ds, _frame_group(ds, frame, "PixelMeasuresSequence")),
    }
    if photometric == "PALETTE COLOR" and stored.ndim == 2:
        rgb, white = _palette_to_rgb(stored, ds)
        return DecodedImage(rgb, is_colour=True, display_range=(0.0, white), **common)
    if stored.ndim == 3:
        if stored.shape[2] != 3 or photometric not in _COLOUR:
            raise _HeaderProblem(
                f"{stored.shape[2]} samples per pixel do not fit photometric interpretation "
                f"{photometric or '(none)'}"
            )
        white = float(2 ** (_optional_int(ds, "BitsStored") or 8) - 1)
        pixels = stored.astype(np.float32)
        return DecodedImage(pixels, is_colour=True, display_range=(0.0, white), **common)
    windows, function = _windows(ds, frame)
    return DecodedImage(
        _modality_values(stored, ds, frame),
        is_colour=False,
        windows=windows,
        voi_function=function,
        voi_lut=_voi_lut(ds),
        **common,
    )


def _modality_values(stored: np.ndarray, ds: Dataset, frame: int) -> np.ndarray:
    """Stored values through the modality LUT (sequence, or rescale slope / intercept).

    float32 where it is exact (integers of up to 16 bits, integer rescale), float64 otherwise,
    computed as pydicom's ``apply_modality_lut`` does so that both agree.
    """
    if ds.get("ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(stored, ds), dtype=np.float32)
    group = _frame_group(ds, frame, "PixelValueTransformationSequence")
    slope = _float_or(group, "RescaleSlope", 1.0)
    intercept = _float_or(group, "RescaleIntercept", 0.0)
    small_ints = stored.dtype.kind in "ui" and stored.dtype.itemsize <= 2
    exact = slope.is_integer() and intercept.is_integer()
    if small_ints and exact and abs(slope) * 65536 + abs(intercept) < 2**24:
        return _rescale(stored.astype(np.float32), slope, intercept)  # exact in float32
    if stored.dtype == np.float32 and slope == 1.0 and intercept == 0.0:
        return replace_non_finite(stored.copy())
    values = stored.astype(np.float64)
    if stored.dtype.kind == "f":
        replace_non_finite(values)
    with np.errstate(over="ignore", invalid="ignore"):  # a huge slope may overflow
        return replace_non_finite(_rescale(values, slope, intercept))


def _rescale(values: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    if slope != 1.0:
        values *= slope
    if intercept != 0.0:
        values += intercept
    return values


def _windows(ds: Dataset, frame: int) -> tuple[tuple[tuple[float, float], ...], str]:
    """The (centre, width) pairs with a usable width, and the VOI LUT Function (default LINEAR)."""
    group = _frame_group(ds, frame, "FrameVOILUTSequence")
    function = (_text(group, "VOILUTFunction") or "LINEAR").upper()
    try:
        centres, widths = _floats(group, "WindowCenter"), _floats(group, "WindowWidth")
    except (TypeError, ValueError):  # a window that does not parse is ignored, like a missing one
        return (), function
    if function not in _VOI_FUNCTIONS:
        function = "LINEAR"
    pairs = tuple(
        (c, w) for c, w in zip(centres, widths, strict=False) if _usable_window(c, w, function)
    )
    return pairs, function


def _usable_window(centre: float, width: float, function: str) -> bool:
    """PS3.3 C.11.2.1.2: LINEAR needs a width of at least 1, the other functions above 0."""
    if not (math.isfinite(centre) and math.isfinite(width)):
        return False
    return width >= 1.0 if function == "LINEAR" else width > 0.0


def _voi_lut(ds: Dataset) -> VoiLut | None:
    """The first VOI LUT Sequence item as a table, parsed by pydicom's own ``apply_voi``."""
    items = ds.get("VOILUTSequence")
    if not items:
        return None
    item = items[0]
    if "LUTDescriptor" not in item or "LUTData" not in item:
        return None
    entries, first, nominal = (int(v) for v in item.LUTDescriptor)
    entries = entries or 2**16
    table = np.asarray(apply_voi(np.arange(first, first + entries, dtype=np.int64), ds))
    used = int(table.max()).bit_length() if table.size else 8
    return VoiLut(first_mapped=first, bits=max(1, min(nominal, max(8, used))), table=table)


def _palette_to_rgb(stored: np.ndarray, ds: Dataset) -> tuple[np.ndarray, float]:
    """RGB through the palette, and the value of full intensity (255, 65535, or the bits used)."""
    descriptor = ds.get("RedPaletteColorLookupTableDescriptor")
    if descriptor is None or len(descriptor) != 3 or stored.dtype.kind not in "ui":
        raise _HeaderProblem("PALETTE COLOR image without its palette (colour lookup tables)")
    entries, first = int(descriptor[0]) or 2**16, int(descriptor[1])
    info = np.iinfo(stored.dtype)
    ramp = np.arange(first, first + entries).clip(info.min, info.max).astype(stored.dtype)
    table = _palette_byte_order(np.asarray(apply_color_lut(ramp, ds))[:, :3], ds)
    index = np.clip(stored.astype(np.int64) - first, 0, entries - 1)
    nominal = 8 if table.dtype == np.uint8 else min(16, max(8, int(table.max()).bit_length()))
    return table[index].astype(np.float32), float(2**nominal - 1)


def _palette_byte_order(table: np.ndarray, ds: Dataset) -> np.ndarray:
    """pydicom 3.0 reads unsegmented 16-bit palette data in the machine's byte order, not the
    file's: a big-endian file's palette comes out byte-swapped. Undo that (once)."""
    raw = ds.get("RedPaletteColorLookupTableData")
    if table.dtype != np.uint16 or not isinstance(raw, bytes) or ds.original_encoding[1]:
        return table
    red = np.frombuffer(raw, dtype=">u2")[: len(table)]
    if len(red) != len(table) or np.array_equal(table[:, 0], red):
        return table
    swapped: np.ndarray = table.byteswap()
    return swapped


def _frame_group(ds: Dataset, frame: int, keyword: str) -> Dataset:
    """Where a multi-frame file keeps ``keyword`` for ``frame``: its per-frame group, else the
    shared group, else the dataset itself (the classic single-frame place)."""
    places = (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0))
    for groups, index in places:
        sequence = ds.get(groups)
        if sequence and index < len(sequence) and sequence[index].get(keyword):
            found: Dataset = sequence[index].get(keyword)[0]
            return found
    return ds


def _transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    value = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(value)) if value else None


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or isinstance(value, (bytes, list)):
        return None
    text = str(value).strip(" \x00")
    return text or None


def _optional_int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    return int(value)


def _float_or(ds: Dataset, keyword: str, default: float) -> float:
    values = _floats(ds, keyword)
    if not values:
        return default
    return values[0] if math.isfinite(values[0]) else default


def _floats(ds: Dataset, keyword: str) -> list[float]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    values = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    return [float(v) for v in values]


def _pixel_spacing(ds: Dataset, group: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from Pixel Spacing, else Imager Pixel Spacing; None if unusable."""
    places = ((group, "PixelSpacing"), (ds, "PixelSpacing"), (ds, "ImagerPixelSpacing"))
    for source, keyword in places:
        try:
            values = _floats(source, keyword)
        except (TypeError, ValueError):
            continue
        if len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values):
            return values[0], values[1]
    return None
