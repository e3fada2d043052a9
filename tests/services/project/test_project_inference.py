"""An inference run over a project's images, stored as the run's predictions (real ONNX Runtime)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import skimage.data
from PIL import Image
from support import tiny_metadata, tiny_tuned_model

from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.data.render import render_file
from ept_studio.data.store import Project
from ept_studio.services.model.onnx_inference import InferenceFinished
from ept_studio.services.project import create_project, import_paths
from ept_studio.services.project.inference import ProjectPredicted, predict_project

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> OnnxRunner:
    model = tiny_tuned_model(2, seed=1, head_seed=3)
    metadata = tiny_metadata(model, ("ct", "other"))
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    images = [render_file(SAMPLES / "CT_small.dcm"), render_file(SAMPLES / "MR_small.dcm")]
    export_onnx(model, path, model_info(model, metadata, "cd" * 32), images)
    return OnnxRunner(path, device="cpu", threads=1)


def _project(tmp_path: Path) -> Path:
    sources = tmp_path / "sources"
    sources.mkdir()
    shutil.copyfile(SAMPLES / "CT_small.dcm", sources / "ct.dcm")
    shutil.copyfile(SAMPLES / "MR_small.dcm", sources / "mr.dcm")
    Image.fromarray(skimage.data.retina()[200:400, 200:400]).save(sources / "fundus.png")
    folder = tmp_path / "project"
    with create_project(folder, locations_dir=tmp_path / "loc") as project:
        assert len(import_paths(project, [sources], thumbnails=False).added) == 3
    return folder


def test_predictions_are_stored_per_image_with_attention(
    tmp_path: Path, runner: OnnxRunner
) -> None:
    folder = _project(tmp_path)
    events = list(
        predict_project(folder, runner, model_name="tiny.onnx", locations_dir=tmp_path / "loc")
    )
    done = events[-1]
    assert isinstance(done, ProjectPredicted)
    assert (done.predicted, done.failed, done.cancelled) == (3, 0, False)
    finished = next(e for e in events if isinstance(e, InferenceFinished))
    with Project.open(folder, locations_dir=tmp_path / "loc") as project:
        run = project.run(done.run_id)
        assert run.status == "finished"
        assert run.config["kind"] == "inference"
        assert run.metrics == {"images": 3, "failed": 0}
        assert run.device == "CPUExecutionProvider"
        stored = {row.image_id: row for row in project.predictions(done.run_id)}
        paths = {image.id: image.path for image in project.images()}
    assert len(stored) == 3
    for prediction in finished.predictions:
        image_id = next(i for i, p in paths.items() if p == prediction.path)
        row = stored[image_id]
        assert row.predicted_class == prediction.predicted_class
        assert row.scores == pytest.approx(prediction.scores, abs=1e-7)
        assert row.attention.shape == (4, 16)
        np.testing.assert_array_equal(row.attention, prediction.attention.astype(np.float32))
    expected = runner.predict([render_file(SAMPLES / "CT_small.dcm")])
    ct_row = stored[next(i for i, p in paths.items() if p is not None and p.name == "ct.dcm")]
    assert ct_row.scores["ct"] == pytest.approx(float(expected.probabilities[0, 0]), abs=1e-6)


def test_a_cancelled_inference_run_is_recorded_as_cancelled(
    tmp_path: Path, runner: OnnxRunner
) -> None:
    folder = _project(tmp_path)
    events = list(
        predict_project(
            folder,
            runner,
            model_name="tiny.onnx",
            batch_size=1,
            cancel=lambda: True,
            locations_dir=tmp_path / "loc",
        )
    )
    done = events[-1]
    assert isinstance(done, ProjectPredicted)
    assert done.cancelled
    assert done.predicted < 3
    with Project.open(folder, locations_dir=tmp_path / "loc") as project:
        assert project.run(done.run_id).status == "cancelled"
        assert len(project.predictions(done.run_id)) == done.predicted
