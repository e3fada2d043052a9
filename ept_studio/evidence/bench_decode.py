"""Decode + render throughput against the plain pydicom path, in the same run, interleaved.

    python -m ept_studio.evidence.bench_decode [--rounds 30]

Images: a 512 x 512 CT and a ~2k x 2k CR (chest) from the pydicom-data test set, uncompressed and
JPEG 2000 lossless; without pydicom-data, synthetic uncompressed files whose pixels are pydicom's own
CT_small slice upsampled. The plain path is what a script would do with pydicom alone: ``dcmread``
+ ``pixel_array`` + ``apply_modality_lut`` + ``apply_voi_lut`` + scaling to uint8 (+ MONOCHROME1
inversion and three channels, so both paths return the same kind of array).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

from ept_studio.data.packaged_dicom import pydicom_data_folder
from ept_studio.data.render import RenderingSpec, render_file

BENCH_FILES = (
    ("CT 512 x 512, uncompressed", "693_UNCI.dcm"),
    ("CT 512 x 512, JPEG 2000 lossless", "693_J2KR.dcm"),
    ("CR 1955 x 1841 (chest), uncompressed", "RG1_UNCI.dcm"),
    ("CR 1955 x 1841 (chest), JPEG 2000 lossless", "RG1_J2KR.dcm"),
)


def plain_pydicom(path: Path) -> np.ndarray:
    """The reference path with pydicom alone."""
    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low) if high > low else 0.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        scaled = 255.0 - scaled
    grey = np.rint(scaled).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def ours(path: Path) -> np.ndarray:
    return render_file(path, RenderingSpec())


def time_interleaved(
    path: Path, paths: Sequence[Callable[[Path], np.ndarray]], rounds: int
) -> list[float]:
    """Median seconds per call of each path; the paths alternate within every round."""
    for run in paths:  # warm-up: plugin imports, file cache
        run(path)
    times: list[list[float]] = [[] for _ in paths]
    for round_index in range(rounds):
        order = range(len(paths)) if round_index % 2 == 0 else reversed(range(len(paths)))
        for index in order:
            start = time.perf_counter()
            paths[index](path)
            times[index].append(time.perf_counter() - start)
    return [statistics.median(column) for column in times]


def synthetic_files(folder: Path) -> list[tuple[str, Path]]:
    """Uncompressed CT 512 x 512 and CR-sized 2048 x 2048 files from CT_small's real pixels."""
    source = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
    made = []
    for label, factor, name in (
        ("CT 512 x 512 (synthetic)", 4, "ct512.dcm"),
        ("2048 x 2048 (synthetic)", 16, "big2048.dcm"),
    ):
        ds = pydicom.dcmread(source)
        pixels = np.kron(ds.pixel_array, np.ones((factor, factor), dtype=ds.pixel_array.dtype))
        ds.Rows, ds.Columns = pixels.shape
        ds.PixelData = pixels.tobytes()
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.save_as(folder / name, enforce_file_format=True)
        made.append((label, folder / name))
    return made


def report(rounds: int) -> str:
    """The benchmark as a markdown table."""
    lines = [
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"pydicom {pydicom.__version__}; median of {rounds} interleaved rounds.",
        "",
        "| image | EPT Studio (images/s) | plain pydicom (images/s) | ratio |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as scratch:
        data = pydicom_data_folder()
        if data is not None:
            files = [(label, data / name) for label, name in BENCH_FILES if (data / name).is_file()]
        else:
            files = synthetic_files(Path(scratch))
        for label, path in files:
            ours_s, plain_s = time_interleaved(path, [ours, plain_pydicom], rounds)
            lines.append(
                f"| {label} | {1 / ours_s:.1f} | {1 / plain_s:.1f} | {plain_s / ours_s:.2f}x |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds per image")
    args = parser.parse_args(argv)
    sys.stdout.write(report(max(1, args.rounds)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
