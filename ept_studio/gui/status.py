"""The status bar: the research-use notice (always visible), import progress and a Cancel."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from ept_studio.gui.session import ProjectSession
from ept_studio.services.project import ImportReport

SHORT_NOTICE = "For research use only. Not for clinical diagnosis."


class StatusBar(QStatusBar):
    """Shows what the session is doing; the notice stays on its right edge."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.notice = QLabel(SHORT_NOTICE)
        self.notice.setStyleSheet("QLabel { color: #a33; font-weight: bold; padding: 0 6px; }")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setFormat("Importing %v of %m")
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(session.cancel_import)
        for widget in (self.progress, self.cancel):
            widget.hide()
            self.addWidget(widget)
        self.addPermanentWidget(self.notice)
        session.import_progress.connect(self._on_progress)
        session.import_finished.connect(self._on_finished)
        session.import_failed.connect(self._on_failed)

    @Slot(int, int)
    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.show()
        self.cancel.show()

    @Slot(object)
    def _on_finished(self, report: ImportReport) -> None:
        self._done()
        self.showMessage(
            f"Import done: {len(report.added)} added, {len(report.duplicates)} already there, "
            f"{len(report.skipped)} skipped"
        )

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._done()
        self.showMessage(f"Import failed: {message}")

    def _done(self) -> None:
        self.progress.hide()
        self.cancel.hide()
