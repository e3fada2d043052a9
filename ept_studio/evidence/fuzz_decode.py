"""Fuzzing the decoders: damaged DICOM and PNG / JPEG / TIFF / BMP bytes must render or raise
:class:`ImageDecodeError`, quickly; anything else is a bug.

    python -m ept_studio.evidence.fuzz_decode --inputs 10000 [--seed 0]

Seeds are small real files: pydicom's test files in several transfer syntaxes and photometric
interpretations, and images Pillow writes. Each input applies a few mutations to one seed: byte
flips, inserts, deletes, truncation, and header-aware edits (a DICOM image-pixel attribute set to
an odd value). The test suite drives the same mutations from hypothesis.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import io
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.config
import pydicom.data
from PIL import Image

from ept_studio.common.errors import ImageDecodeError
from ept_studio.data.render import RenderingSpec, decode_file, render

FUZZ_MAX_PIXELS = 4_000_000
"""A lower pixel limit while fuzzing: a mutated size may claim gigapixels."""

DICOM_SEEDS = (
    "CT_small.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_implicit.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "JPGExtended.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "SC_rgb_rle_2frame.dcm",
    "SC_rgb_small_odd.dcm",
    "SC_ybr_full_422_uncompressed.dcm",
    "rtdose_1frame.dcm",
    "liver_1frame.dcm",
    "image_dfl.dcm",
    "dicomdirtests/77654033/CR1/6154",
)

# (group, element, VR) of attributes whose odd values reach the pixel and display code
_HEADER_TARGETS = (
    (0x0028, 0x0002, "US"),  # Samples per Pixel
    (0x0028, 0x0004, "CS"),  # Photometric Interpretation
    (0x0028, 0x0006, "US"),  # Planar Configuration
    (0x0028, 0x0008, "IS"),  # Number of Frames
    (0x0028, 0x0010, "US"),  # Rows
    (0x0028, 0x0011, "US"),  # Columns
    (0x0028, 0x0100, "US"),  # Bits Allocated
    (0x0028, 0x0101, "US"),  # Bits Stored
    (0x0028, 0x0102, "US"),  # High Bit
    (0x0028, 0x0103, "US"),  # Pixel Representation
    (0x0028, 0x1050, "DS"),  # Window Center
    (0x0028, 0x1051, "DS"),  # Window Width
    (0x0028, 0x1052, "DS"),  # Rescale Intercept
    (0x0028, 0x1053, "DS"),  # Rescale Slope
    (0x0028, 0x1056, "CS"),  # VOI LUT Function
    (0x0002, 0x0010, "UI"),  # Transfer Syntax UID
)
_ODD_VALUES: dict[str, tuple[object, ...]] = {
    "US": (0, 1, 2, 3, 4, 7, 8, 12, 15, 16, 17, 32, 33, 64, 255, 4096, 65535),
    "IS": ("0", "1", "2", "3", "-1", "1000000", "2147483647", "A"),
    "DS": ("0", "1", "-1", "0.5", "1e30", "-1e30", "nan", "inf", "1\\2\\3", ""),
    "CS": ("MONOCHROME1", "RGB", "PALETTE COLOR", "YBR_FULL_422", "YBR_ICT", "HSV", "SIGMOID", ""),
    "UI": (
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.100",
        "1.2.3.4",
        "",
    ),
}

Mutation = tuple[str, int, int]
"""(kind, position, value): kind is flip / set / insert / delete / truncate / header."""

MUTATION_KINDS = ("flip", "set", "insert", "delete", "truncate", "header")


def pillow_seeds() -> dict[str, bytes]:
    """Small PNG (1, 8, 16-bit grey, RGB, RGBA, palette), JPEG, 2-page 16-bit TIFF and BMP files."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    ramp16 = (np.arange(12 * 16, dtype=np.uint16) * 300).reshape(12, 16)
    images: dict[str, tuple[Image.Image, str, dict[str, Any]]] = {
        "grey1.png": (Image.fromarray(rgb[:, :, 0] > 127), "PNG", {}),
        "grey8.png": (Image.fromarray(rgb[:, :, 0]), "PNG", {}),
        "grey16.png": (Image.fromarray(ramp16), "PNG", {}),
        "rgb.png": (Image.fromarray(rgb), "PNG", {}),
        "rgba.png": (Image.fromarray(np.dstack([rgb, rgb[:, :, :1]])), "PNG", {}),
        "palette.png": (Image.fromarray(rgb).convert("P"), "PNG", {}),
        "photo.jpg": (Image.fromarray(rgb), "JPEG", {"quality": 90}),
        "pages16.tif": (
            Image.fromarray(ramp16),
            "TIFF",
            {"save_all": True, "append_images": [Image.fromarray(ramp16[::-1].copy())]},
        ),
        "rgb.bmp": (Image.fromarray(rgb), "BMP", {}),
    }
    seeds = {}
    for name, (image, kind, options) in images.items():
        buffer = io.BytesIO()
        image.save(buffer, kind, **options)
        seeds[name] = buffer.getvalue()
    return seeds


def dicom_seeds() -> dict[str, bytes]:
    folder = Path(pydicom.data.__file__).parent / "test_files"
    return {name: (folder / name).read_bytes() for name in DICOM_SEEDS if (folder / name).is_file()}


