"""Choosing the backbone the next training loads: every supported backbone with its licence, size
and whether it is on this computer.

One that is here can be chosen. One that is not shows the exact command that downloads it (the
command line shows its licence and downloads only once it is accepted); the app downloads nothing
from this dialog. The list is read from the manifest without loading torch.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.services.model import BackboneChoice, backbone_choices

HERE = "on this computer"
NOT_HERE = "not downloaded"
COLUMNS = ("Backbone", "Licence", "Size", "Here")


class BackboneDialog(QDialog):
    """The backbones in a table; *Use for training* accepts the chosen one (when it is here)."""

    def __init__(
        self, choices: list[BackboneChoice], current: str | None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("EPT Studio: backbone")
        self.choices = choices
        self.table = self._table(choices)
        self.details = QLabel("")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.command = QLineEdit()
        self.command.setReadOnly(True)
        self.command.setToolTip("Run this in a terminal; it shows the licence and asks first.")
        self.copy_button = QPushButton("Copy")
        command_row = QHBoxLayout()
        command_row.addWidget(self.command, 1)
        command_row.addWidget(self.copy_button)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.use_button = box.addButton("Use for training", QDialogButtonBox.ButtonRole.AcceptRole)
        layout = QVBoxLayout(self)
        intro = QLabel(
            "The backbone is the pretrained image model that stays unchanged while EPT learns "
            "its prompts. A backbone that is not on this computer is downloaded from the "
            "command line."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.details)
        layout.addLayout(command_row)
        layout.addWidget(box)
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        self.copy_button.clicked.connect(self._copy)
        self.table.currentCellChanged.connect(self._on_row)
        names = [choice.name for choice in choices]
        self.table.selectRow(names.index(current) if current in names else 0)
        self.resize(760, 460)

    def _table(self, choices: list[BackboneChoice]) -> QTableWidget:
        table = QTableWidget(len(choices), len(COLUMNS))
        table.setHorizontalHeaderLabels(COLUMNS)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.verticalHeader().setVisible(False)
        for row, choice in enumerate(choices):
            name = f"{choice.name} (default)" if choice.default else choice.name
            size = f"{choice.size_mb:.0f} MB" if choice.size_mb is not None else "?"
            cells = (name, choice.licence, size, HERE if choice.available else NOT_HERE)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(choice.description)
                table.setItem(row, column, item)
        header = table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, len(COLUMNS)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        return table

    @property
    def selected(self) -> BackboneChoice | None:
        row = self.table.currentRow()
        return self.choices[row] if 0 <= row < len(self.choices) else None

    def select(self, name: str) -> None:
        """Select the backbone ``name``; an unknown name is a ValueError."""
        names = [choice.name for choice in self.choices]
        if name not in names:
            raise ValueError(f"no backbone {name!r} in the list")
        self.table.selectRow(names.index(name))

    @Slot()
    def _on_row(self) -> None:
        choice = self.selected
        if choice is None:
            return
        licence = choice.licence_text or f"Released under the {choice.licence} licence."
        text = f"{choice.description}. {licence}"
        here = choice.available
        if not here:
            size = f" (about {choice.size_mb:.0f} MB)" if choice.size_mb is not None else ""
            text += (
                f"\n\nNot on this computer. To get it{size}, run this command, which shows the "
                "licence and downloads only once you accept it:"
            )
            if choice.get_note:
                text += f" {choice.get_note}"
            if choice.default:
                text += " (or press 'Get the offline backbone…' in the status bar)"
        self.details.setText(text)
        self.command.setText("" if here else choice.get_command)
        self.command.setVisible(not here)
        self.copy_button.setVisible(not here)
        self.use_button.setEnabled(here)

    @Slot()
    def _copy(self) -> None:
        QGuiApplication.clipboard().setText(self.command.text())


class BackbonePicker(QWidget):
    """The Train tab's backbone row: the one the next run loads, and *Choose…* for the list."""

    changed = Signal()
    """Another backbone was chosen (:attr:`name`)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name: str | None = None
        """The chosen backbone (None: the offline default)."""
        self.dialog: BackboneDialog | None = None
        self.label = QLabel("")
        self.label.setWordWrap(True)  # the Train tab stays narrow
        self.label.setToolTip(
            "backbone: the pretrained Vision Transformer that stays frozen while the method "
            "learns its prompts (or other tensors)"
        )
        self.button = QPushButton("Choose…")
        self.button.setToolTip("Every supported backbone: licence, size, whether it is here")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button)
        self.button.clicked.connect(self.ask)
        self._show()

    @Slot()
    def ask(self) -> None:
        """Open the list (not blocking); accepting it chooses the selected backbone."""
        try:
            choices = backbone_choices()
        except EptStudioError as err:
            QMessageBox.warning(self, "EPT Studio: the backbone list", str(err))
            return
        self.dialog = BackboneDialog(choices, self.name, self)
        self.dialog.accepted.connect(self._on_accepted)
        self.dialog.open()

    @Slot()
    def _on_accepted(self) -> None:
        chosen = self.dialog.selected if self.dialog is not None else None
        if chosen is not None and chosen.available:
            self.choose(None if chosen.default else chosen.name)

    def choose(self, name: str | None) -> None:
        """Train on the backbone ``name`` from the next run (None: the offline default)."""
        self.name = name
        self._show()
        self.changed.emit()

    def _show(self) -> None:
        self.label.setText(self.name or "Offline default (DINOv2 ViT-S/14)")
