"""The viewer steps through every slice of the shown series (Up / Down, in slice order) while the
gallery shows one tile per series; Left / Right keep moving between the tiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import import_by_drop
from labelled_projects import write_layout, write_series
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from ept_studio.gui.gallery import MEMBER_IDS_ROLE
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.thumbnail_delegate import SLICE_COUNT_ROLE

pytestmark = pytest.mark.gui


@pytest.fixture
def tiles_window(window: MainWindow, tmp_path: Path, qtbot: QtBot) -> MainWindow:
    """A 5-slice and a 3-slice CT series (files in reverse slice order) and two loose images,
    shown one tile per series."""
    data = tmp_path / "data"
    write_series(data / "chest", 5, patient="P1")
    write_series(data / "head", 3, patient="P2", seed=2)
    write_layout(data, {"loose": ["P3", None]})
    assert window.file_menu.new_project_at(tmp_path / "project")
    import_by_drop(qtbot, window, data)
    window.gallery.series_tiles_action.setChecked(True)
    assert window.gallery.model.rowCount() == 4
    return window


def _by_instance(window: MainWindow, row: int) -> list[int]:
    """The image ids of the tile at ``row`` in InstanceNumber order."""
    model, project = window.gallery.model, window.session.project
    assert project is not None
    members = model.data(model.index(row, 0), MEMBER_IDS_ROLE)
    assert isinstance(members, list)
    number = {image.id: image.instance_number or 0 for image in project.images()}
    return sorted((int(i) for i in members), key=number.__getitem__)


def _press(qtbot: QtBot, window: MainWindow, key: Qt.Key) -> None:
    qtbot.keyClick(window.viewer.canvas, key)


def test_up_and_down_step_through_every_slice_in_slice_order(
    qtbot: QtBot, tiles_window: MainWindow
) -> None:
    model, viewer = tiles_window.gallery.model, tiles_window.viewer
    counts = [model.data(model.index(r, 0), SLICE_COUNT_ROLE) for r in range(model.rowCount())]
    chest_row = counts.index(5)
    chest = _by_instance(tiles_window, chest_row)
    tiles_window.main_tabs.setCurrentWidget(viewer)
    with qtbot.waitSignal(viewer.image_shown, timeout=5_000):
        tiles_window.gallery.view.doubleClicked.emit(model.index(chest_row, 0))
    stepper, navigator = viewer.slice_stepper, viewer.navigator
    assert viewer.image_id == chest[2]  # the tile's middle slice
    assert stepper.isVisible()
    assert stepper.position.text() == "Slice 3 of 5"
    assert navigator.position.text() == f"{chest_row + 1} of 4"
    seen = []
    for _ in range(3):  # the third press is past the last slice: it stays
        _press(qtbot, tiles_window, Qt.Key.Key_Down)
        seen.append(viewer.image_id)
    assert seen == [chest[3], chest[4], chest[4]]
    assert stepper.position.text() == "Slice 5 of 5"
    assert not stepper.next_action.isEnabled()
    assert navigator.position.text() == f"{chest_row + 1} of 4"  # still the chest tile
    for _ in range(5):
        _press(qtbot, tiles_window, Qt.Key.Key_Up)
    assert viewer.image_id == chest[0]
    assert stepper.position.text() == "Slice 1 of 5"
    assert not stepper.previous_action.isEnabled()
    _press(qtbot, tiles_window, Qt.Key.Key_Right)  # the next tile, not the next slice
    next_tile = model.image_id(chest_row + 1)
    assert viewer.image_id == next_tile
    assert navigator.position.text() == f"{chest_row + 2} of 4"
    _press(qtbot, tiles_window, Qt.Key.Key_Left)
    assert viewer.image_id == model.image_id(chest_row)


def test_an_image_of_its_own_has_no_slice_stepper(qtbot: QtBot, tiles_window: MainWindow) -> None:
    model, viewer = tiles_window.gallery.model, tiles_window.viewer
    counts = [model.data(model.index(r, 0), SLICE_COUNT_ROLE) for r in range(model.rowCount())]
    loose_row = counts.index(1)
    tiles_window.main_tabs.setCurrentWidget(viewer)
    assert viewer.show_image(model.image_id(loose_row))
    assert not viewer.slice_stepper.isVisible()
    assert viewer.slice_stepper.position.text() == ""
    _press(qtbot, tiles_window, Qt.Key.Key_Down)
    assert viewer.image_id == model.image_id(loose_row)
