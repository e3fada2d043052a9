"""Trying a model on a new image: the same scores as predicting it in the project, an attention
overlay of the image's size, and the file neither imported nor changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from labelled_projects import tiny_trained_project
from support import tiny_backbone

from ept_studio.common.errors import EptStudioError, ProjectError
from ept_studio.services.project import Project
from ept_studio.services.project.inference import ProjectPredicted
from ept_studio.services.project.preview import preview_image
from ept_studio.services.project.run_actions import predict_with_run


@pytest.fixture
def trained(tmp_path: Path, class_folders: Path) -> tuple[Path, int, Path]:
    """A project with one finished EPT run on the tiny backbone: (folder, run id, locations)."""
    locations = tmp_path / "locations"
    folder = tmp_path / "project"
    run_id = tiny_trained_project(folder, class_folders, [4, 5, 10, 11], locations)
    return folder, run_id, locations


def test_a_new_image_gets_the_scores_the_project_would_give_it(
    trained: tuple[Path, int, Path], class_folders: Path, tmp_path: Path
) -> None:
    folder, run_id, locations = trained
    dropped = tmp_path / "elsewhere" / "new.png"
    dropped.parent.mkdir()
    shutil.copy(class_folders / "histology" / "img03.png", dropped)
    before = dropped.read_bytes()
    preview = preview_image(folder, run_id, dropped, tiny_backbone(), locations_dir=locations)
    assert set(preview.scores) == {"fundus", "histology"}
    assert sum(preview.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert preview.predicted_class == preview.top(1)[0][0]
    assert [name for name, _ in preview.top()] == sorted(
        preview.scores, key=preview.scores.__getitem__, reverse=True
    )
    assert preview.image.shape == preview.overlay.shape == (160, 160, 3)
    assert preview.image.dtype == preview.overlay.dtype == np.uint8
    assert not np.array_equal(preview.image, preview.overlay)
    assert preview.overlay_caption == "model attention (mean of 4 heads)"
    assert preview.file_name == "new.png"
    assert dropped.read_bytes() == before
    assert sorted(p.name for p in dropped.parent.iterdir()) == ["new.png"]

    events = list(
        predict_with_run(folder, run_id, backbone=tiny_backbone(), locations_dir=locations)
    )
    predicted = events[-1]
    assert isinstance(predicted, ProjectPredicted)
    with Project.open(folder, locations_dir=locations) as project:
        assert len(project.images()) == 12  # the dropped file was not imported
        same = next(
            i
            for i in project.images()
            if i.path and i.path.name == "img03.png" and i.path.parent.name == "histology"
        )
        row = next(r for r in project.predictions(predicted.run_id) if r.image_id == same.id)
    for name, score in row.scores.items():
        assert preview.scores[name] == pytest.approx(score, abs=1e-5)


def test_a_file_that_is_not_an_image_or_a_run_that_is_not_a_model_is_refused(
    trained: tuple[Path, int, Path], tmp_path: Path
) -> None:
    folder, run_id, locations = trained
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image\n", encoding="utf-8")
    with pytest.raises(EptStudioError):
        preview_image(folder, run_id, notes, tiny_backbone(), locations_dir=locations)
    with pytest.raises(ProjectError, match="no run 99"):
        preview_image(folder, 99, notes, tiny_backbone(), locations_dir=locations)


def test_a_dropped_dicom_is_rendered_with_the_models_window(
    trained: tuple[Path, int, Path], tmp_path: Path
) -> None:
    import pydicom

    folder, run_id, locations = trained
    source = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"
    dropped = tmp_path / "ct.dcm"
    shutil.copy(source, dropped)
    preview = preview_image(folder, run_id, dropped, tiny_backbone(), locations_dir=locations)
    assert preview.image.shape == preview.overlay.shape == (128, 128, 3)
    assert sum(preview.scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert preview.predicted_class in ("fundus", "histology")
    assert preview.image.min() < 50 < 200 < preview.image.max()  # windowed, not blank
    assert dropped.read_bytes() == source.read_bytes()
