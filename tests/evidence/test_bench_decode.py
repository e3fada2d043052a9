"""The decoding benchmark's two paths (the app's and plain pydicom) agree, so its ratio is fair."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from ept_studio.evidence.bench_decode import ours, plain_pydicom, synthetic_files


def test_benchmark_paths_agree_on_a_synthetic_ct(tmp_path: Path) -> None:
    (_, ct), (_, big) = synthetic_files(tmp_path)
    assert pydicom.dcmread(ct).Rows == 512
    assert pydicom.dcmread(big, stop_before_pixels=True).Columns == 2048
    # the synthetic CT has window 40 / 400 and pixels spanning it, so min-max scaling of
    # pydicom's windowed output is the same mapping as ours
    assert np.abs(ours(ct).astype(int) - plain_pydicom(ct).astype(int)).max() <= 1
