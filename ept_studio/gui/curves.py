"""A small live line plot (training loss per step, a metric per epoch), drawn with QPainter.

No plotting library: the plot repaints only when a point arrives, and each series is a list of
(x, y) pairs the tests can read back.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
LEGEND_ROW = 16
"""Pixels of one row of the legend, which sits above the plot so that it never covers a line."""
SWATCH = 10


class CurvePlot(QWidget):
    """Named series of points against a shared x axis (steps), each with its own colour."""

    def __init__(self, x_label: str = "step", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.x_label = x_label
        self._series: dict[str, list[tuple[float, float]]] = {}
        self.setMinimumHeight(140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(320, 180)

    def clear(self) -> None:
        self._series.clear()
        self.update()

    def add_point(self, series: str, x: float, y: float) -> None:
        """Append a point (non-finite values are skipped: a NaN loss is reported elsewhere)."""
        if math.isfinite(x) and math.isfinite(y):
            self._series.setdefault(series, []).append((float(x), float(y)))
            self.update()

    def points(self, series: str) -> list[tuple[float, float]]:
        return list(self._series.get(series, []))

    def series_names(self) -> list[str]:
        return list(self._series)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        legend_rows = self.legend_rows()
        frame = self.plot_frame()
        painter.setPen(QPen(self.palette().mid().color()))
        painter.drawRect(frame)
        points = [p for series in self._series.values() for p in series]
        if not points:
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(frame, Qt.AlignmentFlag.AlignCenter, "Curves appear while it trains")
            return
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        x0, x1 = min(xs), max(max(xs), min(xs) + 1.0)
        y0, y1 = min(0.0, min(ys)), max(ys) * 1.05 or 1.0

        def place(x: float, y: float) -> QPointF:
            return QPointF(
                frame.left() + (x - x0) / (x1 - x0) * frame.width(),
                frame.bottom() - (y - y0) / (y1 - y0) * frame.height(),
            )

        text = self.palette().text().color()
        painter.setPen(text)
        painter.drawText(QPointF(4, frame.top() + 10), f"{y1:.3g}")
        painter.drawText(QPointF(4, frame.bottom()), f"{y0:.3g}")
        painter.drawText(QPointF(frame.left(), frame.bottom() + 18), f"{x0:.0f}")
        right = f"{x1:.0f} {self.x_label}s"
        painter.drawText(QPointF(frame.right() - 8 * len(right), frame.bottom() + 18), right)
        for k, series in enumerate(self._series.values()):
            colour = QColor(PALETTE[k % len(PALETTE)])
            painter.setPen(QPen(colour, 2))
            path = QPainterPath(place(*series[0]))
            for x, y in series[1:]:
                path.lineTo(place(x, y))
            painter.drawPath(path)
            if len(series) == 1:
                painter.drawEllipse(place(*series[0]), 2.5, 2.5)
        self._draw_legend(painter, legend_rows)

    def plot_frame(self) -> QRectF:
        """Where the lines are drawn: below the legend's rows, above the x axis labels."""
        top = 10 + LEGEND_ROW * len(self.legend_rows())
        return QRectF(self.rect()).adjusted(44, top, -10, -28)

    def legend_rows(self) -> list[list[tuple[int, str, float]]]:
        """The series names laid out in rows above the plot (never over the lines):
        (colour index, name, x) per entry."""
        metrics = self.fontMetrics()
        rows: list[list[tuple[int, str, float]]] = []
        x, right = 44.0, self.width() - 10.0
        for k, name in enumerate(self._series):
            width = SWATCH + 4 + metrics.horizontalAdvance(name) + 12
            if not rows or (x + width > right and rows[-1]):
                rows.append([])
                x = 44.0
            rows[-1].append((k, name, x))
            x += width
        return rows

    def _draw_legend(self, painter: QPainter, rows: list[list[tuple[int, str, float]]]) -> None:
        for r, row in enumerate(rows):
            baseline = 4 + LEGEND_ROW * (r + 1) - 4
            for k, name, x in row:
                colour = QColor(PALETTE[k % len(PALETTE)])
                painter.fillRect(QRectF(x, baseline - SWATCH, SWATCH, SWATCH - 2), colour)
                painter.setPen(colour)
                painter.drawText(QPointF(x + SWATCH + 4, baseline), name)
