"""The viewer panel: mouse window / level and zoom, frames, inversion, presets, hidden identifying
fields, the model attention overlay and its legend, room for the image, previous / next and
labelling keys, on real DICOM files in a real project."""

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
from PySide6.QtGui import QAction, QKeySequence, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot
from support import BLOCK_TORCH

from ept_studio.data.packaged_dicom import pydicom_data_folder
from ept_studio.data.store import PredictionRow
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.viewer import VIEWER_KEYS, ViewerPanel
from ept_studio.services.project import import_paths
from ept_studio.services.project.viewer import (
    HIDDEN,
    attention_colour_stops,
    open_view,
    render_view,
)

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
    return _shown_panel(qtbot, session, 1000, 600)


@pytest.fixture
def small_panel(qtbot: QtBot, session: ProjectSession) -> ViewerPanel:
    """The viewer's share of a 1280 x 720 main window (its left ~62 %, below the tabs)."""
    return _shown_panel(qtbot, session, 780, 600)


def _shown_panel(qtbot: QtBot, session: ProjectSession, width: int, height: int) -> ViewerPanel:
    viewer = ViewerPanel(session)
    qtbot.addWidget(viewer)
    viewer.resize(width, height)
    viewer.show()
    qtbot.waitExposed(viewer)
    viewer.activateWindow()
    qtbot.waitUntil(viewer.isActiveWindow, timeout=5_000)  # shortcuts need the active window
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
    # stepping through the gallery goes on past it
    panel.set_sequence_source(_two_images)
    assert panel.navigator.position.text() == "1 of 2"
    panel.show_next()
    assert panel.image_id == 2
    assert panel.message.isHidden()


def _two_images() -> list[int]:
    return [1, 2]


def test_the_viewer_needs_no_torch() -> None:
    script = BLOCK_TORCH + "import ept_studio.gui.viewer, ept_studio.services.project.viewer\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


# -- room for the image, header, previous / next, labelling keys, caption, legend -------------


def _settle() -> None:
    """Let the layouts apply what was shown or hidden."""
    QApplication.processEvents()


def test_the_image_gets_most_of_a_780_by_600_viewer(
    small_panel: ViewerPanel, session: ProjectSession, tmp_path: Path
) -> None:
    assert small_panel.show_image(1)
    _settle()
    assert not small_panel.header_shown
    assert small_panel.header_button.text() == "Show header"
    height = small_panel.height()
    assert height == 600
    assert small_panel.canvas.height() >= 0.7 * height
    assert small_panel.canvas.width() >= 0.9 * small_panel.width()
    # the overlay's caption and legend, and a multi-frame image's slider, leave it most too
    _one_hot_run(session, 2)
    small_panel.show_image(2)
    small_panel.overlay_box.setChecked(True)
    _settle()
    assert small_panel.frame_row.isVisible()
    assert small_panel.caption.isVisible()
    assert small_panel.colour_bar.isVisible()
    assert small_panel.canvas.height() >= 0.7 * height
    small_panel.grab().save(str(tmp_path / "viewer.png"))


def test_show_header_puts_the_value_column_in_view(
    small_panel: ViewerPanel, session: ProjectSession
) -> None:
    _finished_run(session, 1, {"Lung": 0.81, "Brain": 0.19})
    small_panel.show_image(1)
    small_panel.header_button.click()
    _settle()
    assert small_panel.header_shown
    assert small_panel.header_button.text() == "Hide header"
    table = small_panel.metadata
    left, width = table.columnViewportPosition(2), table.columnWidth(2)
    assert left >= 0
    assert left + width <= table.viewport().width()  # not scrolled away to the right
    assert width >= 120
    assert table.isColumnHidden(0)  # the tag is in the field's tooltip instead
    assert table.textElideMode() == Qt.TextElideMode.ElideRight
    rows = {table.item(r, 1).text(): r for r in range(table.rowCount()) if table.item(r, 1)}
    position = table.item(rows["Image Position (Patient)"], 2)
    assert position.text().startswith("[-158.135803")
    assert position.toolTip() == position.text()  # the full value, however narrow the column
    assert table.item(rows["Modality"], 1).toolTip() == "Modality (0008,0060)"
    assert small_panel.canvas.height() >= 0.7 * small_panel.height()
    caption = small_panel.image_caption  # the narrower caption line keeps label and score whole
    assert caption.model.text() == "Model: Lung 81 % (model score)"
    for part in (caption.labels, caption.model):
        assert part.width() >= part.sizeHint().width()
    small_panel.header_button.click()
    assert not small_panel.header_shown
    assert small_panel.header.isHidden()


