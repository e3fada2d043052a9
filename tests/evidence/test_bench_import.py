"""The import benchmark in miniature: its generated folder, the import it times and its table."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ept_studio.evidence.bench_import import (
    ImportBenchmark,
    run_import_benchmark,
    write_bench_folder,
)


def test_the_generated_folder_is_half_png_half_dicom_and_every_file_differs(
    tmp_path: Path,
) -> None:
    files = write_bench_folder(tmp_path, 6)
    assert sorted(path.suffix for path in files) == [".dcm"] * 3 + [".png"] * 3
    digests = {hashlib.sha256(path.read_bytes()).hexdigest() for path in files}
    assert len(digests) == 6


def test_the_import_benchmark_runs_in_miniature() -> None:
    result = run_import_benchmark(6, thumbnails=False)
    assert (result.files, result.added, result.thumbnails) == (6, 6, False)
    assert "| first import (6 added) |" in result.markdown()


def test_the_table_divides_images_by_seconds() -> None:
    bench = ImportBenchmark(
        files=10, added=8, first_seconds=2.0, again_seconds=0.5, thumbnails=True
    )
    assert (bench.images_per_second, bench.again_per_second) == (4.0, 20.0)
    table = bench.markdown()
    assert "| import of 10 files (with thumbnails) | seconds | images/s |" in table
    assert "| first import (8 added) | 2.0 | 4 |" in table
    assert "| same folder again | 0.50 | 20 |" in table
