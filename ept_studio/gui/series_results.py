"""The Results tab's per-series view: one row per series of the shown run, its slices' scores
combined (mean, or max for "is the finding present anywhere" questions).

A double-click on a row emits ``slice_opened`` with the series' decisive slice (the slice that
scores the series' predicted class highest) and the run, so the window opens it in the Viewer with
that run's attention over it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import ept_studio.services.project as project_services
from ept_studio.common.errors import EptStudioError
from ept_studio.services.project import AGGREGATIONS, SeriesPrediction, open_project

COLUMNS = ("Series", "Slices", "Prediction", "Key slice")
AGGREGATION_LABELS = {
    "mean": "Average over slices",
    "max": "Highest slice score",
}
AGGREGATION_TOOLTIP = (
    "How a series' slice scores are combined.\n"
    "Average over slices (mean): the series' score for each class is the average of its "
    "slices' model scores.\n"
    "Highest slice score (max): for 'is the finding present anywhere' questions; each class's "
    "highest score on any slice, rescaled so the series' scores add up to 100 %."
)
TABLE_TOOLTIP = (
    "One row per series (an image outside a DICOM series is a series of one slice). "
    "Double-click a row to open its key slice, the one that scores the series' predicted class "
    "highest, in the Viewer with the model attention over it."
)


class SeriesResultsView(QWidget):
    """A table of the shown run's per-series predictions and the aggregation chooser."""

    slice_opened = Signal(int, int)
    """(image id of a series' decisive slice, run id): open it with that run's attention."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self.run_id: int | None = None
        self.predictions: list[SeriesPrediction] = []
        self.aggregation = QComboBox()
        for name in AGGREGATIONS:
            self.aggregation.addItem(AGGREGATION_LABELS[name], name)
        self.aggregation.setToolTip(AGGREGATION_TOOLTIP)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setToolTip(TABLE_TOOLTIP)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        top = QHBoxLayout()
        top.addWidget(QLabel("Per series:"))
        top.addWidget(self.aggregation, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addWidget(self.note)
        self.aggregation.currentIndexChanged.connect(self._refill)
        self.table.cellDoubleClicked.connect(self._on_double_click)

    @property
    def chosen_aggregation(self) -> str:
        return str(self.aggregation.currentData())

    def set_aggregation(self, name: str) -> None:
        """Choose ``mean`` or ``max`` (as the chooser does)."""
        self.aggregation.setCurrentIndex(self.aggregation.findData(name))

    def show_run(self, folder: Path | None, run_id: int | None) -> None:
        """Show run ``run_id``'s series of the project in ``folder`` (None: empty)."""
        self.folder, self.run_id = folder, run_id
        self._refill()

    @Slot()
    def _refill(self) -> None:
        self.predictions = []
        self.note.setText("")
        if self.folder is not None and self.run_id is not None:
            try:
                with open_project(self.folder) as project:
                    self.predictions = project_services.series_predictions(
                        project, self.run_id, self.chosen_aggregation
                    )
            except EptStudioError as err:
                self.note.setText(f"Per-series results cannot be shown: {err}")
        self.table.setRowCount(len(self.predictions))
        for row, prediction in enumerate(self.predictions):
            cells = (
                str(prediction.series_number),
                str(prediction.slice_count),
                f"{prediction.predicted_class} {prediction.probability * 100:.0f} %",
                f"image {prediction.decisive_image_id}",
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column < 2:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, column, item)
        if self.predictions and not self.predictions[0].calibrated:
            self.note.setText("Model scores, uncalibrated: not probabilities of disease.")

    @Slot(int, int)
    def _on_double_click(self, row: int, _column: int) -> None:
        if 0 <= row < len(self.predictions) and self.run_id is not None:
            self.slice_opened.emit(self.predictions[row].decisive_image_id, self.run_id)
