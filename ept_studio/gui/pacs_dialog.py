"""Import from a PACS: choose or add a server, search its studies, pick some and import them.

The search runs off the GUI thread (a PACS may take its time to answer); the import runs as the
file import does (:class:`~ept_studio.gui.pacs_worker.PacsImportWorker` through the session), with
its progress and Cancel here and in the status bar, and the gallery refreshes when it is done.
The patient's name is shown in the results (to pick the right study) and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from PySide6.QtCore import Qt, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.pacs_results import PacsResultsTable, PacsRow
from ept_studio.gui.pacs_secret import ask_pacs_secret, server_with_secret
from ept_studio.gui.pacs_server_dialog import PacsServerDialog
from ept_studio.gui.pacs_worker import PacsImportWorker
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.tasks import TaskRunner
from ept_studio.services.project import (
    CredentialStore,
    DimseServer,
    ImportReport,
    PacsEntry,
    PacsServer,
    load_pacs_entries,
    save_pacs_entries,
    search_pacs,
    search_pacs_series,
)

MODALITIES = ("", "CT", "MR", "US", "CR", "DX", "MG", "XA", "NM", "PT", "OT")
SEARCH = "PACS search"
STOP_WAIT_MS = 120_000


class PacsDialog(QDialog):
    """Servers, search form, results and Import, for the session's open project."""

    def __init__(
        self,
        session: ProjectSession,
        credentials: CredentialStore | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Import from a PACS")
        self.session = session
        self.credentials = credentials or CredentialStore()
        self.entries: list[PacsEntry] = []
        self.searches = TaskRunner(self)
        layout = QVBoxLayout(self)
        layout.addLayout(self._server_row())
        layout.addLayout(self._search_form())
        self.table = PacsResultsTable()
        self.table.itemSelectionChanged.connect(self._update_buttons)
        layout.addWidget(self.table, 1)
        layout.addLayout(self._import_row())
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.message)
        self.searches.finished.connect(self._on_search_done)
        self.searches.failed.connect(self._on_search_failed)
        session.import_progress.connect(self._on_progress)
        session.import_finished.connect(self._on_import_finished)
        session.import_failed.connect(self._on_import_failed)
        self.resize(820, 560)
        self.reload_servers()

    # -- building -----------------------------------------------------------------------------

    def _server_row(self) -> QHBoxLayout:
        self.server = QComboBox()
        self.server.setMinimumWidth(260)
        self.server.setToolTip("The picture archive (PACS) to search; Add… for a new one")
        self.add_button = QPushButton("Add…")
        self.edit_button = QPushButton("Edit…")
        self.add_button.clicked.connect(self.ask_add_server)
        self.edit_button.clicked.connect(self.ask_edit_server)
        self.where = QLabel()
        self.where.setStyleSheet("QLabel { color: #666; }")
        row = QHBoxLayout()
        row.addWidget(QLabel("Archive:"))
        row.addWidget(self.server)
        row.addWidget(self.add_button)
        row.addWidget(self.edit_button)
        row.addWidget(self.where, 1)
        self.server.currentIndexChanged.connect(self._on_server_chosen)
        return row

    def _search_form(self) -> QHBoxLayout:
        self.patient = QLineEdit()
        self.patient.setPlaceholderText("part of the name")
        self.patient_id = QLineEdit()
        self.patient_id.setPlaceholderText("exactly")
        self.dates = QLineEdit()
        self.dates.setPlaceholderText("YYYYMMDD or YYYYMMDD-YYYYMMDD")
        self.dates.setToolTip("One day, or a range; leave an end open, e.g. 20240101-")
        self.modality = QComboBox()
        for code in MODALITIES:
            self.modality.addItem(code or "any", code)
        self.modality.setToolTip("The DICOM modality code of a series in the study")
        self.description = QLineEdit()
        self.description.setPlaceholderText("part of the study description")
        self.by_series = QCheckBox("List series")
        self.by_series.setToolTip(
            "One row per series (a set of images of one kind within a study), to import only "
            "some of a study"
        )
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.search_button.clicked.connect(self.search)
        left, right = QFormLayout(), QFormLayout()
        left.addRow("Patient name:", self.patient)
        left.addRow("Patient ID:", self.patient_id)
        left.addRow("Study date:", self.dates)
        right.addRow("Modality:", self.modality)
        right.addRow("Description:", self.description)
        buttons = QHBoxLayout()
        buttons.addWidget(self.by_series)
        buttons.addWidget(self.search_button, 1)
        right.addRow("", buttons)
        row = QHBoxLayout()
        row.addLayout(left, 1)
        row.addLayout(right, 1)
        return row

    def _import_row(self) -> QHBoxLayout:
        self.import_button = QPushButton("Import")
        self.import_button.setToolTip(
            "Copies the studies' images into the project's own folder (the PACS is only read), "
            "then adds them as an import from files does"
        )
        self.import_button.clicked.connect(self.import_selected)
        self.progress = QProgressBar()
        self.progress.setFormat("%v of %m")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.session.cancel_import)
        for widget in (self.progress, self.cancel_button):
            widget.hide()
        row = QHBoxLayout()
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_button)
        row.addStretch()
        row.addWidget(self.import_button)
        return row

    # -- servers ------------------------------------------------------------------------------

    def reload_servers(self, chosen: int = 0) -> None:
        """Read the saved servers again and choose the one at ``chosen``."""
        try:
            self.entries = load_pacs_entries()
        except EptStudioError as err:
            self.entries = []
            self._tell(str(err), error=True)
        self.server.blockSignals(True)
        self.server.clear()
        for entry in self.entries:
            self.server.addItem(entry.name)
        self.server.blockSignals(False)
        if self.entries:
            self.server.setCurrentIndex(min(chosen, len(self.entries) - 1))
        else:
            self._tell("Add the PACS to search: Add…")
        self._on_server_chosen()

    def current_entry(self) -> PacsEntry | None:
        index = self.server.currentIndex()
        return self.entries[index] if 0 <= index < len(self.entries) else None

    @Slot()
    def ask_add_server(self) -> None:
        self._edit_server(PacsServerDialog(parent=self), None)

    @Slot()
    def ask_edit_server(self) -> None:
        entry = self.current_entry()
        if entry is not None:
            self._edit_server(PacsServerDialog(entry, parent=self), self.server.currentIndex())

    def _edit_server(self, dialog: PacsServerDialog, index: int | None) -> None:
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        self.save_server(dialog.entry(), dialog.typed_secret(), index)

    def save_server(self, entry: PacsEntry, secret: str | None, index: int | None = None) -> None:
        """Add ``entry`` (or replace the one at ``index``), its secret to the credential store."""
        entries = list(self.entries)
        if index is None:
            entries.append(entry)
            index = len(entries) - 1
        else:
            self.credentials.forget(entries[index])
            entries[index] = entry
        try:
            save_pacs_entries(entries)
        except EptStudioError as err:
            self._tell(str(err), error=True)
            return
        if secret is not None and entry.needs_secret:
            self.credentials.put(entry, secret)
        self.reload_servers(index)
        self._tell(f"Saved “{entry.name}”. Passwords are kept {self.credentials.kept_where}.")

    @Slot()
    def _on_server_chosen(self) -> None:
        entry = self.current_entry()
        self.where.setText(entry.where if entry else "")
        self._update_buttons()

    def _server_with_secret(self, entry: PacsEntry) -> PacsServer | DimseServer | None:
        """The server to use, asking for its password or token once when none is kept."""
        try:
            return server_with_secret(entry, self.credentials, lambda e: ask_pacs_secret(self, e))
        except EptStudioError as err:
            self._tell(str(err), error=True)
            return None

    # -- search -------------------------------------------------------------------------------

    @Slot()
    def search(self) -> bool:
        """Search the chosen PACS in the background; False when nothing was started."""
        entry = self.current_entry()
        server = self._server_with_secret(entry) if entry else None
        if entry is None or server is None:
            return False
        filters = {
            "patient": self.patient.text().strip() or None,
            "patient_id": self.patient_id.text().strip() or None,
            "date_range": self.dates.text().strip() or None,
            "modality": self.modality.currentData() or None,
            "description": self.description.text().strip() or None,
        }

        by_series = self.by_series.isChecked()

        def job(cancel: Callable[[], bool]) -> Iterator[object]:
            rows = [PacsRow(study) for study in search_pacs(server, **filters)]
            if by_series:
                rows = [
                    PacsRow(row.study, series)
                    for row in rows
                    if not cancel()
                    for series in search_pacs_series(server, row.study.study_uid)
                ]
            yield rows

        if not self.searches.start(SEARCH, job):
            return False
        self._tell(f"Searching {entry.name}…")
        self._update_buttons()
        return True

    @Slot(str, object)
    def _on_search_done(self, _name: str, rows: object) -> None:
        self.show_rows(rows if isinstance(rows, list) else [])

    @Slot(str, str)
    def _on_search_failed(self, _name: str, message: str) -> None:
        self._forget_refused(message)
        self._tell(f"Search failed: {message}", error=True)
        self._update_buttons()

    def show_rows(self, rows: list[PacsRow]) -> None:
        """Show what the search found."""
        self.table.show_rows(rows)
        if any(row.series for row in rows):
            noun = "series"
        else:
            noun = "study" if len(rows) == 1 else "studies"
        found = f"{len(rows)} {noun} found"
        self._tell(f"{found}: pick the ones to import." if rows else f"{found}.")
        self._update_buttons()

    # -- import -------------------------------------------------------------------------------

    @Slot()
    def import_selected(self) -> bool:
        """Import the chosen studies in the background; False when nothing was started."""
        entry, chosen = self.current_entry(), self.table.choice()
        folder = self.session.folder
        if entry is None or not chosen.study_uids or folder is None:
            return False
        server = self._server_with_secret(entry)
        if server is None:
            return False
        worker = PacsImportWorker(folder, server, chosen.study_uids, chosen.series_uids)
        if not self.session.start_import_worker(worker):
            self._tell("An import is already running; import again when it is done.", error=True)
            return False
        self._tell(f"Importing {len(self.table.picked())} of the rows found…")
        self._update_buttons()
        return True

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.show()
        self.cancel_button.show()

    @Slot(object)
    def _on_import_finished(self, report: ImportReport) -> None:
        self._import_done()
        self._tell(
            f"Import done: {len(report.added)} images added, {len(report.duplicates)} already "
            f"there, {len(report.skipped)} skipped."
        )

    @Slot(str)
    def _on_import_failed(self, message: str) -> None:
        self._import_done()
        self._forget_refused(message)
        self._tell(f"Import failed, nothing was added: {message}", error=True)

    def _import_done(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self._update_buttons()

    # -- state --------------------------------------------------------------------------------

    def _forget_refused(self, message: str) -> None:
        """A refused password or token is asked for again next time."""
        entry = self.current_entry()
        if entry is not None and "refused the credentials" in message:
            self.credentials.forget(entry)

    @Slot()
    def _update_buttons(self) -> None:
        has_server = self.current_entry() is not None
        self.edit_button.setEnabled(has_server)
        self.search_button.setEnabled(has_server and not self.searches.busy)
        can_import = bool(self.table.picked()) and self.session.folder is not None
        self.import_button.setEnabled(can_import and not self.session.importing)

    def _tell(self, text: str, *, error: bool = False) -> None:
        self.message.setStyleSheet("QLabel { color: #a33; }" if error else "")
        self.message.setText(text)

    def stop(self) -> None:
        """Wait for a search still running (closing the window): it ends within its timeout."""
        self.searches.wait(STOP_WAIT_MS)

    def done(self, result: int) -> None:
        self.stop()
        super().done(result)
