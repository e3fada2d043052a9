"""An image file dropped on the viewer: shown at once, and tried on the model in the background.

The file is only read: it is not imported, nothing is cached for it and nothing is written next to
it. The model is the one the Results tab has chosen when the main window says so (else the newest
trained model); running it is a background job of the project's :class:`ProjectJobs`, under its
own name, so the Results tab's own preview is left alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Signal, Slot
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QWidget

from ept_studio.gui.drops import dropped_paths
from ept_studio.gui.jobs import ProjectJobs
from ept_studio.services.project import ImagePreview, iter_preview, newest_model_run

VIEWER_PREVIEW = "Viewer preview"

ModelRunSource = Callable[[], "int | None"]
"""Gives the model (training run) to try a dropped file on; None: the newest trained one."""


def dropped_file(paths: list[Path]) -> Path | None:
    """The first file of a drop (a folder is not an image to try)."""
    return next((path for path in paths if path.is_file()), None)


class DroppedFilePreview(QObject):
    """Takes file drops on ``owner`` (``dropped``) and runs the model on a file (``ready``)."""

    dropped = Signal(Path)
    ready = Signal(object)
    """The :class:`ImagePreview` of the file last started."""
    status = Signal(str)
    """What to say in place of the model score while it runs, or why there is none."""

    def __init__(
        self, owner: QWidget, jobs: ProjectJobs, model_run: ModelRunSource | None = None
    ) -> None:
        super().__init__(owner)
        owner.setAcceptDrops(True)
        owner.installEventFilter(self)
        self.jobs = jobs
        self.model_run = model_run
        self.path: Path | None = None
        """The file being tried (or last tried)."""
        jobs.finished.connect(self._on_finished)
        jobs.failed.connect(self._on_failed)

    def start(self, path: Path) -> bool:
        """Try the model on ``path`` in the background; False (and a ``status``) when it cannot."""
        folder, run_id = self.jobs.session.folder, self._model_run()
        if folder is None or run_id is None:
            self.status.emit("Train a model to see its model score for this file")
            return False
        backbone = self.jobs.backbone

        def job(cancel: Callable[[], bool]) -> Iterator[object]:
            return iter_preview(folder, run_id, path, backbone, cancel=cancel)

        if not self.jobs.start(VIEWER_PREVIEW, job):
            busy = self.jobs.current or "Another task"
            self.status.emit(f"{busy} is running: drop the file again after it")
            return False
        self.path = path
        self.status.emit(f"Trying the model of run {run_id}…")
        return True

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Drags of files onto the owner (or, passed up, onto its children)."""
        if not isinstance(event, QDropEvent):  # drag enter and move events are drop events too
            return False
        path = dropped_file(dropped_paths(event.mimeData()))
        if path is None:
            event.ignore()
            return True
        event.acceptProposedAction()
        if event.type() == QEvent.Type.Drop:
            self.dropped.emit(path)
        return True

    def _model_run(self) -> int | None:
        if self.model_run is not None:
            chosen = self.model_run()
            if chosen is not None:
                return chosen
        project = self.jobs.session.project
        return newest_model_run(project) if project is not None else None

    @Slot(str, object)
    def _on_finished(self, name: str, last: object) -> None:
        if name == VIEWER_PREVIEW and isinstance(last, ImagePreview):
            self.ready.emit(last)

    @Slot(str, str)
    def _on_failed(self, name: str, message: str) -> None:
        if name == VIEWER_PREVIEW:
            self.status.emit(f"The model could not be tried on this file: {message}")
