"""Class bins: one row per class with its counts; drop gallery images on a bin to label them.

The first row, "Unlabelled", takes images back (their labels are cleared). Add, rename and delete
ask for a name in the app; the same actions take the name as an argument (for tests and scripts).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPoint, Qt, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QDragEnterEvent, QDragMoveEvent, QDropEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.errors import EptStudioError
from ept_studio.gui.drops import dropped_image_ids
from ept_studio.gui.session import ProjectSession

CLASS_ID_ROLE = Qt.ItemDataRole.UserRole + 1
UNLABELLED = -1
"""The class id the "Unlabelled" bin stands for (dropping there clears labels)."""


class BinList(QListWidget):
    """The bins; a drop of gallery images on a row is ``images_dropped(ids, class id)``."""

    images_dropped = Signal(list, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setStyleSheet("QListWidget::item { padding: 8px 4px; }")  # big drop targets

    def class_at(self, point: QPoint) -> int | None:
        item = self.itemAt(point)
        return None if item is None else int(item.data(CLASS_ID_ROLE))

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_image_ids(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        target = self.class_at(event.position().toPoint())
        if target is not None and dropped_image_ids(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        target = self.class_at(event.position().toPoint())
        ids = dropped_image_ids(event.mimeData())
        if target is None or not ids:
            event.ignore()
            return
        event.acceptProposedAction()
        self.images_dropped.emit(ids, target)


class ClassBinsPanel(QWidget):
    """The bins and their buttons, kept in step with the session's classes and counts."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.bins = BinList()
        self.bins.images_dropped.connect(self._on_images_dropped)
        title = QLabel("Classes (drop images on a class; keys 1-9, 0 clears)")
        title.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.bins)
        layout.addLayout(self._buttons())
        session.classes_changed.connect(self.refresh)
        session.labels_changed.connect(self.refresh)
        session.images_changed.connect(self.refresh)
        session.project_changed.connect(self.refresh)
        self.refresh()

    def _buttons(self) -> QHBoxLayout:
        row = QHBoxLayout()
        for text, slot in (
            ("Add…", self.ask_add),
            ("Rename…", self.ask_rename),
            ("Delete", self.ask_delete),
        ):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        return row

    @Slot()
    def refresh(self) -> None:
        self.bins.clear()
        counts = self.session.counts()
        unlabelled = self.session.unlabelled_count()
        self._add_row(f"Unlabelled ({unlabelled})", UNLABELLED, None)
        for position, info in enumerate(self.session.classes(), start=1):
            count = counts.get(info.id)
            train, test = (count.train, count.test) if count is not None else (0, 0)
            key = f"[{position}] " if position <= 9 else ""
            text = f"{key}{info.name}: {train + test} (train {train}, test {test})"
            self._add_row(text, info.id, info.colour)

    def _add_row(self, text: str, class_id: int, colour: str | None) -> None:
        item = QListWidgetItem(text)
        item.setData(CLASS_ID_ROLE, class_id)
        if colour is not None:
            item.setForeground(QBrush(QColor(colour)))
        self.bins.addItem(item)

    def selected_class_id(self) -> int | None:
        item = self.bins.currentItem()
        if item is None or int(item.data(CLASS_ID_ROLE)) == UNLABELLED:
            return None
        return int(item.data(CLASS_ID_ROLE))

    @Slot(list, int)
    def _on_images_dropped(self, image_ids: list[int], class_id: int) -> None:
        self._guarded(self.session.label, image_ids, None if class_id == UNLABELLED else class_id)

    # -- add / rename / delete ---------------------------------------------------------------

    @Slot()
    def ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Name of the new class:")
        if ok and name.strip():
            self._guarded(self.session.add_class, name)

    @Slot()
    def ask_rename(self) -> None:
        class_id = self.selected_class_id()
        if class_id is None:
            return
        name, ok = QInputDialog.getText(self, "Rename class", "New name:")
        if ok and name.strip():
            self._guarded(self.session.rename_class, class_id, name)

    @Slot()
    def ask_delete(self) -> None:
        class_id = self.selected_class_id()
        if class_id is None:
            return
        answer = QMessageBox.question(
            self, "Delete class", "Delete this class? Its labels are removed (not undoable)."
        )
        if answer == QMessageBox.StandardButton.Yes:
            self._guarded(self.session.delete_class, class_id)

    def _guarded(self, action: Callable[..., object], *args: object) -> None:
        """Run a session action; a store error is shown to the user, and the app goes on."""
        try:
            action(*args)
        except EptStudioError as err:
            QMessageBox.warning(self, "EPT Studio", str(err))
