"""The legend of the model attention overlay: its colour map as a vertical bar beside the image.

The colours come from :func:`ept_studio.services.project.viewer.attention_colour_stops`, the function the
overlay itself is coloured with, so the legend cannot drift from what is drawn. Each overlay is
normalised per image (min-max), so the ends read "low" and "high", not numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRect, QSize, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPaintEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from ept_studio.services.project import CAPTION, ColourStop

BAR_WIDTH = 14
MARGIN = 4
GAP = 4


class AttentionColourBar(QWidget):
    """ "high" above a gradient bar, "low" below it, and "model attention" written along it."""

    def __init__(self, stops: Sequence[ColourStop], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.stops = tuple(stops)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Expanding)
        self.setToolTip(
            f"{CAPTION}: the overlay's colours, from the image's lowest to its highest attention"
        )

    def sizeHint(self) -> QSize:
        metrics = self.fontMetrics()
        ends = max(metrics.horizontalAdvance("high"), metrics.horizontalAdvance("low"))
        along = BAR_WIDTH + GAP + metrics.height()
        height = 2 * (metrics.height() + GAP) + metrics.horizontalAdvance(CAPTION) + 2 * MARGIN
        return QSize(max(ends, along) + 2 * MARGIN, height)

    def minimumSizeHint(self) -> QSize:
        return QSize(self.sizeHint().width(), 4 * self.fontMetrics().height())

    def bar_rect(self) -> QRect:
        """Where the gradient is drawn: low at the bottom edge, high at the top."""
        line = self.fontMetrics().height()
        top = MARGIN + line + GAP
        return QRect(MARGIN, top, BAR_WIDTH, max(1, self.height() - 2 * top))

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        bar = self.bar_rect()
        gradient = QLinearGradient(QPointF(0, bar.bottom() + 1), QPointF(0, bar.top()))
        for stop in self.stops:
            gradient.setColorAt(stop.position, QColor(*stop.rgb))
        painter.fillRect(bar, gradient)
        painter.setPen(self.palette().windowText().color())
        line = self.fontMetrics().height()
        left = Qt.AlignmentFlag.AlignLeft
        width = self.width() - 2 * MARGIN
        painter.drawText(QRect(MARGIN, MARGIN, width, line), left, "high")
        painter.drawText(QRect(MARGIN, bar.bottom() + 1 + GAP, width, line), left, "low")
        self._draw_caption(painter, bar)
        painter.end()

    def _draw_caption(self, painter: QPainter, bar: QRect) -> None:
        """ "model attention" read bottom to top, to the right of the bar."""
        line = self.fontMetrics().height()
        painter.save()
        painter.translate(bar.right() + 1 + GAP, bar.bottom() + 1)
        painter.rotate(-90)
        painter.drawText(QRect(0, 0, bar.height(), line), Qt.AlignmentFlag.AlignCenter, CAPTION)
        painter.restore()
