"""Empty-state hints: a grey sentence drawn in an empty view saying what to do next.

Drawn in the view's own viewport (not a widget over it), so drops and clicks still reach the view.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QWidget

HINT_MARGIN = 24


def draw_hint(viewport: QWidget, text: str, area: QRect | None = None) -> None:
    """Draw ``text`` centred and word-wrapped in ``area`` of ``viewport`` (all of it by default).

    Call from the view's ``paintEvent`` after the items are painted.
    """
    if not text:
        return
    rect = (area or viewport.rect()).adjusted(HINT_MARGIN, HINT_MARGIN, -HINT_MARGIN, -HINT_MARGIN)
    if rect.width() <= 0 or rect.height() <= 0:
        return
    painter = QPainter(viewport)
    colour = viewport.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
    painter.setPen(colour)
    font = painter.font()
    font.setPointSizeF(font.pointSizeF() * 1.15)
    painter.setFont(font)
    flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
    painter.drawText(rect, int(flags), text)
    painter.end()
