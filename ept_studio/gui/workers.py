"""The import off the GUI thread: a worker moved to a :class:`WorkerThread` runs the services generator.

The worker opens its own :class:`Project` (a project's SQLite connection belongs to the thread that
opened it) and relays each event through signals; the receivers are ``@Slot`` methods of objects
living in the GUI thread, so Qt queues the calls onto that thread.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Signal, Slot

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.tasks import ReportingWorker
from ept_studio.services.project import (
    ImportFinished,
    ImportProgress,
    iter_import,
    open_project,
)

logger = logging.getLogger(__name__)


class ImportWorker(ReportingWorker):
    """Imports ``paths`` into the project at ``folder``; cancel between files.

    With ``folders_as_classes`` each sub-folder of a given folder names a class: it is created if
    new, and the images under it are labelled with it.
    """

    progress = Signal(int, int)
    """Files done, files in all."""
    finished = Signal(object)
    """The :class:`ImportReport` (also after a cancel: what was added so far)."""
    failed = Signal(str)
    """A message for the user: the import could not run at all."""

    def __init__(
        self, folder: Path, paths: list[Path], *, folders_as_classes: bool = False
    ) -> None:
        super().__init__()
        self._folder = folder
        self._paths = paths
        self._folders_as_classes = folders_as_classes
        self._cancelled = False

    def cancel(self) -> None:
        """Ask the import to stop after the current file (safe from any thread)."""
        self._cancelled = True

    def _is_cancelled(self) -> bool:
        return self._cancelled

    @Slot()
    def run(self) -> None:
        try:
            with open_project(self._folder) as project:
                events = iter_import(
                    project,
                    self._paths,
                    folders_as_classes=self._folders_as_classes,
                    cancel=self._is_cancelled,
                )
                for event in events:
                    if isinstance(event, ImportProgress):
                        self.progress.emit(event.done, event.total)
                    elif isinstance(event, ImportFinished):
                        self.finished.emit(event.report)
        except EptStudioError as err:
            logger.warning("import failed: %s", type(err).__name__)
            self.failed.emit(str(err))
