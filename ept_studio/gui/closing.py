"""Closing the window while a task runs: ask, cancel, say so at once, close once it has stopped.

Training stops only between steps, and a step can take seconds. Waiting for it inside
``closeEvent`` froze the window without a word. Here the status bar says at once what is happening,
the cursor turns busy and the window's controls and menus are disabled (nothing new can start);
then a local event loop keeps the window painting while a timer checks for the task's end.
"""

from __future__ import annotations

from PySide6.QtCore import QEventLoop, QObject, Qt, QTimer, Slot
from PySide6.QtWidgets import QApplication, QMainWindow, QMessageBox

from ept_studio.gui.jobs import TRAINING, ProjectJobs
from ept_studio.gui.status import STOPPING

POLL_MS = 100
GIVE_UP_MS = 120_000
"""Past this the window closes anyway (the task is then waited for a last time, then left)."""


class ShutdownWhileBusy(QObject):
    """Decides whether the window may close; while a task runs, asks, stops it, then says yes."""

    def __init__(self, window: QMainWindow, jobs: ProjectJobs) -> None:
        super().__init__(window)
        self.main_window = window
        self.jobs = jobs
        self.stopping = False
        self._loop: QEventLoop | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._on_poll)

    def may_close(self) -> bool:
        """True when nothing runs, or once the task the user agreed to cancel has stopped."""
        if not self.jobs.busy:
            return True
        if self.stopping or not self.confirm():
            return False
        self.begin_stop()
        self.wait_until_stopped()
        return True

    def confirm(self) -> bool:
        """Ask before closing while a task runs (it is cancelled; labels are already saved)."""
        answer = QMessageBox.question(
            self.main_window,
            "EPT Studio",
            f"{self.jobs.current} is still running. Cancel it and close?\n"
            "Your labels are already saved.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def begin_stop(self) -> None:
        """Cancel the task and show at once that the window is waiting for it."""
        self.stopping = True
        current = self.jobs.current
        message = STOPPING if current == TRAINING else f"Stopping {current}…"
        self.main_window.statusBar().showMessage(
            f"{message} The window closes when it has stopped."
        )
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        for part in (self.main_window.centralWidget(), self.main_window.menuBar()):
            if part is not None:
                part.setEnabled(False)
        self.jobs.cancel()

    def wait_until_stopped(self) -> None:
        """Run the event loop (the window repaints) until the task has ended."""
        self._loop = QEventLoop(self)
        QTimer.singleShot(GIVE_UP_MS, self._loop, self._loop.quit)
        self._timer.start()
        self._loop.exec()
        self._timer.stop()
        self._loop = None
        QApplication.restoreOverrideCursor()

    @Slot()
    def _on_poll(self) -> None:
        if not self.jobs.busy and self._loop is not None:
            self._loop.quit()
