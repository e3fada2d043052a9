"""The Train tab's checklist: one line per readiness item, ok / warning / blocking, plain words.

The items come from :func:`ept_studio.services.project.readiness.check_readiness`; this view only draws
them, and puts a "Split for me" button on the lines that split fixes.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from ept_studio.services.project import SPLIT_ACTION, ReadinessItem, Severity

MARKS = {Severity.OK: "✓", Severity.WARNING: "⚠", Severity.BLOCKING: "✗"}
COLOURS = {Severity.OK: "#2e7d32", Severity.WARNING: "#b26a00", Severity.BLOCKING: "#c62828"}
WORDS = {Severity.OK: "ok", Severity.WARNING: "warning", Severity.BLOCKING: "blocks training"}


class ReadinessView(QWidget):
    """Checklist lines, rebuilt whenever the items change."""

    def __init__(self, split_action: QAction, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.split_action = split_action
        self.items: tuple[ReadinessItem, ...] = ()
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(2)

    def set_items(self, items: Sequence[ReadinessItem]) -> None:
        """Show ``items`` (blocking first, then warnings, then the ok ones)."""
        order = {Severity.BLOCKING: 0, Severity.WARNING: 1, Severity.OK: 2}
        ordered = tuple(sorted(items, key=lambda item: order[item.severity]))
        if ordered == self.items:
            return
        self.items = ordered
        while self._layout.count():
            child = self._layout.takeAt(0)
            widget = child.widget() if child is not None else None
            if widget is not None:
                widget.hide()  # at once: deleteLater waits for the event loop
                widget.setParent(None)
                widget.deleteLater()
        for item in ordered:
            self._layout.addWidget(self._line(item))

    def texts(self) -> list[str]:
        """What each line says (the mark and the words), top to bottom."""
        return [f"{MARKS[item.severity]} {item.text}" for item in self.items]

    def _line(self, item: ReadinessItem) -> QWidget:
        line = QWidget(self)
        row = QHBoxLayout(line)
        row.setContentsMargins(0, 0, 0, 0)
        mark = QLabel(MARKS[item.severity], line)
        mark.setStyleSheet(f"color: {COLOURS[item.severity]}; font-weight: bold")
        mark.setAlignment(Qt.AlignmentFlag.AlignTop)
        mark.setToolTip(WORDS[item.severity])
        text = QLabel(item.text, line)
        text.setWordWrap(True)
        text.setToolTip(f"{WORDS[item.severity]}: {item.text}")
        row.addWidget(mark)
        row.addWidget(text, 1)
        if item.action == SPLIT_ACTION:
            button = QToolButton(line)
            button.setDefaultAction(self.split_action)
            row.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
        return line
