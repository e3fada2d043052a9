"""The viewer service: window / level on real DICOM files against hand-computed pixels, presets,
inversion, frames, hidden identifying fields, and model attention from stored predictions."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image

from ept_studio.common.errors import ConfigError, ProjectError
from ept_studio.data.overlay import grid_cell
from ept_studio.data.packaged_dicom import pydicom_data_folder
from ept_studio.data.render import RenderingSpec, render_file
from ept_studio.data.store import PredictionRow, Project
from ept_studio.services.project import create_project, import_paths
from ept_studio.services.project.viewer import (
    CT_PRESETS,
    HIDDEN,
    WindowLevel,
    attention_layer,
    metadata_rows,
    open_view,
    open_view_file,
    overlay_caption,
    overlay_for,
    prediction_runs,
    render_view,
)

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
CT = PYDICOM_FILES / "CT_small.dcm"
MR = PYDICOM_FILES / "MR_small.dcm"
_DATA = pydicom_data_folder()
assert _DATA is not None, "pydicom-data (a dev dependency) is not installed"
MULTI_FRAME = _DATA / "emri_small.dcm"


def test_ct_window_gives_the_linear_voi_values_computed_by_hand() -> None:
    view = open_view_file(CT)
    shown = render_view(view, 40.0, 400.0)
    # stored 1227 / 1089 - 1024 (RescaleIntercept) = 203 / 65 HU; LINEAR c=40, w=400:
    # ((x - 39.5) / 399 + 0.5) * 255 -> 231.99 and 143.80
    assert shown.shape == (128, 128, 3)
    assert shown.dtype == np.uint8
    assert shown[10, 100].tolist() == [232, 232, 232]
    assert shown[100, 30].tolist() == [144, 144, 144]
    assert shown[0, 0, 0] == 0  # -849 HU, below the window
    assert shown[64, 64, 0] == 255  # 904 HU, above it
    assert view.decoded(0).pixels[10, 100] == 203.0  # modality values, not 8-bit


def test_mr_stored_rendering_is_the_files_window_and_the_models_pixels() -> None:
    view = open_view_file(MR)
    assert view.stored_window == WindowLevel(600.0, 1600.0)
    assert view.stored_voi == "file window"
    shown = render_view(view)
    np.testing.assert_array_equal(shown, render_file(MR))
    # ((296 - 599.5) / 1599 + 0.5) * 255 = 79.10; ((905 - 599.5) / 1599 + 0.5) * 255 = 176.22
    assert shown[20, 40, 0] == 79
    assert shown[0, 0, 0] == 176
    np.testing.assert_array_equal(render_view(view, 600.0, 1600.0), shown)


def test_width_below_one_is_clamped_to_a_threshold_at_the_centre() -> None:
    view = open_view_file(CT)
    shown = render_view(view, 203.5, 0.0)
    values = view.decoded(0).pixels
    np.testing.assert_array_equal(shown[:, :, 0] == 255, values > 203.0)
    assert WindowLevel(10.0, -5.0).width == 1.0
    with pytest.raises(ConfigError, match="finite"):
        WindowLevel(float("nan"), 100.0)


def test_presets_standard_ct_windows_only_for_ct() -> None:
    ct = open_view_file(CT)
    names = [preset.name for preset in ct.presets]
    assert names == ["Lung", "Mediastinum", "Abdomen", "Bone", "Brain"]
    lung = ct.presets[0].window
    assert (lung.centre, lung.width) == (-600.0, 1500.0)
    assert ct.presets[0].label == "Lung (W 1500 / L -600)"
    mr = open_view_file(MR)
    assert [p.name for p in mr.presets] == ["File window 1"]
    assert not set(mr.presets) & set(CT_PRESETS)


def test_ct_without_window_tags_starts_from_a_percentile_window() -> None:
    view = open_view_file(CT)
    assert view.stored_voi == "percentile window"
    low, high = np.percentile(view.decoded(0).pixels, (0.5, 99.5))
    assert view.stored_window == WindowLevel((low + high) / 2, high - low)
    assert view.drag_step == pytest.approx((1167.0 + 896.0) / 400.0)


@pytest.mark.parametrize("window", [(None, None), (40.0, 400.0), (-600.0, 1500.0)])
def test_invert_is_255_minus_the_image(window: tuple[float | None, float | None]) -> None:
    view = open_view_file(CT)
    plain = render_view(view, *window)
    inverted = render_view(view, *window, invert=True)
    np.testing.assert_array_equal(inverted.astype(int), 255 - plain.astype(int))


def test_a_stored_inversion_is_swapped_back_by_invert() -> None:
    view = open_view_file(MR, RenderingSpec(invert=True))
    np.testing.assert_array_equal(render_view(view, invert=True), render_file(MR))


def test_frames_of_a_multi_frame_file_differ_and_are_decoded_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    view = open_view_file(MULTI_FRAME)
    assert view.frames == 10
    first, eighth = render_view(view, frame=0), render_view(view, frame=7)
    np.testing.assert_array_equal(eighth, render_file(MULTI_FRAME, RenderingSpec(frame=7)))
    assert not np.array_equal(first, eighth)
    monkeypatch.setattr("ept_studio.services.project.viewer.decode_file", _no_decoding)
    for width in (100.0, 200.0, 300.0):  # dragging the window only re-renders
        render_view(view, 150.0, width, frame=7)
    with pytest.raises(ConfigError, match="frame 11 does not exist"):
        render_view(view, frame=10)


def _no_decoding(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("decoded again")


def test_png_has_no_window_level_but_inverts(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    pixels = np.arange(48 * 3, dtype=np.uint8).reshape(4, 12, 3)
    Image.fromarray(pixels).save(path)
    view = open_view_file(path)
    assert (view.windowable, view.stored_window, view.presets, view.kind) == (
        False,
        None,
        (),
        "image",
    )
    np.testing.assert_array_equal(render_view(view, 10.0, 20.0), pixels)  # window ignored
    np.testing.assert_array_equal(render_view(view, invert=True), 255 - pixels)
    rows = {row.name: row.value for row in metadata_rows(view)}
    assert rows == {
        "File name": HIDDEN,
        "Kind": "PNG",
        "Size": "12 × 4 pixels",
        "Frames": "1",
        "Colour": "colour (RGB)",
    }


def test_identifying_fields_are_hidden_unless_asked() -> None:
    view = open_view_file(CT)
    patient = str(pydicom.dcmread(CT, stop_before_pixels=True).PatientName)
    assert patient == "CompressedSamples^CT1"
    hidden = metadata_rows(view)
    texts = " ".join(f"{row.name} {row.value}" for row in hidden)
    assert patient not in texts
    assert "JFK IMAGING CENTER" not in texts
    assert "1CT1" not in texts
    assert "ct" not in [row.value for row in hidden if row.name == "File name"]
    by_name = {row.name: row for row in hidden}
    for name in ("Patient's Name", "Patient ID", "Institution Name", "Study Date"):
        assert by_name[name].value == HIDDEN
        assert by_name[name].hidden
    assert by_name["Study Instance UID"].value == HIDDEN
    assert by_name["Modality"].value == "CT"
    assert by_name["SOP Class UID"].value == "1.2.840.10008.5.1.4.1.1.2"
    assert by_name["Image Position (Patient)"].value.startswith("[-158.135803")
    private = sum(1 for e in pydicom.dcmread(CT, stop_before_pixels=True) if e.tag.is_private)
    assert private == 179
    assert by_name["Private elements (179)"].value == HIDDEN
    assert patient not in repr(hidden)

    shown = {row.name: row.value for row in metadata_rows(view, show_phi=True)}
    assert shown["Patient's Name"] == patient
    assert shown["Institution Name"] == "JFK IMAGING CENTER"
    assert shown["File name"] == "CT_small.dcm"


# -- model attention -------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    folder = tmp_path / "studies"
    folder.mkdir()
    shutil.copy(CT, folder / "ct.dcm")
    opened = create_project(tmp_path / "project", locations_dir=tmp_path / "locations")
    report = import_paths(opened, [folder], thumbnails=False)
    assert len(report.added) == 1
    yield opened
    opened.close()


def _one_hot_run(project: Project, image_id: int, patches: tuple[int, ...]) -> int:
    """A run whose stored attention puts each head's whole weight on one patch of a 4 x 4 grid."""
    run_id = project.record_run(
        config={"kind": "inference"},
        seed=0,
        versions={},
        backbone="tiny-test-vit",
        backbone_sha256="ab" * 32,
    )
    attention = np.zeros((len(patches), 16), dtype=np.float32)
    attention[np.arange(len(patches)), list(patches)] = 1.0
    row = PredictionRow(image_id, "fundus", {"fundus": 0.9, "histology": 0.1}, attention)
    project.record_predictions(run_id, [row])
    return run_id


