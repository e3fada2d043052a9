"""Helpers for the GUI tests: real drops with file URLs, gallery drags onto bins, selections."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QMimeData, QModelIndex, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot
from support import tiny_backbone, write_class_folders

from ept_studio.gui.class_bins import CLASS_ID_ROLE
from ept_studio.gui.main_window import MainWindow
from ept_studio.services.project import Role, open_project


def send_drop(target: QWidget, mime: QMimeData, point: QPoint | None = None) -> bool:
    """Drag enter, move and drop ``mime`` at ``point`` of ``target``; whether the drop was taken."""
    where = point if point is not None else target.rect().center()
    actions = Qt.DropAction.CopyAction | Qt.DropAction.MoveAction
    buttons, keys = Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    QApplication.sendEvent(target, QDragEnterEvent(where, actions, mime, buttons, keys))
    QApplication.sendEvent(target, QDragMoveEvent(where, actions, mime, buttons, keys))
    drop = QDropEvent(QPointF(where), actions, mime, buttons, keys)
    QApplication.sendEvent(target, drop)
    return drop.isAccepted()


def file_mime(*paths: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    return mime


def import_by_drop(qtbot: QtBot, window: MainWindow, *paths: Path) -> None:
    with qtbot.waitSignal(window.session.import_finished, timeout=20_000):
        assert send_drop(window.gallery.view.viewport(), file_mime(*paths))


def select_rows(window: MainWindow, rows: list[int]) -> None:
    view = window.gallery.view
    view.selectionModel().clear()
    for row in rows:
        index = view.model().index(row, 0)
        view.selectionModel().select(index, QItemSelectionModel.SelectionFlag.Select)


def stored_labels(folder: Path) -> dict[int, int]:
    """image id -> class id, read back through a new connection (what is on disk)."""
    with open_project(folder) as project:
        return {label.image_id: label.class_id for label in project.labels.all()}


def bin_point(window: MainWindow, class_id: int) -> QPoint:
    bins = window.bins.bins
    for row in range(bins.count()):
        if int(bins.item(row).data(CLASS_ID_ROLE)) == class_id:
            return bins.visualItemRect(bins.item(row)).center()
    raise AssertionError(f"no bin for class {class_id}")


def gallery_drag(window: MainWindow, rows: list[int]) -> QMimeData:
    """The mime data the gallery puts in a drag of the selected ``rows``."""
    select_rows(window, rows)
    model = window.gallery.model
    indexes: list[QModelIndex] = [model.index(row, 0) for row in rows]
    return model.mimeData(indexes)


def label_project(
    window: MainWindow, tmp_path: Path, qtbot: QtBot, train: int, test: int
) -> MainWindow:
    """A project with two classes of ``train`` + ``test`` images (fundus and histology PNG crops)
    and the tiny backbone; the Train tab in front with the paper recipe (tests count steps:
    epochs x batches, no minimum)."""
    data = write_class_folders(tmp_path / "data", per_class=train + test, size=64)
    assert window.file_menu.new_project_at(tmp_path / "project")
    with qtbot.waitSignal(window.session.import_finished, timeout=20_000):
        assert window.import_paths([data])
    project = window.session.project
    assert project is not None
    for name in ("fundus", "histology"):
        info = window.session.add_class(name)
        ids = [i.id for i in project.images() if f"/{name}/" in str(i.path)]
        window.session.label(ids, info.id)
        if test:
            project.labels.set_role(ids[train:], Role.TEST)
    window.jobs.backbone = tiny_backbone()
    window.side.setCurrentWidget(window.training)
    window.training.set_recipe("paper")
    return window
