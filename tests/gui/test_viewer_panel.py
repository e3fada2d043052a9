"""The viewer panel: mouse window / level and zoom, frames, inversion, presets, hidden identifying
fields and the model attention overlay, on real DICOM files in a real project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot
from support import BLOCK_TORCH

from ept_studio.data.bench_decode import pydicom_data_folder
from ept_studio.data.store import PredictionRow
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.viewer import ViewerPanel
from ept_studio.services.project import import_paths
from ept_studio.services.viewer import HIDDEN, open_view, render_view

pytestmark = pytest.mark.gui

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
_DATA = pydicom_data_folder()
assert _DATA is not None, "pydicom-data (a dev dependency) is not installed"
MULTI_FRAME = _DATA / "emri_small.dcm"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[ProjectSession]:
    """A project holding CT_small (id 1) and the 10-frame emri_small (id 2)."""
    studies = tmp_path / "studies"
    studies.mkdir()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", studies / "a_ct.dcm")
    shutil.copy(MULTI_FRAME, studies / "b_mr.dcm")
    opened = ProjectSession()
    opened.new_project(tmp_path / "project")
    assert opened.project is not None
    report = import_paths(opened.project, [studies], thumbnails=False)
    assert [image_id for _, image_id in sorted(report.added)] == [1, 2]
    yield opened
    opened.close()


@pytest.fixture
def panel(qtbot: QtBot, session: ProjectSession) -> ViewerPanel:
    viewer = ViewerPanel(session)
    qtbot.addWidget(viewer)
    viewer.resize(1000, 600)
    viewer.show()
    qtbot.waitExposed(viewer)
    return viewer


def _mouse(widget: QWidget, kind: QMouseEvent.Type, at: QPoint, button: Qt.MouseButton) -> None:
    held = Qt.MouseButton.NoButton if kind == QMouseEvent.Type.MouseButtonRelease else button
    moved = Qt.MouseButton.NoButton if kind == QMouseEvent.Type.MouseMove else button
    point = QPointF(at)
    event = QMouseEvent(
        kind, point, widget.mapToGlobal(point), moved, held, Qt.KeyboardModifier.NoModifier
    )
    QApplication.sendEvent(widget, event)


def _drag(widget: QWidget, button: Qt.MouseButton, start: QPoint, end: QPoint) -> None:
    _mouse(widget, QMouseEvent.Type.MouseButtonPress, start, button)
    middle = (start + end) / 2
    for at in (middle, end):
        _mouse(widget, QMouseEvent.Type.MouseMove, at, button)
    _mouse(widget, QMouseEvent.Type.MouseButtonRelease, end, button)


def test_right_drag_right_widens_and_up_raises_the_level(panel: ViewerPanel) -> None:
    assert panel.show_image(1)
    start = panel.window_level
    assert start is not None
    assert panel.readout.text().endswith("(percentile window)")
    viewport = panel.canvas.viewport()
    centre = viewport.rect().center()
    step = panel.view.drag_step if panel.view else 0.0
    _drag(viewport, Qt.MouseButton.RightButton, centre, centre + QPoint(40, 0))
    wider = panel.window_level
    assert wider is not None
    assert wider.width == pytest.approx(start.width + 40 * step)
    assert wider.centre == pytest.approx(start.centre)
    _drag(viewport, Qt.MouseButton.RightButton, centre, centre + QPoint(0, -30))
    higher = panel.window_level
    assert higher is not None
    assert higher.centre == pytest.approx(start.centre + 30 * step)
    assert higher.width == pytest.approx(wider.width)
    assert panel.readout.text() == higher.text()
    assert panel.view is not None
    expected = render_view(panel.view, higher.centre, higher.width)
    assert panel.shown is not None
    np.testing.assert_array_equal(panel.shown, expected)
    panel.reset()
    assert panel.window_level == start


def test_left_drag_pans_unless_window_mode_is_on(panel: ViewerPanel) -> None:
    panel.show_image(1)
    start = panel.window_level
    viewport = panel.canvas.viewport()
    centre = viewport.rect().center()
    before = panel.canvas.mapToScene(centre)
    _drag(viewport, Qt.MouseButton.LeftButton, centre, centre + QPoint(50, 0))
    assert panel.window_level == start
    after = panel.canvas.mapToScene(centre)  # the image moved 50 screen pixels to the right
    assert before.x() - after.x() == pytest.approx(50 / panel.zoom, abs=1 / panel.zoom)
    assert after.y() == pytest.approx(before.y(), abs=1 / panel.zoom)
    panel.left_windows_box.setChecked(True)
    _drag(viewport, Qt.MouseButton.LeftButton, centre, centre + QPoint(50, 0))
    assert start is not None
    assert panel.window_level is not None
    assert panel.window_level.width > start.width


def test_wheel_zooms_around_the_cursor(panel: ViewerPanel) -> None:
    panel.show_image(1)
    viewport = panel.canvas.viewport()
    fitted = panel.zoom
    assert fitted > 1.0  # a 128-pixel image fitted into a larger view
    corner = QPointF(viewport.rect().center()) + QPointF(60.0, 40.0)
    under = panel.canvas.mapToScene(corner.toPoint())
    wheel = QWheelEvent(
        corner,
        viewport.mapToGlobal(corner),
        QPoint(0, 0),
        QPoint(0, 240),  # two notches
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(viewport, wheel)
    assert panel.zoom == pytest.approx(fitted * 1.25**2)
    after = panel.canvas.mapToScene(corner.toPoint())
    assert abs(after.x() - under.x()) < 1.0
    assert abs(after.y() - under.y()) < 1.0
    panel.fit_button.click()
    assert panel.zoom == pytest.approx(fitted)


def test_frame_slider_shows_the_other_frames(panel: ViewerPanel) -> None:
    panel.show_image(1)
    assert panel.frame_row.isHidden()
    panel.show_image(2)
    assert panel.frame_row.isVisible()
    assert panel.frame_slider.maximum() == 10
    first = panel.shown
    panel.frame_slider.setValue(8)
    assert panel.frame == 7
    assert panel.frame_label.text() == "Frame 8 of 10"
    assert panel.view is not None
    assert panel.shown is not None
    assert first is not None
    assert not np.array_equal(panel.shown, first)
    np.testing.assert_array_equal(panel.shown, render_view(panel.view, frame=7))


def test_invert_and_presets(panel: ViewerPanel) -> None:
    panel.show_image(1)
    plain = panel.shown
    panel.set_invert(True)
    assert plain is not None
    assert panel.shown is not None
    np.testing.assert_array_equal(panel.shown.astype(int), 255 - plain.astype(int))
    labels = [panel.presets.itemText(i) for i in range(panel.presets.count())]
    assert labels[0] == "Lung (W 1500 / L -600)"
    assert len(labels) == 5
    panel.presets.setCurrentIndex(0)
    panel.presets.activated.emit(0)
    window = panel.window_level
    assert window is not None
    assert (window.centre, window.width) == (-600.0, 1500.0)
    panel.reset()
    assert not panel.invert
    assert panel.presets.currentIndex() == -1
    np.testing.assert_array_equal(panel.shown, plain)


def test_identifying_fields_are_hidden_until_asked(panel: ViewerPanel) -> None:
    panel.show_image(1)
    assert not panel.phi_box.isChecked()
    values = _table(panel)
    assert values["Patient's Name"] == HIDDEN
    assert values["File name"] == HIDDEN
    assert "CompressedSamples^CT1" not in values.values()
    assert values["Modality"] == "CT"
    panel.phi_box.setChecked(True)
    values = _table(panel)
    assert values["Patient's Name"] == "CompressedSamples^CT1"
    assert values["File name"] == "a_ct.dcm"


def _table(panel: ViewerPanel) -> dict[str, str]:
    table = panel.metadata
    items = ((table.item(row, 1), table.item(row, 2)) for row in range(table.rowCount()))
    return {name.text(): value.text() for name, value in items if name and value}


def _one_hot_run(session: ProjectSession, image_id: int) -> int:
    project = session.project
    assert project is not None
    run_id = project.record_run(
        config={"kind": "inference"},
        seed=0,
        versions={},
        backbone="tiny",
        backbone_sha256="ab" * 32,
    )
    attention = np.zeros((4, 16), dtype=np.float32)
    attention[:, 5] = 1.0
    project.record_predictions(run_id, [PredictionRow(image_id, "fundus", {}, attention)])
    return run_id


def test_overlay_toggle_blends_attention_with_its_caption(
    panel: ViewerPanel, session: ProjectSession, tmp_path: Path
) -> None:
    run_id = _one_hot_run(session, 1)
    panel.show_image(1)
    plain = panel.shown
    assert plain is not None
    assert panel.caption.isHidden()
    panel.overlay_box.setChecked(True)  # picks the newest run with a prediction
    assert panel.overlay_shown
    assert panel.caption.isVisible()
    assert panel.caption.text().startswith("model attention (mean of 4 heads)")
    assert panel.shown is not None
    assert not np.array_equal(panel.shown, plain)
    assert [panel.head_combo.itemText(i) for i in range(5)] == [
        "mean over heads",
        "head 1",
        "head 2",
        "head 3",
        "head 4",
    ]
    panel.set_head(2)
    assert panel.caption.text().startswith("model attention (head 3 of 4)")
    panel.set_opacity(0)
    np.testing.assert_array_equal(panel.shown, plain)
    panel.set_opacity(80)
    assert panel.opacity == pytest.approx(0.8)
    panel.grab().save(str(tmp_path / "viewer.png"))
    panel.set_overlay(None)
    assert not panel.overlay_shown
    assert panel.caption.isHidden()
    np.testing.assert_array_equal(panel.shown, plain)
    panel.set_overlay(run_id)
    assert panel.overlay_shown


def test_overlay_without_a_prediction_says_so(panel: ViewerPanel) -> None:
    panel.show_image(2)
    panel.overlay_box.setChecked(True)
    assert not panel.overlay_shown
    assert panel.caption.isVisible()
    assert "no stored model attention" in panel.caption.text()


def test_an_image_that_cannot_be_opened_names_no_path(
    panel: ViewerPanel, session: ProjectSession, tmp_path: Path
) -> None:
    (tmp_path / "studies" / "a_ct.dcm").unlink()
    assert not panel.show_image(1)
    assert panel.message.isVisible()
    assert "a_ct" not in panel.message.text()
    assert panel.view is None
    assert session.project is not None
    with pytest.raises(Exception, match="not on this machine"):
        open_view(session.project, 1)


def test_the_viewer_needs_no_torch() -> None:
    script = BLOCK_TORCH + "import ept_studio.gui.viewer, ept_studio.services.viewer\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
