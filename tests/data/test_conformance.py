"""Every file of pydicom's and pydicom-data's test sets: it renders to a non-constant image of the
header's shape, or raises ImageDecodeError; never another exception, never a hang.

The folders are listed directly (``get_testdata_files`` would try the network). Files that are
not DICOM at all (README, JSON, dumps, a gzip, an ICC profile) are counted and must be refused
with the typed error too.
"""

from __future__ import annotations

import collections
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import numpy as np
import pydicom
import pydicom.data
import pytest
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from ept_studio.common.errors import ImageDecodeError
from ept_studio.data.dicom import is_dicom_file, read_dicom_header
from ept_studio.data.packaged_dicom import pydicom_data_folder
from ept_studio.data.render import RenderingSpec, decode_file, render

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
_DATA = pydicom_data_folder()
assert _DATA is not None, "pydicom-data (a dev dependency) is not installed"
DATA_FILES: Path = _DATA
NOT_DICOM_SUFFIXES = frozenset({".txt", ".json", ".gz", ".icc", ".dump"})
SECONDS_PER_FILE = 20

# Measured with pydicom 3.0.2, pylibjpeg 2.1 (+ libjpeg 2.5, openjpeg 2.6, rle 2.2), Pillow 13,
# pydicom-data 1.0.0: 244 files; 155 render (two of them, 16 x 16 CT thumbnails, are saturated by
# their own window, as pydicom shows them too); 80 are refused (no pixel data, damaged, or not
# Part 10 files); 9 are not DICOM. Of the 157 intact files with pixel data, 155 render (98.7 %).
EXPECTED_FILES = 244
MIN_RENDERED = 155
# The two that hold pixel data but are refused: JPEG-lossy.dcm (a marker libjpeg rejects; GDCM
# and Pillow refuse it too) and JPEG2000-embedded-sequence-delimiter.dcm (its item is cut short).
KNOWN_UNDECODABLE = frozenset({"JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"})


def _all_files() -> Iterator[Path]:
    for folder in (PYDICOM_FILES, DATA_FILES):
        yield from sorted(p for p in folder.rglob("*") if p.is_file() and "__" not in p.name)


class _TimeLimit:
    """SIGALRM after ``seconds``: a decoder stuck in Python code raises TimeoutError."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        self._previous = signal.signal(signal.SIGALRM, self._expire)
        signal.alarm(self.seconds)

    def __exit__(self, *exc_info: object) -> None:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self._previous)

    def _expire(self, signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"no result after {self.seconds} s")


def _pydicom_window_is_constant(path: Path) -> bool:
    ds = pydicom.dcmread(path)
    shown = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    return bool(shown.min() == shown.max())


def _holds_pixel_data(path: Path) -> bool:
    try:
        return is_dicom_file(path) and read_dicom_header(path).has_pixel_data
    except ImageDecodeError:
        return False


def _check(path: Path) -> tuple[str, str]:
    """(outcome, detail) for one file; outcomes other than rendered / refused / not DICOM fail."""
    start = time.perf_counter()
    try:
        with _TimeLimit(SECONDS_PER_FILE):
            decoded = decode_file(path)
            out = render(decoded, RenderingSpec())
    except ImageDecodeError as err:
        if path.suffix in NOT_DICOM_SUFFIXES or path.name.startswith("README"):
            return "not DICOM", err.reason
        return "refused", err.reason
    except Exception as err:  # the point of the test: any other exception is a failure
        return "crashed", f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - start
    header = read_dicom_header(path)
    if out.shape != (header.rows, header.columns, 3) or out.dtype != np.uint8:
        return "wrong shape", f"{out.shape} {out.dtype}, header {header.rows} x {header.columns}"
    if out.min() == out.max():
        percentile = render(decoded, RenderingSpec(policy="percentile"))
        if not (decoded.windows and _pydicom_window_is_constant(path)):
            return "constant", f"all pixels {out.min()}"
        if percentile.min() == percentile.max():
            return "constant", "constant under the percentile window too"
        return "rendered", "the file's own window saturates it (pydicom agrees)"
    return "rendered", f"{seconds:.2f} s"


def test_every_test_file_renders_or_raises_the_typed_error() -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    failures: list[str] = []
    refused_images: list[str] = []
    for path in _all_files():
        outcome, detail = _check(path)
        outcomes[outcome] += 1
        if outcome == "refused":
            reasons[detail.split(" (")[0].split(":")[0]] += 1
            if _holds_pixel_data(path):
                refused_images.append(path.name)
        elif outcome not in ("rendered", "not DICOM"):
            failures.append(f"{path.name}: {outcome}: {detail}")
    print(f"\n{sum(outcomes.values())} files: {dict(outcomes)}")
    for reason, count in reasons.most_common():
        print(f"  refused {count:3d} x {reason}")
    assert not failures, failures
    assert sum(outcomes.values()) == EXPECTED_FILES
    assert outcomes["rendered"] >= MIN_RENDERED
    damaged = {  # truncated, or pixel data without the rows and columns to read it
        "MR_truncated.dcm",
        "emri_small_jpeg_2k_lossless_too_short.dcm",
        "meta_missing_tsyntax.dcm",
        "nested_priv_SQ.dcm",
    }
    assert set(refused_images) == KNOWN_UNDECODABLE | damaged
    decodable = outcomes["rendered"] + len(KNOWN_UNDECODABLE)
    assert outcomes["rendered"] / decodable >= 0.95


def test_the_time_limit_interrupts_python_code() -> None:
    def wait_forever() -> None:
        with _TimeLimit(1):
            while True:
                time.sleep(0.01)

    with pytest.raises(TimeoutError, match="no result after 1 s"):
        wait_forever()
