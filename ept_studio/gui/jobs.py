"""The open project's long actions (train, predict, export) run one at a time off the GUI thread.

:class:`ProjectJobs` binds the services generators to the session's project folder and runs them in
a :class:`~ept_studio.gui.tasks.TaskRunner`. Panels connect to its signals and render the events;
they never touch the worker thread themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from PySide6.QtCore import QObject, Signal, Slot

from ept_studio.gui.session import ProjectSession
from ept_studio.gui.tasks import Job, TaskRunner
from ept_studio.services.model import TrainingOptions
from ept_studio.services.project import tune_project

TRAINING = "Training"


class ProjectJobs(QObject):
    """Starts, cancels and reports the project's background actions."""

    task_event = Signal(str, object)
    """Task name, event."""
    finished = Signal(str, object)
    """Task name, last event."""
    failed = Signal(str, str)
    """Task name, message for the user."""
    busy_changed = Signal(bool)
    runs_changed = Signal()

    def __init__(self, session: ProjectSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.runner = TaskRunner(self)
        self.backbone: Any = None
        """A loaded backbone to use instead of the named one (tests pass a tiny one)."""
        self.backbone_name: str | None = None
        """The backbone the next training loads (None: the offline default)."""
        self.runner.task_event.connect(self._on_event)
        self.runner.finished.connect(self._on_finished)
        self.runner.failed.connect(self._on_failed)
        session.project_changed.connect(self._on_project_changed)

    @property
    def busy(self) -> bool:
        return self.runner.busy

    @property
    def current(self) -> str | None:
        return self.runner.current

    def start_training(self, options: TrainingOptions) -> bool:
        """Train on the project's labels; False when no project is open or a task runs."""
        folder = self.session.folder
        if folder is None:
            return False
        backbone, name = self.backbone, self.backbone_name

        def job(cancel: Callable[[], bool]) -> Iterator[object]:
            return tune_project(
                folder, options, backbone=backbone, backbone_name=name, cancel=cancel
            )

        return self.start(TRAINING, job)

    def start(self, name: str, job: Job) -> bool:
        """Run ``job`` (any services generator taking the cancel check) as task ``name``."""
        if self.session.folder is None or not self.runner.start(name, job):
            return False
        self.busy_changed.emit(True)
        return True

    def cancel(self) -> None:
        """Ask the running task to stop (training stops before its next step)."""
        self.runner.cancel()

    def stop(self, timeout_ms: int = 30_000) -> bool:
        """Cancel and wait (closing the window or the project); True when nothing runs."""
        was_busy = self.runner.busy
        done = self.runner.wait(timeout_ms)
        if was_busy and done:
            self.busy_changed.emit(False)
            self.runs_changed.emit()
        return done

    @Slot(object)
    def _on_event(self, item: object) -> None:
        self.task_event.emit(self.runner.current or "", item)

    @Slot(str, object)
    def _on_finished(self, name: str, last: object) -> None:
        self.busy_changed.emit(False)
        self.runs_changed.emit()
        self.finished.emit(name, last)

    @Slot(str, str)
    def _on_failed(self, name: str, message: str) -> None:
        self.busy_changed.emit(False)
        self.runs_changed.emit()
        self.failed.emit(name, message)

    @Slot()
    def _on_project_changed(self) -> None:
        self.stop()
