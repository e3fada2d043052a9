"""The gallery: thumbnails of the project's images in a list view (icon mode), with a filter bar.

Files dropped from the file manager are handed on as ``files_dropped``; images dragged out carry
their ids (:data:`~ept_studio.gui.drops.IMAGE_IDS_MIME`) to the class bins. Keys 0-9 with the
selection are ``digit_pressed``. A series tile stands for all its slices: dragging it, or asking
for the selected images, gives every slice's id.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QSize,
    Qt,
    Signal,
)
from PySide6.QtGui import (
    QColor,
    QDragEnterEvent,
    QDragMoveEvent,
    QDropEvent,
    QIcon,
    QKeyEvent,
    QPaintEvent,
    QPixmap,
)
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from ept_studio.gui.drops import IMAGE_IDS_MIME, dropped_paths, image_ids_mime
from ept_studio.gui.hints import draw_hint
from ept_studio.gui.thumbnail_delegate import (
    CLASS_COLOURS_ROLE,
    LABEL_ROLE_ROLE,
    SLICE_COUNT_ROLE,
    ThumbnailDelegate,
)
from ept_studio.services.project import GalleryItem

ICON_SIZE = 128
IMAGE_ID_ROLE = Qt.ItemDataRole.UserRole + 1
CLASS_IDS_ROLE = Qt.ItemDataRole.UserRole + 4
MEMBER_IDS_ROLE = Qt.ItemDataRole.UserRole + 6
"""Every image a tile stands for (a series tile: all its slices; an image tile: itself)."""
_Index = QModelIndex | QPersistentModelIndex


class GalleryModel(QAbstractListModel):
    """The gallery's items; each row shows a thumbnail and a caption with its class."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[GalleryItem] = []
        self._class_colours: dict[int, QColor] = {}
        self._icons: dict[Path, QIcon] = {}

    def set_items(
        self,
        items: Sequence[GalleryItem],
        class_colours: dict[int, str] | None = None,
    ) -> None:
        """The thumbnails to show (their captions name the classes) and each class's colour."""
        self.beginResetModel()
        self._items = list(items)
        self._class_colours = {k: QColor(v) for k, v in (class_colours or {}).items()}
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            predicted = f"\nmodel: {item.prediction}" if item.prediction else ""
            return f"{item.caption}{predicted}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self._icon(item.thumbnail)
        if role == Qt.ItemDataRole.ToolTipRole:
            tip = f"{item.caption} ({item.role or 'no role'})"
            if item.member_ids:
                tip += (
                    f"\nOne tile for the {item.slice_count} slices of a series: a label or the "
                    "train / test role given here goes to every slice"
                )
            if item.prediction:
                note = f" ({item.prediction_note})" if item.prediction_note else ""
                tip += f"\nModel: {item.prediction}{note}"
            if item.scores:
                ranked = sorted(item.scores.items(), key=lambda kv: -kv[1])
                tip += "\nmodel scores: " + ", ".join(f"{k} {v:.2f}" for k, v in ranked)
            return tip
        if role == IMAGE_ID_ROLE:
            return item.image_id
        if role == CLASS_IDS_ROLE:
            return list(item.class_ids)
        if role == CLASS_COLOURS_ROLE:
            return [self._class_colours.get(c, QColor("gray")) for c in item.class_ids]
        if role == LABEL_ROLE_ROLE:
            return item.role
        if role == MEMBER_IDS_ROLE:
            return list(item.image_ids)
        if role == SLICE_COUNT_ROLE:
            return item.slice_count
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:
        return [IMAGE_IDS_MIME]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        rows = sorted({index.row() for index in indexes if index.isValid()})
        return image_ids_mime([i for row in rows for i in self._items[row].image_ids])

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction | Qt.DropAction.MoveAction

    def image_id(self, row: int) -> int:
        return self._items[row].image_id

    def _icon(self, path: Path | None) -> QIcon:
        if path is None:
            return QIcon()
        if path not in self._icons:
            self._icons[path] = QIcon(QPixmap(str(path)))
        return self._icons[path]


class GalleryView(QListView):
    """Icon-mode list of thumbnails: multi-select, drag out to bins, drop files in to import."""

    files_dropped = Signal(list)
    digit_pressed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setMovement(QListView.Movement.Static)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setIconSize(QSize(ICON_SIZE, ICON_SIZE))
        self.setGridSize(
            QSize(ICON_SIZE + 32, ICON_SIZE + 4 * self.fontMetrics().lineSpacing() + 8)
        )
        self.setUniformItemSizes(True)
        self.setWordWrap(True)
        self.setSpacing(4)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setDragEnabled(True)
        self.setAcceptDrops(True)
        self.setDragDropMode(QAbstractItemView.DragDropMode.DragDrop)
        self.setDefaultDropAction(Qt.DropAction.CopyAction)
        self.setItemDelegate(ThumbnailDelegate(self))
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.empty_hint = ""
        """What to do when no thumbnail is shown (drawn in the empty view)."""

    def set_empty_hint(self, text: str) -> None:
        if text != self.empty_hint:
            self.empty_hint = text
            self.viewport().update()

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        model = self.model()
        if model is None or model.rowCount() == 0:
            draw_hint(self.viewport(), self.empty_hint)

    def selected_image_ids(self) -> list[int]:
        """The selected images; a selected series tile gives every slice of its series."""
        rows = sorted(index.row() for index in self.selectionModel().selectedIndexes())
        model = self.model()
        return [int(i) for row in rows for i in model.data(model.index(row, 0), MEMBER_IDS_ROLE)]

    def selected_class_ids(self) -> set[int]:
        """Every class the selected tiles carry; a series tile: any of its slices."""
        model = self.model()
        rows = {index.row() for index in self.selectionModel().selectedIndexes()}
        return {int(c) for row in rows for c in model.data(model.index(row, 0), CLASS_IDS_ROLE)}

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = dropped_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.files_dropped.emit(paths)
        else:
            event.ignore()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        plain = event.modifiers() in (
            Qt.KeyboardModifier.NoModifier,
            Qt.KeyboardModifier.KeypadModifier,
        )
        if plain and Qt.Key.Key_0 <= key <= Qt.Key.Key_9:
            self.digit_pressed.emit(key - Qt.Key.Key_0)
            event.accept()
            return
        super().keyPressEvent(event)