def _third_image(session: ProjectSession, tmp_path: Path) -> int:
    more = tmp_path / "more"
    more.mkdir()
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", more / "c_mr.dcm")
    assert session.project is not None
    report = import_paths(session.project, [more], thumbnails=False)
    return int(report.added[0][1])


def test_previous_and_next_follow_the_gallery_order(
    qtbot: QtBot, small_panel: ViewerPanel, session: ProjectSession, tmp_path: Path
) -> None:
    navigator = small_panel.navigator
    assert not navigator.next_action.isEnabled()  # no list until the main window gives one
    assert not navigator.previous_action.isEnabled()
    third = _third_image(session, tmp_path)
    listed = [2, third, 1]

    def gallery_order() -> list[int]:
        return list(listed)

    small_panel.set_sequence_source(gallery_order)
    small_panel.show_image(third)
    assert navigator.position.text() == "2 of 3"
    small_panel.show_next()
    assert small_panel.image_id == 1
    assert navigator.position.text() == "3 of 3"
    assert not navigator.next_action.isEnabled()
    canvas = small_panel.canvas
    assert canvas.hasFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_Right)  # past the end: stays
    assert small_panel.image_id == 1
    qtbot.keyClick(canvas, Qt.Key.Key_Left)
    assert small_panel.image_id == third
    qtbot.keyClick(canvas, Qt.Key.Key_PageUp)
    assert small_panel.image_id == 2
    assert navigator.position.text() == "1 of 3"
    assert not navigator.previous_action.isEnabled()
    qtbot.keyClick(canvas, Qt.Key.Key_PageDown)
    assert small_panel.image_id == third
    # labelled while the gallery shows "Unlabelled": it leaves the list, and next goes on
    listed.remove(third)
    session.labels_changed.emit()
    assert navigator.position.text() == "– of 2"
    small_panel.show_next()
    assert small_panel.image_id == 1
    assert navigator.position.text() == "2 of 2"


def test_keys_label_the_shown_image_and_the_caption_follows(
    qtbot: QtBot, small_panel: ViewerPanel, session: ProjectSession
) -> None:
    lung = session.add_class("Lung")
    brain = session.add_class("Brain")
    # a window-wide action on T (as the Edit menu's, for the gallery) must not steal the key
    rival = QAction("gallery's T", small_panel)
    rival.setShortcut(QKeySequence("T"))
    small_panel.addAction(rival)
    rival_fired: list[bool] = []
    rival.triggered.connect(rival_fired.append)
    small_panel.show_image(1)
    caption = small_panel.image_caption
    assert caption.labels.text() == "Unlabelled"
    qtbot.keyClick(small_panel.canvas, Qt.Key.Key_2)
    assert session.label_of(1) == [brain.id]
    assert session.label_of(2) == []
    assert caption.labels.text() == "Brain · train"
    qtbot.keyClick(small_panel.canvas, Qt.Key.Key_T)
    assert caption.labels.text() == "Brain · test"
    assert rival_fired == []
    qtbot.keyClick(small_panel.canvas, Qt.Key.Key_T)
    assert caption.labels.text() == "Brain · train"
    qtbot.keyClick(small_panel.canvas, Qt.Key.Key_9)  # no ninth class: nothing happens
    assert session.label_of(1) == [brain.id]
    qtbot.keyClick(small_panel.canvas, Qt.Key.Key_1, Qt.KeyboardModifier.KeypadModifier)
    assert caption.labels.text() == "Lung · train"
    assert session.label_of(1) == [lung.id]
    qtbot.keyClick(small_panel.canvas, Qt.Key.Key_0)
    assert session.label_of(1) == []
    assert caption.labels.text() == "Unlabelled"


