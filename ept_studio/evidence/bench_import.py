"""Import benchmark: a generated folder of PNG and DICOM files, imported into a new project.

    python -m ept_studio.evidence.bench_import [--count 1000] [--no-thumbnails]

The files are made from the real CT and MR pixels that ship with pydicom (each one shifted in
value so that every file has its own content hash), half PNG and half DICOM, in a temporary
folder that is removed afterwards. It prints images per second for the first import (hash,
decode, thumbnail, database row) and for an import of the same folder again (all duplicates).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from ept_studio.data.store import Project
from ept_studio.services.project import import_paths

_SOURCES = ("CT_small.dcm", "MR_small.dcm")


@dataclasses.dataclass(frozen=True)
class ImportBenchmark:
    files: int
    added: int
    first_seconds: float
    again_seconds: float
    thumbnails: bool

    @property
    def images_per_second(self) -> float:
        return self.added / self.first_seconds

    @property
    def again_per_second(self) -> float:
        return self.files / self.again_seconds

    def markdown(self) -> str:
        thumbs = "with" if self.thumbnails else "without"
        return "\n".join(
            [
                f"| import of {self.files} files ({thumbs} thumbnails) | seconds | images/s |",
                "|---|---|---|",
                f"| first import ({self.added} added) | {self.first_seconds:.1f} "
                f"| {self.images_per_second:.0f} |",
                f"| same folder again | {self.again_seconds:.2f} | {self.again_per_second:.0f} |",
            ]
        )


def write_bench_folder(root: Path, count: int) -> list[Path]:
    """``count`` files under ``root``: PNG and DICOM alternately, each with its own content."""
    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    datasets = [pydicom.dcmread(folder / name) for name in _SOURCES]
    written: list[Path] = []
    for index in range(count):
        source = datasets[index % len(datasets)]
        original = source.pixel_array.astype(np.int32)
        pixels = np.roll(original, index, axis=1) + index // len(datasets)
        sub = root / f"series{index // 100:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        if index % 2 == 0:
            png = _to_grey(pixels, float(original.min()), float(original.max()) + count)
            written.append(_write_png(sub / f"image{index:05d}.png", png))
        else:
            written.append(_write_dicom(sub / f"image{index:05d}.dcm", source, pixels, index))
    return written


def _to_grey(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """8-bit grey over a fixed range, so the value shift survives (every PNG differs)."""
    scaled = (pixels - low) * (255.0 / max(high - low, 1.0))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _write_png(path: Path, grey: np.ndarray) -> Path:
    Image.fromarray(grey).save(path)
    return path


def _write_dicom(path: Path, source: pydicom.Dataset, pixels: np.ndarray, index: int) -> Path:
    ds = source.copy()
    ds.PixelData = pixels.astype(np.int16).tobytes()
    uid = pydicom.uid.generate_uid(entropy_srcs=[str(index)])
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.save_as(path, enforce_file_format=True)
    return path


def run_import_benchmark(count: int = 1000, *, thumbnails: bool = True) -> ImportBenchmark:
    with tempfile.TemporaryDirectory(prefix="ept-bench-import-") as temporary:
        base = Path(temporary)
        files = write_bench_folder(base / "data", count)
        with Project.create(base / "project", locations_dir=base / "locations") as project:
            start = time.perf_counter()
            report = import_paths(project, [base / "data"], thumbnails=thumbnails)
            first = time.perf_counter() - start
            start = time.perf_counter()
            import_paths(project, [base / "data"], thumbnails=thumbnails)
            again = time.perf_counter() - start
    return ImportBenchmark(len(files), len(report.added), first, again, thumbnails)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ept_studio.evidence.bench_import")
    parser.add_argument("--count", type=int, default=1000, help="files to generate (default 1000)")
    parser.add_argument("--no-thumbnails", action="store_true", help="import without thumbnails")
    args = parser.parse_args(argv)
    result = run_import_benchmark(args.count, thumbnails=not args.no_thumbnails)
    sys.stdout.write(result.markdown() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
