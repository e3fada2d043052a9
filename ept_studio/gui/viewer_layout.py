"""How the viewer's parts are put together: rows above and below the image, the image stretching.

Plain layout helpers, so that :mod:`ept_studio.gui.viewer` reads as what the panel does, and a
label that gives way gracefully when the pane is narrow.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolBar, QVBoxLayout, QWidget

SPACING = 4
"""Pixels between the rows: little, so that the image keeps the height."""


def row(*parts: tuple[QWidget, int]) -> QWidget:
    """Widgets side by side without margins, each with its stretch factor."""
    widget = QWidget()
    layout = QHBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    for part, stretch in parts:
        layout.addWidget(part, stretch)
    return widget


def tool_row(tools: Sequence[QWidget], trailing: QWidget) -> QWidget:
    """``tools`` in a toolbar (what does not fit goes behind its » button), ``trailing`` right."""
    bar = QToolBar()
    bar.setMovable(False)
    bar.setFloatable(False)
    for tool in tools:
        bar.addWidget(tool)
    return row((bar, 1), (trailing, 0))


def image_column(
    above: Sequence[QWidget], image: Sequence[QWidget], below: Sequence[QWidget]
) -> QWidget:
    """Rows ``above``, the ``image`` row (its first widget takes the room), rows ``below``."""
    image_row = QHBoxLayout()
    for index, part in enumerate(image):
        image_row.addWidget(part, 1 if index == 0 else 0)
    column = QVBoxLayout()
    column.setContentsMargins(0, 0, 0, 0)
    column.setSpacing(SPACING)
    for part in above:
        column.addWidget(part)
    column.addLayout(image_row, 1)
    for part in below:
        column.addWidget(part)
    widget = QWidget()
    widget.setLayout(column)
    return widget


class ElidedLabel(QLabel):
    """One line that ends in "…" when the pane is narrower than the text (the tooltip has it)."""

    def minimumSizeHint(self) -> QSize:
        return QSize(0, super().minimumSizeHint().height())

    def paintEvent(self, _event: QPaintEvent) -> None:
        area = self.contentsRect()
        mode = Qt.TextElideMode.ElideRight
        painter = QPainter(self)
        painter.drawText(
            area, self.alignment(), self.fontMetrics().elidedText(self.text(), mode, area.width())
        )
        painter.end()
