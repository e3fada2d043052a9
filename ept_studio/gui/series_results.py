"""The Results tab's per-series view: one row per series of the shown run, its slices' scores
combined (mean, or max for "is the finding present anywhere" questions).

A double-click on a row emits ``slice_opened`` with the series' decisive slice (the slice that
scores the series' predicted class highest) and the run, so the window opens it in the Viewer with
that run's attention over it.

"Save as DICOM reports…" writes one DICOM Structured Report per DICOM series of the shown run and
aggregation (:func:`~ept_studio.services.project.write_series_reports`, all of them or none), and
"Send to PACS…" stores those files on a saved PACS. Both run off the GUI thread in the view's own
:class:`~ept_studio.gui.tasks.TaskRunner`; the folder, server and password questions are attributes
(``choose_folder``, ``choose_server``, ``ask_secret``) that a caller or a test may replace.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from PySide6.QtCore import QCoreApplication, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

import ept_studio.services.project as project_services
from ept_studio.common.errors import EptStudioError
from ept_studio.common.files import display_path
from ept_studio.gui.pacs_secret import SecretQuestion, ask_pacs_secret, server_with_secret
from ept_studio.gui.tasks import TaskRunner
from ept_studio.services.project import (
    AGGREGATIONS,
    CredentialStore,
    DimseServer,
    PacsEntry,
    PacsServer,
    SeriesPrediction,
    SeriesReportsWritten,
    load_pacs_entries,
    open_project,
    reportable_series,
    store_to_pacs,
    write_series_reports,
)

COLUMNS = ("Series", "Prediction", "Key slice")
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
    "One row per series (an image outside a DICOM series is a series of one slice), named by "
    "the image number its tile in the gallery shows, with its number of slices. "
    "Double-click a row to open its key slice, the one that scores the series' predicted class "
    "highest, in the Viewer with the model attention over it."
)

SAVE_REPORTS_TOOLTIP = (
    "Writes a DICOM Structured Report (SR) for each series: the predicted class, the model "
    "scores, how the slices were combined and every source slice referenced. For research use "
    "only, not for diagnosis. PACS viewers can show it."
)
NO_DICOM_TOOLTIP = (
    "This run has no DICOM series: a DICOM report can only be written for a series of DICOM images."
)
SEND_TOOLTIP = (
    "Stores the reports just saved on one of your saved picture archives (PACS, by STOW-RS or "
    "C-STORE); only these reports are sent, never the images."
)
NO_REPORTS_TOOLTIP = "Save the DICOM reports first; then they can be sent to a PACS."
SAVING, SENDING = "Saving DICOM reports", "Sending to PACS"
STOP_WAIT_MS = 120_000

FolderQuestion = Callable[[], Path | None]
ServerQuestion = Callable[[Sequence[PacsEntry]], PacsEntry | None]


class SeriesResultsView(QWidget):
    """A table of the shown run's per-series predictions and the aggregation chooser."""

    slice_opened = Signal(int, int)
    """(image id of a series' decisive slice, run id): open it with that run's attention."""

    def __init__(
        self, parent: QWidget | None = None, credentials: CredentialStore | None = None
    ) -> None:
        super().__init__(parent)
        self.folder: Path | None = None
        self.run_id: int | None = None
        self.predictions: list[SeriesPrediction] = []
        self.reportable = 0
        """How many of the shown series are all DICOM (a report can be written for them)."""
        self.reports: tuple[Path, ...] = ()
        """The reports saved last, which "Send to PACS…" sends."""
        self.choose_folder: FolderQuestion = self._ask_folder
        self.choose_server: ServerQuestion = self._ask_server
        self.ask_secret: SecretQuestion = self._ask_secret
        self._credentials = credentials
        self._base_note = ""
        self._sending_to: PacsEntry | None = None
        self.tasks = TaskRunner(self)
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
        self.save_reports = QPushButton("Save as DICOM reports…")
        self.send_reports = QPushButton("Send to PACS…")
        top = QHBoxLayout()
        top.addWidget(QLabel("Per series:"))
        top.addWidget(self.aggregation, 1)
        reports = QHBoxLayout()
        reports.addWidget(self.save_reports)
        reports.addWidget(self.send_reports)
        reports.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.table)
        layout.addLayout(reports)
        layout.addWidget(self.note)
        self.aggregation.currentIndexChanged.connect(self._refill)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.save_reports.clicked.connect(self._on_save_clicked)
        self.send_reports.clicked.connect(self._on_send_clicked)
        self.tasks.finished.connect(self._on_task_finished)
        self.tasks.failed.connect(self._on_task_failed)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.stop)
        self._update_buttons()

    @property
    def has_slices(self) -> bool:
        """Whether a shown series has two slices or more (else each row is just one image and
        the table adds nothing to the results)."""
        return any(prediction.slice_count > 1 for prediction in self.predictions)

    @property
    def chosen_aggregation(self) -> str:
        return str(self.aggregation.currentData())

    def set_aggregation(self, name: str) -> None:
        """Choose ``mean`` or ``max`` (as the chooser does)."""
        self.aggregation.setCurrentIndex(self.aggregation.findData(name))

    @property
    def credentials(self) -> CredentialStore:
        """Where PACS passwords are kept (made when first needed: it may probe the keyring)."""
        if self._credentials is None:
            self._credentials = CredentialStore()
        return self._credentials

    @credentials.setter
    def credentials(self, store: CredentialStore) -> None:
        self._credentials = store

    def show_run(self, folder: Path | None, run_id: int | None) -> None:
        """Show run ``run_id``'s series of the project in ``folder`` (None: empty)."""
        if (folder, run_id) != (self.folder, self.run_id):
            self.reports = ()
        self.folder, self.run_id = folder, run_id
        self._refill()

    @Slot()
    def _refill(self) -> None:
        self.predictions, self.reportable, self._base_note = [], 0, ""
        self.note.setText("")
        if self.folder is not None and self.run_id is not None:
            try:
                with open_project(self.folder) as project:
                    self.predictions = project_services.series_predictions(
                        project, self.run_id, self.chosen_aggregation
                    )
                    self.reportable = len(reportable_series(project, self.predictions))
            except EptStudioError as err:
                self._base_note = f"Per-series results cannot be shown: {err}"
        self.table.setRowCount(len(self.predictions))
        for row, prediction in enumerate(self.predictions):
            cells = (
                series_name(prediction),
                f"{prediction.predicted_class} {prediction.probability * 100:.0f} %",
                f"image {prediction.decisive_image_id}",
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column == 0:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                self.table.setItem(row, column, item)
        if self.predictions and not self.predictions[0].calibrated:
            self._base_note = "Model scores, uncalibrated: not probabilities of disease."
        self.note.setText(self._base_note)
        self._update_buttons()

    @Slot(int, int)
    def _on_double_click(self, row: int, _column: int) -> None:
        if 0 <= row < len(self.predictions) and self.run_id is not None:
            self.slice_opened.emit(self.predictions[row].decisive_image_id, self.run_id)

    # -- DICOM reports ------------------------------------------------------------------------

    def save_reports_to(self, out: Path) -> bool:
        """Write the shown run's reports into ``out`` in the background; False if not started."""
        folder, run_id, aggregation = self.folder, self.run_id, self.chosen_aggregation
        if folder is None or run_id is None or not self.reportable:
            return False

        def job(_cancel: Callable[[], bool]) -> Iterator[object]:
            with open_project(folder) as project:
                yield write_series_reports(project, run_id, aggregation, out)

        return self._start(SAVING, job)

    def send_reports_to(self, entry: PacsEntry) -> bool:
        """Store the reports saved last on ``entry``'s PACS in the background (asking for its
        password when none is kept); False if not started."""
        reports = self.reports
        server = self._server_with_secret(entry) if reports else None
        if server is None:
            return False
        self._sending_to = entry

        def job(_cancel: Callable[[], bool]) -> Iterator[object]:
            yield store_to_pacs(server, reports)

        return self._start(SENDING, job)

    @Slot()
    def stop(self) -> None:
        """Wait for a save or send still running (the app is closing)."""
        self.tasks.wait(STOP_WAIT_MS)

    def _start(self, name: str, job: Callable[[Callable[[], bool]], Iterator[object]]) -> bool:
        if not self.tasks.start(name, job):
            return False
        self._tell(f"{name}…")
        self._update_buttons()
        return True

    @Slot()
    def _on_save_clicked(self) -> None:
        out = self.choose_folder()
        if out is not None:
            self.save_reports_to(out)

    @Slot()
    def _on_send_clicked(self) -> None:
        try:
            entries = load_pacs_entries()
        except EptStudioError as err:
            self._tell(f"The saved PACS list cannot be read: {err}")
            return
        if not entries:
            self._tell("No PACS is saved yet: add one under File > Import from a PACS… (Add…).")
            return
        entry = self.choose_server(entries)
        if entry is not None:
            self.send_reports_to(entry)

    def _server_with_secret(self, entry: PacsEntry) -> PacsServer | DimseServer | None:
        """The server to send to, asking for its password or token once when none is kept."""
        try:
            return server_with_secret(entry, self.credentials, self.ask_secret)
        except EptStudioError as err:
            self._tell(f"Nothing was sent: {err}")
            return None

    @Slot(str, object)
    def _on_task_finished(self, name: str, last: object) -> None:
        if name == SAVING and isinstance(last, SeriesReportsWritten):
            self.reports = last.paths
            self._tell(saved_text(last))
        elif name == SENDING and isinstance(last, int):
            where = self._sending_to.name if self._sending_to else "the PACS"
            noun = "report" if last == 1 else "reports"
            self._tell(f"{last} DICOM {noun} stored on {where}. For research use only.")
        self._update_buttons()

    @Slot(str, str)
    def _on_task_failed(self, name: str, message: str) -> None:
        if name == SAVING:
            self._tell(f"The DICOM reports were not saved (none were written): {message}")
        else:
            entry = self._sending_to
            if entry is not None and "refused the credentials" in message:
                self.credentials.forget(entry)  # asked for again next time
            self._tell(f"The reports were not stored on the PACS: {message}")
        self._update_buttons()

    def _tell(self, text: str) -> None:
        self.note.setText(f"{text} {self._base_note}".strip())

    def _update_buttons(self) -> None:
        busy = self.tasks.busy
        self.save_reports.setEnabled(self.reportable > 0 and not busy)
        self.save_reports.setToolTip(SAVE_REPORTS_TOOLTIP if self.reportable else NO_DICOM_TOOLTIP)
        self.send_reports.setEnabled(bool(self.reports) and not busy)
        self.send_reports.setToolTip(SEND_TOOLTIP if self.reports else NO_REPORTS_TOOLTIP)

    def _ask_folder(self) -> Path | None:
        chosen = QFileDialog.getExistingDirectory(self, "Save the DICOM reports in")
        return Path(chosen) if chosen else None

    def _ask_server(self, entries: Sequence[PacsEntry]) -> PacsEntry | None:
        names = [entry.name for entry in entries]
        name, ok = QInputDialog.getItem(
            self, "Send to PACS", "Store the reports on:", names, 0, False
        )
        return entries[names.index(name)] if ok and name in names else None

    def _ask_secret(self, entry: PacsEntry) -> str | None:
        return ask_pacs_secret(self, entry)


def series_name(prediction: SeriesPrediction) -> str:
    """The series as the gallery shows it (its tile's image number) and its slice count."""
    slices = "slice" if prediction.slice_count == 1 else "slices"
    return f"#{prediction.representative_id} ({prediction.slice_count} {slices})"


def saved_text(written: SeriesReportsWritten) -> str:
    """What a save wrote and where, and how many series got no report, in plain words."""
    count = len(written.paths)
    noun = "report" if count == 1 else "reports"
    where = display_path(written.paths[0].parent) if written.paths else ""
    text = f"Saved {count} DICOM {noun} in {where}." if count else "No DICOM report was written."
    if written.skipped:
        series = "series has" if written.skipped == 1 else "series have"
        text += f" {written.skipped} {series} no report (not DICOM images)."
    return f"{text} For research use only."
