"""What the viewer says about an image (labels, role, the latest run's top score, its size) and the
colours of its attention legend, on real DICOM files in a real project."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from PIL import Image

from ept_studio.common.errors import ConfigError
from ept_studio.data.overlay import grid_cell
from ept_studio.data.packaged_dicom import pydicom_data_folder
from ept_studio.data.store import LabelMode, PredictionRow, Project, Role
from ept_studio.services.project import create_project, import_paths
from ept_studio.services.project.viewer import attention_colour_stops, open_view_file, overlay_for
from ept_studio.services.project.viewer_caption import ImageCaption, image_caption, view_summary

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
CT = PYDICOM_FILES / "CT_small.dcm"
_DATA = pydicom_data_folder()
assert _DATA is not None, "pydicom-data (a dev dependency) is not installed"
MULTI_FRAME = _DATA / "emri_small.dcm"


def _project(tmp_path: Path, mode: LabelMode) -> Project:
    folder = tmp_path / "studies"
    folder.mkdir()
    shutil.copy(CT, folder / "a_ct.dcm")
    shutil.copy(MULTI_FRAME, folder / "b_mr.dcm")
    project = create_project(tmp_path / "project", mode, locations_dir=tmp_path / "locations")
    import_paths(project, [folder], thumbnails=False)
    for name in ("Lung", "Brain", "Bone"):
        project.labels.add_class(name)
    return project


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    opened = _project(tmp_path, LabelMode.SINGLE)
    yield opened
    opened.close()


def _run(project: Project, rows: list[PredictionRow], status: str = "finished") -> int:
    run_id = project.record_run(
        config={"kind": "inference"}, seed=0, versions={}, backbone="b", backbone_sha256="ab" * 32
    )
    project.record_predictions(run_id, rows)
    project.finish_run(run_id, status)
    return run_id


def _row(image_id: int, predicted: str, scores: dict[str, float]) -> PredictionRow:
    return PredictionRow(image_id, predicted, scores, np.zeros((2, 16), dtype=np.float32))


def test_an_unlabelled_image_without_predictions(project: Project) -> None:
    caption = image_caption(project, 1, None)
    assert caption == ImageCaption()
    assert (caption.label_text, caption.model_text) == ("Unlabelled", "")


def test_label_role_and_the_top_score(project: Project) -> None:
    brain = project.labels.classes()[1].id
    project.labels.set_label([1], brain)
    run_id = _run(project, [_row(1, "Lung", {"Lung": 0.0812, "Brain": 0.9188})])
    caption = image_caption(project, 1, run_id)
    assert caption.labels == ("Brain",)
    assert caption.role == "train"
    assert caption.label_text == "Brain · train"
    assert (caption.model_class, caption.model_score) == ("Brain", pytest.approx(0.9188))
    assert caption.model_text == "Model: Brain 92 % (model score)"
    project.labels.set_role([1], Role.TEST)
    assert image_caption(project, 1, run_id).label_text == "Brain · test"
    # the run did not score image 2; a run without scores names its predicted class only
    assert image_caption(project, 2, run_id).model_text == ""
    bare = _run(project, [_row(2, "Bone", {})])
    assert image_caption(project, 2, bare).model_text == "Model: Bone"


def test_multi_label_names_follow_the_class_list(tmp_path: Path) -> None:
    project = _project(tmp_path, LabelMode.MULTI)
    try:
        lung, _, bone = (info.id for info in project.labels.classes())
        project.labels.set_label([1], bone)
        project.labels.set_label([1], lung)
        assert image_caption(project, 1, None).label_text == "Lung, Bone · train"
    finally:
        project.close()


def test_the_summary_says_kind_size_and_frames_once(tmp_path: Path) -> None:
    assert view_summary(open_view_file(CT)) == "CT · 128 × 128 px"
    assert view_summary(open_view_file(MULTI_FRAME)) == "MR · 64 × 64 px · 10 frames"
    photo = tmp_path / "photo.png"
    Image.fromarray(np.zeros((4, 12, 3), dtype=np.uint8)).save(photo)
    assert view_summary(open_view_file(photo)) == "PNG · 12 × 4 px"


def test_colour_stops_are_the_overlays_own_colours(project: Project) -> None:
    stops = attention_colour_stops()
    assert len(stops) == 256
    assert (stops[0].position, stops[-1].position) == (0.0, 1.0)
    assert stops[0].rgb == (68, 1, 84)  # viridis, dark violet (low) ...
    assert stops[-1].rgb == (253, 231, 37)  # ... to yellow (high)
    assert stops[128].rgb == (33, 145, 140)
    # one head's whole weight on patch 5 of a 4 x 4 grid: at full opacity the overlay is the
    # legend's "high" colour at that patch's centre and its "low" colour far from it
    attention = np.zeros((1, 16), dtype=np.float32)
    attention[0, 5] = 1.0
    run_id = _run(project, [PredictionRow(1, "Lung", {"Lung": 1.0}, attention)])
    overlay = overlay_for(project, 1, run_id, opacity=1.0)
    assert overlay is not None
    rows, columns = grid_cell(5, (4, 4), overlay.shape[:2])
    centre = overlay[(rows.start + rows.stop) // 2, (columns.start + columns.stop) // 2]
    assert np.abs(centre.astype(int) - np.array(stops[-1].rgb)).max() <= 20
    assert tuple(overlay[127, 127]) == stops[0].rgb
    with pytest.raises(ConfigError, match="at least 2"):
        attention_colour_stops(1)