def _brightest(overlay: np.ndarray) -> tuple[int, int]:
    index = np.unravel_index(np.argmax(overlay.astype(int).sum(axis=2)), overlay.shape[:2])
    return int(index[0]), int(index[1])


def test_overlay_is_brightest_over_the_attended_patch(project: Project) -> None:
    image_id = project.images()[0].id
    run_id = _one_hot_run(project, image_id, (5, 5))
    overlay = overlay_for(project, image_id, run_id, opacity=1.0)
    assert overlay is not None
    assert overlay.shape == (128, 128, 3)
    rows, columns = grid_cell(5, (4, 4), (128, 128))  # row 1, column 1: pixels 32..63
    row, column = _brightest(overlay)
    assert rows.start <= row < rows.stop
    assert columns.start <= column < columns.stop
    base = render_view(open_view(project, image_id))
    np.testing.assert_array_equal(overlay_for(project, image_id, run_id, opacity=0.0), base)


def test_one_head_is_shown_with_a_caption_counting_from_one(project: Project) -> None:
    image_id = project.images()[0].id
    run_id = _one_hot_run(project, image_id, (0, 15))
    layer = attention_layer(project, image_id, run_id)
    assert layer is not None
    assert (layer.heads, layer.grid) == (2, (4, 4))
    overlay = overlay_for(project, image_id, run_id, head=1, opacity=1.0)
    assert overlay is not None
    assert _brightest(overlay)[0] >= 96
    assert _brightest(overlay)[1] >= 96
    assert overlay_caption(layer) == "model attention (mean of 2 heads)"
    assert overlay_caption(layer, 1) == "model attention (head 2 of 2)"
    with pytest.raises(ConfigError, match="head 2 does not exist"):
        overlay_caption(layer, 2)


