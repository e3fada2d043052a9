"""``predict --onnx MODEL FOLDER --ray`` on a local two-CPU Ray: the same CSV and overlays as the
local path."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
import ray
import skimage.data
from PIL import Image
from support import tiny_metadata, tiny_tuned_model

from ept_studio.cli import main
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.data.render import render_file

SAMPLES = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent
CLASSES = ("cyst", "nodule", "normal")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_tuned_model(3, head_seed=3)
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    images = [render_file(SAMPLES / "CT_small.dcm"), render_file(SAMPLES / "MR_small.dcm")]
    export_onnx(model, path, model_info(model, tiny_metadata(model, CLASSES), "cd" * 32), images)
    return path


def image_folder(root: Path) -> Path:
    """Eleven DICOM and PNG files in two folders, and one file that is not an image."""
    folder = root / "archive"
    (folder / "b").mkdir(parents=True)
    for name in ("CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm"):
        shutil.copyfile(SAMPLES / name, folder / name)
    retina = skimage.data.retina()
    for index in range(8):
        crop = retina[40 * index : 40 * index + 220, 60 * index : 60 * index + 220]
        Image.fromarray(crop).save(folder / "b" / f"fundus{index}.png")
    (folder / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return folder


def predict(folder: Path, model: Path, out: Path, *extra: str) -> list[dict[str, str]]:
    table = out / "predictions.csv"
    argv = ["predict", str(folder), "--onnx", str(model), "--csv", str(table)]
    code = main([*argv, "--overlays", str(out / "overlays"), "--batch-size", "4", *extra])
    assert code == 0
    with table.open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_ray_writes_the_local_paths_csv_and_overlays(
    tmp_path: Path, tiny_onnx: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = image_folder(tmp_path)
    local = predict(folder, tiny_onnx, tmp_path / "local")
    local_err = capsys.readouterr().err
    on_ray = predict(folder, tiny_onnx, tmp_path / "ray", "--ray")
    ray_err = capsys.readouterr().err
    assert len(local) == 11
    assert "Ray (1 ONNX Runtime actors, CPU)" in ray_err
    assert [line for line in ray_err.splitlines() if line.startswith("skipped")] == [
        line for line in local_err.splitlines() if line.startswith("skipped")
    ]
    assert "broken.png" in ray_err

    def without_overlay(rows: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in row.items() if k != "overlay"} for row in rows]

    assert without_overlay(on_ray) == without_overlay(local)
    scores = np.array([[float(r[f"score_{n}"]) for n in CLASSES] for r in on_ray])
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    for ray_row, local_row in zip(on_ray, local, strict=True):
        assert Path(ray_row["overlay"]).parent == tmp_path / "ray" / "overlays"
        assert Path(ray_row["overlay"]).read_bytes() == Path(local_row["overlay"]).read_bytes()