def _finished_run(session: ProjectSession, image_id: int, scores: dict[str, float]) -> int:
    project = session.project
    assert project is not None
    run_id = project.record_run(
        config={"kind": "inference"}, seed=0, versions={}, backbone="b", backbone_sha256="ab" * 32
    )
    attention = np.zeros((2, 16), dtype=np.float32)
    predicted = max(scores, key=scores.__getitem__)
    project.record_predictions(run_id, [PredictionRow(image_id, predicted, scores, attention)])
    project.finish_run(run_id, "finished")
    return run_id


def test_caption_gives_the_latest_runs_model_score_and_the_size(
    small_panel: ViewerPanel, session: ProjectSession
) -> None:
    _finished_run(session, 1, {"Lung": 0.9249, "Brain": 0.0751})
    small_panel.show_image(1)
    caption = small_panel.image_caption
    assert caption.labels.text() == "Unlabelled"
    assert caption.model.text() == "Model: Lung 92 % (model score)"
    assert caption.summary.text() == "CT · 128 × 128 px"
    small_panel.show_image(2)
    assert caption.model.text() == ""
    assert caption.summary.text() == "MR · 64 × 64 px · 10 frames"
    words = f"{caption.labels.text()} {caption.model.text()} {caption.model.toolTip()}".lower()
    assert "finding" not in words
    assert "lesion" not in words


def test_the_attention_legend_shows_the_overlays_colours(
    small_panel: ViewerPanel, session: ProjectSession
) -> None:
    _one_hot_run(session, 1)
    small_panel.show_image(1)
    legend = small_panel.colour_bar
    assert legend.isHidden()
    small_panel.overlay_box.setChecked(True)
    _settle()
    assert legend.isVisible()
    stops = attention_colour_stops()
    assert legend.stops == stops
    image = legend.grab().toImage()
    bar = legend.bar_rect()
    x = bar.center().x()
    for y, expected in ((bar.bottom(), stops[0]), (bar.top(), stops[-1])):
        colour = image.pixelColor(x, y)
        found = (colour.red(), colour.green(), colour.blue())
        assert max(abs(a - b) for a, b in zip(found, expected.rgb, strict=True)) <= 6
    assert "model attention" in legend.toolTip()
    small_panel.overlay_box.setChecked(False)
    assert legend.isHidden()


def test_the_viewer_keys_are_scoped_to_it_and_listed(small_panel: ViewerPanel) -> None:
    scoped = [
        action.shortcut().toString()
        for action in small_panel.actions()
        if action.shortcutContext() == Qt.ShortcutContext.WidgetWithChildrenShortcut
    ]
    keys = ["Left", "Right", "Up", "Down", "T", *(str(digit) for digit in range(10))]
    assert sorted(scoped) == sorted(keys)
    navigator = small_panel.navigator
    assert [key.toString() for key in navigator.next_action.shortcuts()] == ["Right", "PgDown"]
    assert [key.toString() for key in navigator.previous_action.shortcuts()] == ["Left", "PgUp"]
    assert [keys for keys, _ in VIEWER_KEYS] == [
        "Left / Right, Page Up / Down",
        "Up / Down",
        "1 – 9, 0, T",
    ]


def test_the_empty_viewer_says_how_to_fill_it(small_panel: ViewerPanel) -> None:
    assert small_panel.view is None
    assert small_panel.canvas.placeholder.startswith("Double-click a thumbnail in the Gallery")
    empty = small_panel.canvas.grab().toImage()
    bright = [
        empty.pixelColor(x, y).red()
        for x in range(0, empty.width(), 2)
        for y in range(empty.height() // 2 - 20, empty.height() // 2 + 20)
    ]
    assert max(bright) > 120  # the hint is written on the black background
    small_panel.show_image(1)
    shown = small_panel.canvas.grab().toImage()
    assert shown.pixelColor(2, shown.height() // 2).red() == 0  # beside the image: black, no text