def test_no_prediction_means_no_overlay(project: Project) -> None:
    image_id = project.images()[0].id
    other_run = project.record_run(
        config={}, seed=0, versions={}, backbone="b", backbone_sha256="cd" * 32
    )
    assert overlay_for(project, image_id, other_run) is None
    assert prediction_runs(project, image_id) == []
    run_id = _one_hot_run(project, image_id, (3,))
    assert prediction_runs(project, image_id) == [run_id]


def test_an_image_whose_file_is_gone_says_so_without_its_path(
    project: Project, tmp_path: Path
) -> None:
    image_id = project.images()[0].id
    (tmp_path / "studies" / "ct.dcm").unlink()
    with pytest.raises(ProjectError, match="not on this machine") as caught:
        open_view(project, image_id)
    assert "ct.dcm" not in str(caught.value)


def test_a_training_runs_test_prediction_without_attention_is_no_overlay(
    project: Project,
) -> None:
    """A training run stores its test predictions with no attention (an empty array): the
    viewer skips it and finds the inference run's map instead of failing."""
    image_id = project.images()[0].id
    inference = _one_hot_run(project, image_id, (3,))
    training = project.record_run(
        config={}, seed=0, versions={}, backbone="b", backbone_sha256="cd" * 32
    )
    empty = np.zeros((0, 0), dtype=np.float32)
    project.record_predictions(
        training, [PredictionRow(image_id, "fundus", {"fundus": 0.6, "histology": 0.4}, empty)]
    )
    assert attention_layer(project, image_id, training) is None
    assert prediction_runs(project, image_id) == [inference]
