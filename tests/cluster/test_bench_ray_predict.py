"""``bench ray-predict`` at a tiny size: the local and the Ray path write the same CSV, and the
figures are real positive numbers."""

from __future__ import annotations

import math

import pytest
import ray

from ept_studio.cli import main
from ept_studio.cli.onnx import write_predictions_csv
from ept_studio.evidence.bench_ray_predict import DICOM_COPIES, run_ray_predict_bench


def test_twelve_images_score_the_same_locally_and_on_ray() -> None:
    bench = run_ray_predict_bench(write_predictions_csv, images=12, cpus=2, batch_size=4)
    assert not ray.is_initialized()
    assert bench.same_csv
    assert (bench.images, bench.dicom, bench.cpus) == (12, DICOM_COPIES, 2)
    assert bench.provider == "Ray (1 ONNX Runtime actors, CPU)"
    for figure in (bench.local_ips, bench.ray_ips, bench.ratio, bench.ray_start_s):
        assert math.isfinite(figure)
        assert figure > 0
    assert bench.ratio == pytest.approx(bench.local_s / bench.ray_s)
    table = bench.markdown()
    assert f"| {bench.ray_ips:.1f} |" in table
    assert "prediction CSVs (batch size 4): identical" in table


def test_the_command_refuses_a_folder_of_only_dicom(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "ray-predict", "--images", str(DICOM_COPIES)]) == 2
    assert f"images must be more than {DICOM_COPIES}" in capsys.readouterr().err
    assert not ray.is_initialized()
