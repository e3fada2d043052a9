"""Taking images out of a project from the gallery, in the real window on a real project: the
right-click menu and the Delete key ask first (the question is Qt's dialog, answered here), then
the records, the gallery, the class bins and the Train checklist follow; the user's files stay,
a PACS copy goes; a run that scored removed images still shows its results, and the viewer lets
go of a removed image."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import select_rows
from labelled_projects import write_layout, write_series
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMenu, QMessageBox, QWidget
from pytestqt.qtbot import QtBot
from recorded_runs import CLASSES, record_training_run

from ept_studio.gui.gallery import MEMBER_IDS_ROLE
from ept_studio.gui.gallery_panel import removal_question
from ept_studio.gui.help import menu_shortcuts
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.thumbnail_delegate import SLICE_COUNT_ROLE
from ept_studio.services.project import Project, import_paths, open_project, pacs_cache_dir
from ept_studio.services.project.pacs import keep_instance

pytestmark = pytest.mark.gui


class Answer:
    """QMessageBox.question answered with ``button``; the questions asked are kept."""

    def __init__(self, button: QMessageBox.StandardButton) -> None:
        self.button = button
        self.asked: list[str] = []

    def __call__(self, _parent: QWidget, _title: str, text: str) -> QMessageBox.StandardButton:
        self.asked.append(text)
        return self.button


def _answer(monkeypatch: pytest.MonkeyPatch, button: QMessageBox.StandardButton) -> Answer:
    answer = Answer(button)
    monkeypatch.setattr(QMessageBox, "question", answer)
    return answer


def _stored(folder: Path) -> tuple[set[int], set[int]]:
    """(image ids, labelled image ids), read back through a new connection."""
    with open_project(folder) as project:
        return {i.id for i in project.images()}, {x.image_id for x in project.labels.all()}


@pytest.fixture
def labelled_window(window: MainWindow, tmp_path: Path, qtbot: QtBot) -> MainWindow:
    """Classes CT (a 4-slice series and a CT file of its own) and Photo (two photographs)."""
    data = tmp_path / "data"
    write_series(data / "CT" / "chest", 4, patient="P1")
    write_layout(data, {"CT": ["P2"], "Photo": [None, None]})
    assert window.file_menu.new_project_at(tmp_path / "project")
    with qtbot.waitSignal(window.session.import_finished, timeout=20_000):
        assert window.file_menu.import_class_folders_at(data)
    return window


def _series_row(window: MainWindow, slices: int) -> int:
    """The row of the tile of a series of ``slices`` slices (series tiles on)."""
    model = window.gallery.model
    counts = [model.data(model.index(row, 0), SLICE_COUNT_ROLE) for row in range(model.rowCount())]
    return counts.index(slices)


def _members(window: MainWindow, row: int) -> list[int]:
    ids = window.gallery.model.data(window.gallery.model.index(row, 0), MEMBER_IDS_ROLE)
    assert isinstance(ids, list)
    return [int(i) for i in ids]


def _recorded_project(tmp_path: Path) -> tuple[Path, list[int]]:
    """8 photographs (4 a class) and a training run that scored all: 2 a class trained on,
    2 tested; the tested ids."""
    root = write_layout(tmp_path / "data", {name: [None] * 4 for name in CLASSES})
    with Project.create(tmp_path / "project", "single") as project:  # the app's own locations
        import_paths(project, [root], folders_as_classes=True, thumbnails=False)
        names = {c.id: c.name for c in project.labels.classes()}
        targets = {x.image_id: CLASSES.index(names[x.class_id]) for x in project.labels.all()}
        train: list[int] = []
        test: list[int] = []
        for k in range(len(CLASSES)):
            ids = sorted(i for i, t in targets.items() if t == k)
            train, test = train + ids[:2], test + ids[2:]
        scores = {i: [0.8, 0.2] if targets[i] == 0 else [0.3, 0.7] for i in targets}
        record_training_run(project, scores, targets, train=train, calibration=[], test=test)
        return project.folder, sorted(test)


def test_a_series_tile_and_a_photo_leave_the_project_with_the_delete_key(
    qtbot: QtBot, labelled_window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window, folder = labelled_window, tmp_path / "project"
    gallery = window.gallery
    gallery.series_tiles_action.setChecked(True)
    assert gallery.model.rowCount() == 4
    images, labelled = _stored(folder)
    assert len(images) == 7
    assert labelled == images
    assert window.bins.bins.item(1).text() == "[1] CT: 5 (train 5, test 0)"
    assert window.training.counts_label.text() == "Test: 0 images (0 %) · Train: 7"
    chest = _series_row(window, 4)
    series = _members(window, chest)
    assert len(series) == 4
    photo_row = next(
        row
        for row in range(gallery.model.rowCount())
        if "Photo" in str(gallery.model.data(gallery.model.index(row, 0)))
    )
    photo = gallery.model.image_id(photo_row)
    select_rows(window, [chest, photo_row])
    no = _answer(monkeypatch, QMessageBox.StandardButton.No)
    gallery.view.setFocus()
    qtbot.keyClick(gallery.view, Qt.Key.Key_Delete)
    assert no.asked == [removal_question(5)]
    assert _stored(folder)[0] == images  # declined: nothing left

    yes = _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    qtbot.keyClick(gallery.view, Qt.Key.Key_Delete)
    assert yes.asked[0].startswith(
        "Take 5 images out of this project? Their labels go too. The files on your disk stay "
        "where they are."
    )
    left, labelled = _stored(folder)
    assert left == images - set(series) - {photo}
    assert labelled == left
    assert gallery.model.rowCount() == 2
    assert gallery.summary.text() == "2 tiles (2 images) shown of 2 images"
    assert window.bins.bins.item(1).text() == "[1] CT: 1 (train 1, test 0)"
    assert window.bins.bins.item(2).text() == "[2] Photo: 1 (train 1, test 0)"
    assert window.training.counts_label.text() == "Test: 0 images (0 %) · Train: 2"
    assert window.statusBar().currentMessage().startswith("5 images taken out of the project")
    data = tmp_path / "data"
    assert len(list(data.rglob("*.dcm"))) == 5
    assert len(list(data.rglob("*.png"))) == 2


def test_the_right_click_menu_offers_it_and_a_pacs_copy_goes_with_its_image(
    qtbot: QtBot, labelled_window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = labelled_window
    project = window.session.project
    assert project is not None
    cache = pacs_cache_dir(project)
    cache.mkdir(mode=0o700, parents=True)
    retrieved = write_series(tmp_path / "retrieved", 1, patient="P3", seed=5)[0]
    copy = keep_instance(cache, retrieved.read_bytes())[0]
    import_paths(project, [copy], thumbnails=False)
    window.session.images_changed.emit()
    gallery = window.gallery
    assert gallery.model.rowCount() == 8
    copy_id = next(i.id for i in project.images() if i.path == copy)
    own_id = next(i.id for i in project.images() if i.path and i.path.suffix == ".png")
    rows = {gallery.model.image_id(row): row for row in range(gallery.model.rowCount())}
    select_rows(window, [rows[copy_id], rows[own_id]])
    menu = gallery.selection_menu()
    texts = [action.text() for action in menu.actions()]
    assert "Remove from project…" in texts
    edit_menus = [m for m in window.menuBar().findChildren(QMenu) if m.title() == "&Edit"]
    assert len(edit_menus) == 1
    assert ("Del", "Remove from project") in menu_shortcuts(edit_menus)  # listed in Help
    yes = _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    next(action for action in menu.actions() if action.text() == "Remove from project…").trigger()
    assert yes.asked == [removal_question(2, 1)]
    assert "1 of them came from a PACS: the copy kept on this computer goes too" in yes.asked[0]
    assert {i.id for i in project.images()}.isdisjoint({copy_id, own_id})
    assert gallery.model.rowCount() == 6
    assert not copy.exists()
    assert retrieved.is_file()
    assert len(list((tmp_path / "data").rglob("*.png"))) == 2


def test_nothing_is_taken_out_while_a_task_runs(
    labelled_window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    window = labelled_window
    select_rows(window, [0])
    told: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda _parent, _title, text: told.append(text))
    asked = _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    window.gallery.running_task = lambda: "Training"
    assert not window.gallery.ask_remove()
    assert told == ["Training is running: let it finish, then take images out."]
    assert asked.asked == []
    assert window.gallery.model.rowCount() == 7


def test_results_of_a_run_that_scored_removed_images_are_shown_again_without_them(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, test = _recorded_project(tmp_path)
    assert window.file_menu.open_project_at(folder)
    window.show_results()
    qtbot.waitUntil(lambda: window.results.view.results is not None, timeout=10_000)
    before = window.results.view.results
    assert before is not None
    assert sorted(i.image_id for i in before.scored) == test
    window.main_tabs.setCurrentWidget(window.gallery)
    rows = {window.gallery.model.image_id(r): r for r in range(window.gallery.model.rowCount())}
    select_rows(window, [rows[test[0]], rows[test[-1]]])
    assert window.open_image(test[0])  # the viewer shows one of them
    _answer(monkeypatch, QMessageBox.StandardButton.Yes)
    assert window.gallery.ask_remove()
    qtbot.waitUntil(lambda: window.results.view.results is not before, timeout=10_000)
    after = window.results.view.results
    assert after is not None
    assert sorted(i.image_id for i in after.scored) == test[1:-1]
    assert after.scores is not None
    assert after.scores.evaluated == len(test) - 2
    assert window.viewer.image_id is None  # it let go of the removed image
    window.session.add_class("Third")
    labels_before = _stored(folder)[1]
    for key in (Qt.Key.Key_3, Qt.Key.Key_T):  # the viewer's keys have no image to act on
        qtbot.keyClick(window.viewer.canvas, key)
    assert _stored(folder)[1] == labels_before
