"""One tile per series in the main window: two CT series and two loose images, labelled by series."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import bin_point, gallery_drag, import_by_drop, select_rows, send_drop
from labelled_projects import write_layout, write_series
from PySide6.QtCore import QModelIndex, Qt
from pytestqt.qtbot import QtBot

from ept_studio.gui.gallery import MEMBER_IDS_ROLE, GalleryModel
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.settings import AppSettings
from ept_studio.gui.thumbnail_delegate import LABEL_ROLE_ROLE, SLICE_COUNT_ROLE
from ept_studio.services.project import open_project

pytestmark = pytest.mark.gui


def stored(folder: Path) -> dict[int, tuple[int, str]]:
    """image id -> (class id, role), read back through a new connection."""
    with open_project(folder) as project:
        return {
            label.image_id: (label.class_id, label.role.value) for label in project.labels.all()
        }


@pytest.fixture
def series_window(window: MainWindow, tmp_path: Path, qtbot: QtBot) -> MainWindow:
    """A project of a 5-slice and a 3-slice CT series, a CT file of its own and a photograph."""
    data = tmp_path / "data"
    write_series(data / "chest", 5, patient="P1")
    write_series(data / "head", 3, patient="P2", seed=2)
    write_layout(data, {"loose": ["P3", None]})
    assert window.file_menu.new_project_at(tmp_path / "project")
    import_by_drop(qtbot, window, data)
    return window


def _members(model: GalleryModel, row: int) -> list[int]:
    """Every image the tile at ``row`` stands for."""
    ids = model.data(model.index(row, 0), MEMBER_IDS_ROLE)
    assert isinstance(ids, list)
    return [int(i) for i in ids]


def _row(window: MainWindow, slices: int) -> int:
    model = window.gallery.model
    counts = [model.data(model.index(row, 0), SLICE_COUNT_ROLE) for row in range(model.rowCount())]
    return counts.index(slices)


def test_series_tiles_show_one_tile_per_series_and_label_every_slice(
    qtbot: QtBot, series_window: MainWindow, tmp_path: Path, app_settings: AppSettings
) -> None:
    gallery, session = series_window.gallery, series_window.session
    folder = tmp_path / "project"
    assert gallery.model.rowCount() == 10
    assert not gallery.series_tiles_action.isChecked()
    gallery.series_tiles_action.trigger()
    assert app_settings.gallery_series_tiles
    model = gallery.model
    assert model.rowCount() == 4
    assert gallery.summary.text() == "4 tiles (10 images) shown of 10 images"
    assert not gallery.view.grab().isNull()  # the delegate paints the slice-count badges
    chest = _row(series_window, 5)
    caption = str(model.data(model.index(chest, 0), Qt.ItemDataRole.DisplayRole))
    assert caption.endswith("unlabelled · CT · 5 slices")
    chest_ids = _members(model, chest)
    assert len(chest_ids) == 5
    ct, mr = session.add_class("CT"), session.add_class("MR")
    select_rows(series_window, [chest])
    assert sorted(gallery.view.selected_image_ids()) == sorted(chest_ids)
    qtbot.keyClick(gallery.view, Qt.Key.Key_1)
    assert stored(folder) == {i: (ct.id, "train") for i in chest_ids}
    caption = str(model.data(model.index(_row(series_window, 5), 0), Qt.ItemDataRole.DisplayRole))
    assert caption.endswith("CT · 5 slices")
    series_window.undo_action.trigger()  # the five slices were one step
    assert stored(folder) == {}
    head = _row(series_window, 3)
    head_ids = _members(model, head)
    viewport = series_window.bins.bins.viewport()
    assert send_drop(viewport, gallery_drag(series_window, [head]), bin_point(series_window, mr.id))
    assert stored(folder) == {i: (mr.id, "train") for i in head_ids}
    select_rows(series_window, [_row(series_window, 3)])
    qtbot.keyClick(gallery.view, Qt.Key.Key_T)
    assert stored(folder) == {i: (mr.id, "test") for i in head_ids}
    assert model.data(model.index(_row(series_window, 3), 0), LABEL_ROLE_ROLE) == "test"
    series_window.undo_action.trigger()
    series_window.undo_action.trigger()
    assert stored(folder) == {}


def test_a_series_tile_opens_its_middle_slice_and_the_choice_is_remembered(
    qtbot: QtBot, series_window: MainWindow, app_settings: AppSettings
) -> None:
    gallery = series_window.gallery
    gallery.series_tiles_action.setChecked(True)
    model = gallery.model
    chest = _row(series_window, 5)
    chest_ids = _members(model, chest)
    project = series_window.session.project
    assert project is not None
    numbers = {image.id: image.instance_number for image in project.images()}
    middle = next(i for i in chest_ids if numbers[i] == 3)
    index: QModelIndex = model.index(chest, 0)
    with qtbot.waitSignal(series_window.viewer.image_shown, timeout=5_000) as shown:
        gallery.view.doubleClicked.emit(index)
    assert shown.args == [middle]
    assert series_window.main_tabs.currentWidget() is series_window.viewer
    again = MainWindow(app_settings)
    qtbot.addWidget(again)
    assert again.gallery.series_tiles_action.isChecked()
    again.session.close()


def _menu_entry(window: MainWindow, text: str) -> list[str]:
    """The texts of the gallery's right-click menu entries that start with ``text``."""
    menu = window.gallery.selection_menu()
    return [action.text() for action in menu.actions() if action.text().startswith(text)]


def test_taking_a_label_off_a_series_tile_takes_it_off_every_slice_in_one_step(
    qtbot: QtBot, series_window: MainWindow, tmp_path: Path
) -> None:
    gallery, session = series_window.gallery, series_window.session
    folder = tmp_path / "project"
    model = gallery.model
    ct, mr = session.add_class("CT"), session.add_class("MR")
    project = session.project
    assert project is not None
    numbers = {image.id: image.instance_number for image in project.images()}
    gallery.series_tiles_action.setChecked(True)
    chest_ids = _members(model, _row(series_window, 5))
    middle = next(i for i in chest_ids if numbers[i] == 3)
    first = next(i for i in chest_ids if numbers[i] == 1)
    session.label(chest_ids, ct.id)
    session.label([first], mr.id)  # one slice (not the tile's own) carries another class
    before = stored(folder)
    assert before[middle] == (ct.id, "train")
    assert before[first] == (mr.id, "train")
    select_rows(series_window, [_row(series_window, 5)])
    offered = _menu_entry(series_window, "Take off label")
    assert offered == ["Take off label “CT”", "Take off label “MR”"]
    assert _menu_entry(series_window, "Remove from") == ["Remove from project…"]
    menu = gallery.selection_menu()
    next(a for a in menu.actions() if a.text() == "Take off label “MR”").trigger()
    assert stored(folder) == {i: (ct.id, "train") for i in chest_ids if i != first}
    select_rows(series_window, [_row(series_window, 5)])
    menu = gallery.selection_menu()
    next(a for a in menu.actions() if a.text() == "Take off label “CT”").trigger()
    assert stored(folder) == {}  # every slice of the series, not just the tile's middle one
    caption = str(model.data(model.index(_row(series_window, 5), 0), Qt.ItemDataRole.DisplayRole))
    assert caption.endswith("unlabelled · CT · 5 slices")
    series_window.undo_action.trigger()  # the five slices were one step
    assert stored(folder) == {i: (ct.id, "train") for i in chest_ids if i != first}
    series_window.undo_action.trigger()
    assert stored(folder) == before
