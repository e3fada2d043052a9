"""The welcome page: what the main area shows while no project is open.

A first start should not show an empty gallery: it offers the three ways in (a new project, the demo,
an existing project), the recent projects, and the flow of the app in three steps, drawn with plain
widgets so that it needs no image files and follows the system's palette.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, SignalInstance, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ept_studio.gui.status import SHORT_NOTICE

FLOW_STEPS = (
    ("Add images", "drop DICOM/PNG files or folders"),
    ("Label a few per class", "drag them into class bins"),
    ("Train and review", "one press, then see results on test images"),
)
"""The app's flow in three steps (the welcome page draws them; Help > How it works tells them)."""
PATH_ROLE = Qt.ItemDataRole.UserRole + 1
CONTENT_WIDTH = 760


def _scaled_font(widget: QWidget, factor: float, bold: bool = False) -> QFont:
    font = QFont(widget.font())
    font.setPointSizeF(font.pointSizeF() * factor)
    font.setBold(bold)
    return font


class StepCard(QFrame):
    """One step of the flow: its number in a circle, a title and a line on how."""

    def __init__(self, number: int, title: str, detail: str) -> None:
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        badge = QLabel(str(number))
        badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        badge.setFixedSize(36, 36)
        badge.setStyleSheet(
            "QLabel { background: #2f6db5; color: white; border-radius: 18px; font-weight: bold; }"
        )
        self.title = QLabel(title)
        self.title.setFont(_scaled_font(self, 1.1, bold=True))
        self.title.setWordWrap(True)
        self.detail = QLabel(detail)
        self.detail.setWordWrap(True)
        self.title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout = QVBoxLayout(self)
        layout.addWidget(badge, 0, Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.title)
        layout.addWidget(self.detail)
        layout.addStretch(1)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)


def flow_strip() -> QWidget:
    """The three steps side by side with arrows between them."""
    strip = QWidget()
    row = QHBoxLayout(strip)
    row.setContentsMargins(0, 0, 0, 0)
    for number, (title, detail) in enumerate(FLOW_STEPS, start=1):
        if number > 1:
            arrow = QLabel("→")
            arrow.setFont(_scaled_font(strip, 2.0, bold=True))
            row.addWidget(arrow)
        row.addWidget(StepCard(number, title, detail), 1)
    return strip


class WelcomePage(QScrollArea):
    """New project, the demo, open a project, the recent ones, and the flow in three steps."""

    new_requested = Signal()
    demo_requested = Signal()
    open_requested = Signal()
    recent_chosen = Signal(object)
    """The project folder (a Path) the user clicked in the recent list."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.new_button = self._big_button("New project…", self.new_requested)
        self.demo_button = self._big_button("Open the demo", self.demo_requested)
        self.open_button = self._big_button("Open a project…", self.open_requested)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("QLabel { background: #fff3cd; color: #5c4400; padding: 6px; }")
        self.note.hide()
        self.recent = QListWidget()
        self.recent.setMaximumHeight(150)
        self.recent.itemClicked.connect(self._on_recent_clicked)
        self.no_recent = QLabel("No recent projects yet.")
        self.notice = QLabel(SHORT_NOTICE)
        self.notice.setStyleSheet("QLabel { color: #a33; font-weight: bold; }")
        self.setWidget(self._content())

    def _big_button(self, text: str, signal: SignalInstance) -> QPushButton:
        button = QPushButton(text)
        button.setMinimumHeight(48)
        button.setFont(_scaled_font(button, 1.2))
        button.clicked.connect(signal)
        return button

    def _content(self) -> QWidget:
        title = QLabel("Welcome to EPT Studio")
        title.setFont(_scaled_font(title, 1.8, bold=True))
        lead = QLabel(
            "Teach a frozen vision model to tell your kinds of images apart from a few labelled "
            "examples per class."
        )
        lead.setWordWrap(True)
        buttons = QHBoxLayout()
        for button in (self.new_button, self.demo_button, self.open_button):
            buttons.addWidget(button)
        heading = QLabel("Recent projects")
        heading.setFont(_scaled_font(heading, 1.1, bold=True))
        column = QVBoxLayout()
        column.addStretch(1)
        for label in (title, lead, self.note):
            column.addWidget(label)
        column.addLayout(buttons)
        column.addSpacing(8)
        column.addWidget(flow_strip())
        column.addSpacing(8)
        for widget in (heading, self.recent, self.no_recent, self.notice):
            column.addWidget(widget)
        column.addStretch(2)
        inner = QWidget()
        inner.setMaximumWidth(CONTENT_WIDTH)
        inner.setLayout(column)
        outer = QWidget()
        centred = QHBoxLayout(outer)
        centred.addWidget(inner)
        return outer

    def set_recent(self, folders: list[Path]) -> None:
        """List the recent project folders (newest first); the name shows, the path is the tip."""
        self.recent.clear()
        for folder in folders:
            item = QListWidgetItem(f"{folder.name}    ({folder.parent})")
            item.setData(PATH_ROLE, str(folder))
            item.setToolTip(str(folder))
            self.recent.addItem(item)
        self.recent.setVisible(bool(folders))
        self.no_recent.setVisible(not folders)

    def recent_folders(self) -> list[Path]:
        return [Path(str(self.recent.item(r).data(PATH_ROLE))) for r in range(self.recent.count())]

    def set_note(self, text: str) -> None:
        """A short note above the buttons (e.g. the last project is gone); empty hides it."""
        self.note.setText(text)
        self.note.setVisible(bool(text))

    @Slot(QListWidgetItem)
    def _on_recent_clicked(self, item: QListWidgetItem) -> None:
        self.recent_chosen.emit(Path(str(item.data(PATH_ROLE))))
