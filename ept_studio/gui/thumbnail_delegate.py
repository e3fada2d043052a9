"""How one gallery thumbnail is drawn: the image, a band in its classes' colours, a "test" badge.

The band runs along the bottom of the thumbnail, split evenly between the image's classes (one
colour in a single-label project, several in a multi-label one); unlabelled images have none. The
badge marks images held out to test the model, so the split is visible while labelling. A series
tile (one tile for the slices of a series) carries a second badge with its slice count.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

CLASS_COLOURS_ROLE = Qt.ItemDataRole.UserRole + 2
"""The colours of an image's classes (a list of QColor), in class order."""
LABEL_ROLE_ROLE = Qt.ItemDataRole.UserRole + 3
"""``"train"``, ``"test"`` or None (unlabelled)."""
SLICE_COUNT_ROLE = Qt.ItemDataRole.UserRole + 5
"""How many images a tile stands for (more than 1: a series tile)."""

BAND_HEIGHT = 8
CAPTION_LINES = 3
BADGE_COLOUR = QColor("#202020")
_Index = QModelIndex | QPersistentModelIndex


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints the usual icon and caption, then the class band and the role badge over the icon."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)

    def sizeHint(self, option: QStyleOptionViewItem, index: _Index) -> QSize:
        """Room for the thumbnail and three caption lines (file, label, model prediction)."""
        icon = option.decorationSize  # type: ignore[attr-defined]
        lines = option.fontMetrics.lineSpacing() * CAPTION_LINES  # type: ignore[attr-defined]
        return QSize(icon.width() + 24, icon.height() + lines + 8)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: _Index) -> None:
        super().paint(painter, option, index)
        icon = self._icon_rect(option, index)
        colours = index.data(CLASS_COLOURS_ROLE) or []
        painter.save()
        try:
            if colours:
                self._paint_band(painter, icon, list(colours))
            if index.data(LABEL_ROLE_ROLE) == "test":
                self._paint_badge(painter, icon, "test")
            slices = index.data(SLICE_COUNT_ROLE) or 1
            if slices > 1:
                self._paint_badge(painter, icon, f"{slices} slices", left=True)
        finally:
            painter.restore()

    def _icon_rect(self, option: QStyleOptionViewItem, index: _Index) -> QRect:
        styled = QStyleOptionViewItem(option)
        self.initStyleOption(styled, index)
        widget = option.widget  # type: ignore[attr-defined]
        style = widget.style() if widget is not None else None
        if style is None:
            return QRect(option.rect)  # type: ignore[attr-defined]
        box = style.subElementRect(QStyle.SubElement.SE_ItemViewItemDecoration, styled, widget)
        if styled.icon.isNull():  # type: ignore[attr-defined]
            return box
        size = styled.icon.actualSize(box.size())  # type: ignore[attr-defined]
        return QStyle.alignedRect(
            Qt.LayoutDirection.LeftToRight, Qt.AlignmentFlag.AlignCenter, size, box
        )

    @staticmethod
    def _paint_band(painter: QPainter, icon: QRect, colours: list[QColor]) -> None:
        top = icon.bottom() - BAND_HEIGHT + 1
        width = icon.width() / len(colours)
        for position, colour in enumerate(colours):
            left = icon.left() + round(position * width)
            right = icon.left() + round((position + 1) * width)
            painter.fillRect(QRect(left, top, right - left, BAND_HEIGHT), colour)

    @staticmethod
    def _paint_badge(painter: QPainter, icon: QRect, text: str, left: bool = False) -> None:
        font = QFont(painter.font())
        font.setBold(True)
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        width, height = metrics.horizontalAdvance(text) + 8, metrics.height() + 2
        x = icon.left() + 2 if left else icon.right() - width - 2
        badge = QRect(x, icon.top() + 3, width, height)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(BADGE_COLOUR)
        painter.drawRoundedRect(badge, 4, 4)
        painter.setPen(QPen(QColor("white")))
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
