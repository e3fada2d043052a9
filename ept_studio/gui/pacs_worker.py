"""The PACS import off the GUI thread, as the file import runs: the same signals, so the session
shows its progress with Cancel and refreshes the gallery when it is done."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Slot

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.workers import ImportWorker
from ept_studio.services.project import (
    DimseServer,
    ImportFinished,
    PacsServer,
    iter_import_from_pacs,
    open_project,
)

logger = logging.getLogger(__name__)


class PacsImportWorker(ImportWorker):
    """Retrieves ``study_uids`` (only ``series_uids`` of them when given) from ``server`` into the
    project at ``folder``, then imports them.

    ``progress`` counts the images retrieved, then the files imported; Cancel stops between
    images (while retrieving, nothing is kept).
    """

    def __init__(
        self,
        folder: Path,
        server: PacsServer | DimseServer,
        study_uids: list[str],
        series_uids: set[str] | None = None,
    ) -> None:
        super().__init__(folder, [])
        self._server = server
        self._study_uids = study_uids
        self._series_uids = series_uids

    @Slot()
    def run(self) -> None:
        try:
            with open_project(self._folder) as project:
                events = iter_import_from_pacs(
                    project,
                    self._server,
                    self._study_uids,
                    series_uids=self._series_uids,
                    cancel=self._is_cancelled,
                )
                for event in events:
                    if isinstance(event, ImportFinished):
                        self.finished.emit(event.report)
                    else:
                        self.progress.emit(event.done, event.total)
        except EptStudioError as err:
            logger.warning("PACS import failed: %s", type(err).__name__)
            self.failed.emit(str(err))
