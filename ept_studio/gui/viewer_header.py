"""The viewer's header panel: the image's fields in a table, identifying values hidden by default.

What is identifying is decided by :func:`ept_studio.services.project.viewer.metadata_rows`; hidden values
show as a grey "hidden" until the user ticks "Show identifying fields". Nothing here is logged.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.services.project import ImageView, MetadataRow, metadata_rows

FIELD_CHARS = 18
"""The field column's width in characters; the value column stretches over the rest."""


class HeaderTable(QWidget):
    """A "Show identifying fields" box above a Field / Value table (values elided, full in tips).

    The Tag column is hidden, and the field's tooltip names the tag, so that in a narrow side
    pane the values stay in view instead of being scrolled off to the right.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view: ImageView | None = None
        self.phi_box = QCheckBox("Show identifying fields")
        self.phi_box.setToolTip("Patient names, IDs, dates, UIDs, institution and file name")
        self.phi_box.toggled.connect(self._on_show_phi)
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Tag", "Field", "Value"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 6)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        # the tag is in the field's tooltip: the value column gets the room
        self.table.setColumnHidden(0, True)
        self.table.setColumnWidth(1, FIELD_CHARS * self.fontMetrics().averageCharWidth())
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.toggle_button = QToolButton()
        self.toggle_button.setText("Show header")
        self.toggle_button.setCheckable(True)
        self.toggle_button.setToolTip("Show the DICOM header beside the image")
        layout = QVBoxLayout(self)
        layout.addWidget(self.phi_box)
        layout.addWidget(self.table, 1)

    def set_shown(self, shown: bool) -> None:
        """Show or collapse the header; its toggle button (laid out elsewhere) follows."""
        self.toggle_button.blockSignals(True)
        self.toggle_button.setChecked(shown)
        self.toggle_button.blockSignals(False)
        self.toggle_button.setText("Hide header" if shown else "Show header")
        self.setVisible(shown)

    def show_view(self, view: ImageView | None) -> None:
        """List ``view``'s fields (None empties the table); the box keeps its state."""
        self.view = view
        self.refresh()

    def refresh(self) -> None:
        rows: list[MetadataRow] = []
        if self.view is not None:
            try:
                rows = metadata_rows(self.view, show_phi=self.phi_box.isChecked())
            except EptStudioError:  # a header that cannot be read: the image is still shown
                rows = []
        self.table.setRowCount(len(rows))
        for index, row in enumerate(rows):
            for column, text in enumerate((row.tag, row.name, row.value)):
                self.table.setItem(index, column, self._item(row, column, text))

    def _item(self, row: MetadataRow, column: int, text: str) -> QTableWidgetItem:
        item = QTableWidgetItem(text)
        if row.hidden and column == 2:
            font = QFont(self.table.font())
            font.setItalic(True)
            item.setFont(font)
            item.setForeground(QColor(128, 128, 128))
            item.setToolTip("Tick 'Show identifying fields' to see it")
        elif column == 1 and row.tag:
            item.setToolTip(f"{text} {row.tag}")
        elif column > 0:
            item.setToolTip(text)
        return item

    @Slot(bool)
    def _on_show_phi(self, _checked: bool) -> None:
        self.refresh()
