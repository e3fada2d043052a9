"""The New project dialog: a name and a place, from which the project's own folder is made.

Asking for a folder invited users to pick their image folder; the project's database and caches
then mixed with their images. Here the project always gets a new folder ``<location>/<name>``, and
a name whose folder exists and holds files is refused before the dialog closes.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.services.project import LabelMode, new_project_folder


class NewProjectDialog(QDialog):
    """Name, location (with Browse) and the label mode; ``folder()`` is the project to create."""

    def __init__(
        self, location: Path, *, multi_label: bool = False, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("New project")
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Chest X-ray triage")
        self.location = QLineEdit(str(location))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        where = QHBoxLayout()
        where.addWidget(self.location, 1)
        where.addWidget(browse)
        self.multi_label = QCheckBox("An image may belong to several classes (multi-label)")
        self.multi_label.setChecked(multi_label)
        self.preview = QLabel()
        self.preview.setWordWrap(True)
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("QLabel { color: #a33; }")
        lines = self.fontMetrics().lineSpacing()
        self.preview.setMinimumHeight(2 * lines)  # room kept: the dialog does not jump as one types
        self.error.setMinimumHeight(4 * lines)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Create")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Project name:", self.name)
        form.addRow("Location:", where)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.multi_label)
        layout.addWidget(self.preview)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.name.textChanged.connect(self._on_changed)
        self.location.textChanged.connect(self._on_changed)
        self.setMinimumWidth(480)
        self._on_changed()

    def folder(self) -> Path:
        """The new project's folder; a ProjectError says why the name or place cannot be used."""
        return new_project_folder(Path(self.location.text().strip()), self.name.text())

    def label_mode(self) -> LabelMode:
        return LabelMode.MULTI if self.multi_label.isChecked() else LabelMode.SINGLE

    @Slot()
    def browse(self) -> None:
        chosen = QFileDialog.getExistingDirectory(
            self, "Where the project folder goes", self.location.text()
        )
        if chosen:
            self.location.setText(chosen)

    @Slot()
    def _on_changed(self) -> None:
        """Say where the project will be as the user types; the error only once they have."""
        create = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        try:
            folder = self.folder()
        except EptStudioError as err:
            self.preview.setText("")
            self.error.setText(str(err) if self.name.text().strip() else "")
            create.setEnabled(False)
            return
        self.preview.setText(f"The project will be created in a new folder: {folder}")
        self.error.setText("")
        create.setEnabled(True)

    def accept(self) -> None:
        try:
            self.folder()
        except EptStudioError as err:  # the folder filled up since the name was typed
            self.error.setText(str(err))
            return
        super().accept()