def all_seeds() -> dict[str, bytes]:
    return {**dicom_seeds(), **pillow_seeds()}


def mutate(data: bytes, mutations: Sequence[Mutation]) -> bytes:
    """``data`` with each mutation applied in turn (positions wrap around the current length)."""
    out = bytearray(data)
    for kind, position, value in mutations:
        if not out:
            break
        at = position % len(out)
        if kind == "flip":
            out[at] ^= 1 << (value % 8)
        elif kind == "set":
            out[at] = value % 256
        elif kind == "insert":
            out[at:at] = bytes([value % 256]) * (1 + value % 7)
        elif kind == "delete":
            del out[at : at + 1 + value % 16]
        elif kind == "truncate":
            del out[at:]
        elif kind == "header":
            out = bytearray(_edit_header(bytes(out), position, value))
    return bytes(out)


def _edit_header(data: bytes, target: int, choice: int) -> bytes:
    """Set one image-pixel attribute of a DICOM file to an odd value (unchanged if unreadable)."""
    group, element, vr = _HEADER_TARGETS[target % len(_HEADER_TARGETS)]
    values = _ODD_VALUES[vr]
    value = values[choice % len(values)]
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), pydicom.config.disable_value_validation():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            holder = ds.file_meta if group == 0x0002 else ds
            holder.add_new((group, element), vr, value)
            ds.save_as(buffer, enforce_file_format=False)
    except Exception:  # a seed already broken by earlier mutations stays as it is
        return data
    return buffer.getvalue()


def random_mutations(rng: random.Random, length: int) -> list[Mutation]:
    """1 to 4 mutations, positions biased to the first 2 KiB where the headers are."""
    mutations = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice(MUTATION_KINDS)
        limit = 2048 if rng.random() < 0.8 else max(1, length)
        mutations.append((kind, rng.randrange(limit), rng.randrange(1 << 16)))
    return mutations


@dataclasses.dataclass
class Outcome:
    """What one input did: ``rendered``, ``refused`` (ImageDecodeError) or ``crashed``."""

    kind: str
    seconds: float
    detail: str = ""


def try_input(path: Path, data: bytes) -> Outcome:
    """Write ``data`` to ``path``, decode and render it; anything but ImageDecodeError is a crash."""
    path.write_bytes(data)
    start = time.perf_counter()
    try:
        decoded = decode_file(path, max_pixels=FUZZ_MAX_PIXELS)
        pixels = render(decoded, RenderingSpec())
    except ImageDecodeError as err:
        return Outcome("refused", time.perf_counter() - start, err.reason)
    except Exception as err:  # the point of fuzzing: report, do not stop
        return Outcome("crashed", time.perf_counter() - start, f"{type(err).__name__}: {err}")
    seconds = time.perf_counter() - start
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        return Outcome("crashed", seconds, f"rendered {pixels.dtype} {pixels.shape}")
    return Outcome("rendered", seconds)


@dataclasses.dataclass
class FuzzSummary:
    """Counts of each outcome, the slowest input, and the crashing inputs (to replay them)."""

    counts: collections.Counter[str]
    seconds: float
    slowest: tuple[float, str] = (0.0, "")
    crashes: list[str] = dataclasses.field(default_factory=list)

    def text(self, seed: int, seeds: int) -> str:
        total = sum(self.counts.values())
        lines = [
            f"{total} inputs from {seeds} seed files (random seed {seed}) in {self.seconds:.0f} s: "
            f"{self.counts['rendered']} rendered, {self.counts['refused']} refused with "
            f"ImageDecodeError, {self.counts['crashed']} crashed",
            f"slowest input: {self.slowest[0] * 1000:.0f} ms ({self.slowest[1]})",
            *self.crashes[:20],
        ]
        return "\n".join(lines)


def run(inputs: int, seed: int, time_limit_s: float | None = None) -> FuzzSummary:
    """Fuzz ``inputs`` inputs (or until ``time_limit_s`` has passed)."""
    seeds = sorted(all_seeds().items())
    rng = random.Random(seed)
    summary = FuzzSummary(collections.Counter(), 0.0)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "input"
        for index in range(inputs):
            if time_limit_s is not None and time.perf_counter() - started > time_limit_s:
                break
            name, original = seeds[rng.randrange(len(seeds))]
            mutations = random_mutations(rng, len(original))
            outcome = try_input(target, mutate(original, mutations))
            summary.counts[outcome.kind] += 1
            if outcome.seconds > summary.slowest[0]:
                summary.slowest = (outcome.seconds, f"{name} {mutations}")
            if outcome.kind == "crashed":
                summary.crashes.append(f"input {index}: {name} {mutations}: {outcome.detail}")
    summary.seconds = time.perf_counter() - started
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000, help="number of mutated inputs")
    parser.add_argument("--seed", type=int, default=0, help="random seed (runs are repeatable)")
    parser.add_argument("--minutes", type=float, default=None, help="stop after this long")
    args = parser.parse_args(argv)
    limit = args.minutes * 60 if args.minutes else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow and pydicom warn about every damaged block
        summary = run(args.inputs, args.seed, limit)
    sys.stdout.write(summary.text(args.seed, len(all_seeds())) + "\n")
    return 1 if summary.counts["crashed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
