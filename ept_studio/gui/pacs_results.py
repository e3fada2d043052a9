"""The PACS search results: one row per study, or per series when series are listed; the user
picks rows to import."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from ept_studio.services.project import PacsSeries, PacsStudy

COLUMNS = ("Date", "Modality", "Description", "Images", "Patient")
_IMAGES = 3


@dataclasses.dataclass(frozen=True)
class PacsRow:
    """A study, or one series of it."""

    study: PacsStudy
    series: PacsSeries | None = None


@dataclasses.dataclass(frozen=True)
class PacsChoice:
    """What the picked rows ask to import: studies, and only these series of them (None: all)."""

    study_uids: list[str]
    series_uids: set[str] | None


class PacsResultsTable(QTableWidget):
    """The rows found, several of which can be picked (Ctrl / Shift + click)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, len(COLUMNS), parent)
        self.rows: list[PacsRow] = []
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().hide()
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        self.setToolTip("What was found; pick one or more rows to import (Ctrl / Shift + click)")

    def show_rows(self, rows: list[PacsRow]) -> None:
        self.clearSelection()
        self.rows = rows
        self.setRowCount(len(rows))
        for index, row in enumerate(rows):
            for column, text in enumerate(_cells(row)):
                item = QTableWidgetItem(text)
                if column == _IMAGES:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                    item.setToolTip("The number of images (DICOM instances)")
                self.setItem(index, column, item)

    def picked(self) -> list[PacsRow]:
        indexes = {index.row() for index in self.selectionModel().selectedRows()}
        return [self.rows[index] for index in sorted(indexes) if index < len(self.rows)]

    def choice(self) -> PacsChoice:
        """The picked rows as studies and series to import."""
        picked = self.picked()
        studies = list(dict.fromkeys(row.study.study_uid for row in picked))
        series = {row.series.series_uid for row in picked if row.series is not None}
        return PacsChoice(studies, series or None)


def _cells(row: PacsRow) -> tuple[str, ...]:
    study, series = row.study, row.series
    patient = study.patient_name.replace("^", " ").strip() or "-"
    if series is None:
        images = study.instances
        modality = " / ".join(study.modalities) or "-"
        description = study.description or "-"
    else:
        images = series.instances
        modality = series.modality or "-"
        number = f"series {series.number}" if series.number is not None else "unnamed series"
        description = " — ".join(
            part for part in (study.description, series.description or number) if part
        )
    count = "?" if images is None else str(images)
    return (_date(study.date), modality, description, count, patient)


def _date(value: str) -> str:
    """A DICOM date as YYYY-MM-DD (as it came when it is not one)."""
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value or "-"
