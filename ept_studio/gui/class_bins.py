"""Class bins: one row per class with its colour and counts; drop gallery images on a bin to label.

The first row, "Unlabelled", takes images back (their labels are cleared). In a multi-label project
a drop on a class adds that class (an image may sit in several bins). Add, rename, recolour, delete
and reorder ask in the app; the session methods they call take the values as arguments (for tests
and scripts). Recolouring and reordering are saved at once but are not undoable: the project's
undo history covers labels only.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QPoint, Qt, Signal, Slot
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QIcon,
    QPaintEvent,
    QPixmap,
)
from PySide6.QtWidgets import (
    QColorDialog,
    QGridLayout,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.drops import dropped_image_ids
from ept_studio.gui.hints import draw_hint
from ept_studio.gui.session import ProjectSession

CLASS_ID_ROLE = Qt.ItemDataRole.UserRole + 1
UNLABELLED = -1
"""The class id the "Unlabelled" bin stands for (dropping there clears labels)."""
ADD_CLASS = "+ Add class…"
NO_CLASS_HINT = f"Add a class for each kind of image you want to tell apart: press “{ADD_CLASS}”"


class BinList(QListWidget):
    """The bins; a drop of gallery images on a row is ``images_dropped(ids, class id)``."""

    images_dropped = Signal(list, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setDropIndicatorShown(True)
        self.setStyleSheet("QListWidget::item { padding: 8px 4px; }")  # big drop targets
        self.empty_hint = ""
        """Drawn below the rows while the project has no class yet."""

    def set_empty_hint(self, text: str) -> None:
        if text != self.empty_hint:
            self.empty_hint = text
            self.viewport().update()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if self.empty_hint:
            area = self.viewport().rect()
            if self.count():
                area.setTop(self.visualItemRect(self.item(self.count() - 1)).bottom())
            draw_hint(self.viewport(), self.empty_hint, area)

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
        self.title = QLabel()
        self.title.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.bins)
        layout.addLayout(self._buttons())
        session.classes_changed.connect(self.refresh)
        session.labels_changed.connect(self.refresh)
        session.images_changed.connect(self.refresh)
        session.project_changed.connect(self.refresh)
        self.refresh()

    def _buttons(self) -> QGridLayout:
        grid = QGridLayout()
        buttons = (
            (ADD_CLASS, self.ask_add, "Add a class"),
            ("Rename…", self.ask_rename, "Rename the selected class"),
            ("Colour…", self.ask_recolour, "Change the selected class's colour"),
            ("Move up", self.move_up, "Move the selected class up (its key changes)"),
            ("Move down", self.move_down, "Move the selected class down (its key changes)"),
            ("Delete", self.ask_delete, "Delete the selected class and its labels"),
        )
        for index, (text, slot, tip) in enumerate(buttons):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            grid.addWidget(button, index // 3, index % 3)
        return grid

    @Slot()
    def refresh(self) -> None:
        """Rebuild the rows from the session; the selected bin stays selected."""
        current = self.bins.currentItem()
        keep = int(current.data(CLASS_ID_ROLE)) if current is not None else None
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
        for row in range(self.bins.count()):
            if int(self.bins.item(row).data(CLASS_ID_ROLE)) == keep:
                self.bins.setCurrentRow(row)
        no_class = self.session.project is not None and self.bins.count() == 1
        self.bins.set_empty_hint(NO_CLASS_HINT if no_class else "")
        self.title.setText(
            "Multi-label: a drop adds a class; keys 1-9 toggle, 0 clears; T: train / test"
            if self.session.multi_label
            else "Drop images on a class; keys 1-9 label, 0 clears; T: train / test"
        )

    def _add_row(self, text: str, class_id: int, colour: str | None) -> None:
        item = QListWidgetItem(text)
        item.setData(CLASS_ID_ROLE, class_id)
        item.setIcon(swatch(colour))
        self.bins.addItem(item)

    def select_class(self, class_id: int) -> None:
        for row in range(self.bins.count()):
            if int(self.bins.item(row).data(CLASS_ID_ROLE)) == class_id:
                self.bins.setCurrentRow(row)

    def selected_class_id(self) -> int | None:
        item = self.bins.currentItem()
        if item is None or int(item.data(CLASS_ID_ROLE)) == UNLABELLED:
            return None
        return int(item.data(CLASS_ID_ROLE))

    @Slot(list, int)
    def _on_images_dropped(self, image_ids: list[int], class_id: int) -> None:
        self._guarded(self.session.label, image_ids, None if class_id == UNLABELLED else class_id)

    # -- add / rename / recolour / reorder / delete -------------------------------------------

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
    def ask_recolour(self) -> None:
        class_id = self.selected_class_id()
        if class_id is None:
            return
        current = next((c.colour for c in self.session.classes() if c.id == class_id), "#808080")
        colour = QColorDialog.getColor(QColor(current), self, "Class colour")
        if colour.isValid():
            self.recolour(class_id, colour.name())

    def recolour(self, class_id: int, colour: str) -> None:
        """Give the class ``colour`` (any name Qt knows; stored as ``#rrggbb``)."""
        parsed = QColor(colour)
        if not parsed.isValid():
            QMessageBox.warning(self, "EPT Studio", f"{colour!r} is not a colour")
            return
        self._guarded(self.session.recolour_class, class_id, parsed.name())

    @Slot()
    def move_up(self) -> None:
        self._move(-1)

    @Slot()
    def move_down(self) -> None:
        self._move(+1)

    def _move(self, offset: int) -> None:
        class_id = self.selected_class_id()
        if class_id is not None:
            self._guarded(self.session.move_class, class_id, offset)

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


def swatch(colour: str | None, size: int = 16) -> QIcon:
    """A square of the class's colour (a transparent one for "Unlabelled", to keep names aligned)."""
    pixmap = QPixmap(size, size)
    if colour is None:
        pixmap.fill(QColor(0, 0, 0, 0))
    else:
        pixmap.fill(QColor(colour))
    return QIcon(pixmap)
