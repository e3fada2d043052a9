"""Background tasks: a services generator run in a QThread, its events relayed as signals.

A :class:`TaskWorker` wraps ``job(cancel) -> Iterator[object]``: every event it yields is emitted as
``task_event``, the last one again as ``finished``; an :class:`~ept_studio.common.errors.EptStudioError` becomes
``failed`` with its message, any other exception ``failed`` with a short generic message (the
details go to the log, never a dialog full of traceback). The receivers live in the GUI thread, so
Qt queues each call onto it and the window stays responsive.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ept_studio.common.errors import EptStudioError

logger = logging.getLogger(__name__)

Job = Callable[[Callable[[], bool]], Iterator[object]]
"""A services generator bound to its arguments; it gets the cancel check."""


class ReportingWorker(QObject):
    """A worker that ends by reporting back once: ``finished`` (a result) or ``failed`` (a message)."""

    finished = Signal(object)
    failed = Signal(str)

    # Not a @Slot here: with a slot of the same name on the base, PySide6 ran a subclass's
    # ``run`` in the thread that connected it (the GUI thread), not the worker's own thread.
    def run(self) -> None:
        raise NotImplementedError

    def cancel(self) -> None:
        raise NotImplementedError


W = TypeVar("W", bound=ReportingWorker)


class WorkerThread(QThread, Generic[W]):
    """A QThread that owns one worker: starts its ``run`` and quits when it reports back."""

    def __init__(self, worker: W, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        worker.moveToThread(self)
        self.started.connect(worker.run)
        worker.finished.connect(self.quit)
        worker.failed.connect(self.quit)


class TaskWorker(ReportingWorker):
    """Runs one job in the thread it was moved to; ``finished`` carries its last event (None when
    the job yielded nothing)."""

    task_event = Signal(object)

    def __init__(self, name: str, job: Job) -> None:
        super().__init__()
        self.name = name
        self._job = job
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop at its next cancel check (safe from any thread)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @Slot()
    def run(self) -> None:
        last: object = None
        try:
            for item in self._job(self._cancel.is_set):
                last = item
                self.task_event.emit(item)
        except EptStudioError as err:
            logger.warning("%s failed: %s", self.name, type(err).__name__)
            self.failed.emit(str(err))
            return
        except Exception as err:  # a bug: keep the app alive, tell the user, log the type
            logger.exception("%s failed unexpectedly", self.name)
            self.failed.emit(
                f"{self.name} stopped because of an internal error ({type(err).__name__}). "
                "Your labels are saved; the details are in the log."
            )
            return
        self.finished.emit(last)


class TaskRunner(QObject):
    """At most one background task at a time, with its name; signals relay the worker's."""

    task_event = Signal(object)
    finished = Signal(str, object)
    """Task name, last event."""
    failed = Signal(str, str)
    """Task name, message."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: WorkerThread[TaskWorker] | None = None

    @property
    def busy(self) -> bool:
        return self._thread is not None

    @property
    def current(self) -> str | None:
        return self._thread.worker.name if self._thread is not None else None

    def start(self, name: str, job: Job) -> bool:
        """Start ``job`` in a new thread; False (nothing started) while another task runs."""
        if self._thread is not None:
            return False
        worker = TaskWorker(name, job)
        worker.task_event.connect(self._on_event)
        worker.finished.connect(self._on_finished)
        worker.failed.connect(self._on_failed)
        self._thread = WorkerThread(worker, self)
        self._thread.start()
        return True

    def cancel(self) -> None:
        if self._thread is not None:
            self._thread.worker.cancel()

    def wait(self, timeout_ms: int = 30_000) -> bool:
        """Cancel and wait for the running task; True when none is left running."""
        if self._thread is None:
            return True
        self.cancel()
        # quit() now: the worker's own "finished -> quit" is queued to this (blocked) thread. The
        # event loop leaves once the running job returns, which the cancel makes happen soon.
        self._thread.quit()
        done = self._thread.wait(timeout_ms)
        if done:
            self._join()
        return done

    def _is_current(self) -> bool:
        """Whether the signal being handled comes from the running worker (not a joined one)."""
        return self._thread is not None and self.sender() is self._thread.worker

    @Slot(object)
    def _on_event(self, item: object) -> None:
        if self._is_current():
            self.task_event.emit(item)

    @Slot(object)
    def _on_finished(self, last: object) -> None:
        if self._is_current():
            self.finished.emit(self._join(), last)

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        if self._is_current():
            self.failed.emit(self._join(), message)

    def _join(self) -> str:
        thread, self._thread = self._thread, None
        if thread is None:
            return ""
        thread.quit()
        thread.wait(10_000)
        thread.worker.deleteLater()
        thread.deleteLater()
        return thread.worker.name
