"""The status bar: the research-use notice (always visible), import and training progress.

Training shows here as well as in the Train tab, so that it can be followed (and cancelled) from
any tab; when it ends, "See results" leads to the Results tab. Nothing in the bar may make the
window wider than a laptop screen: texts are elided rather than widening it.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal, Slot
from PySide6.QtGui import QPainter, QPaintEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QStatusBar,
    QWidget,
)

from ept_studio.common.training_events import RunStarted, StepFinished
from ept_studio.gui.jobs import TRAINING, ProjectJobs
from ept_studio.gui.session import ProjectSession
from ept_studio.services.project import (
    ImportReport,
    ProjectDataReady,
    ProjectTrainingSaved,
    TuningCancelled,
    rough_duration,
)

SHORT_NOTICE = "For research use only. Not for clinical diagnosis."
STOPPING = "Stopping training after the current step…"


class ElidedLabel(QLabel):
    """A one-line label that may shrink below its text's width: the text is elided, never wraps.

    ``text()`` keeps the whole text (shown again when there is room, and as the tooltip).
    """

    def __init__(self, text: str = "", minimum_width: int = 60) -> None:
        super().__init__(text)
        self._minimum_width = minimum_width

    def minimumSizeHint(self) -> QSize:
        return QSize(self._minimum_width, super().minimumSizeHint().height())

    def paintEvent(self, _event: QPaintEvent) -> None:
        painter = QPainter(self)
        rect = self.contentsRect()
        shown = self.fontMetrics().elidedText(
            self.text(), Qt.TextElideMode.ElideRight, rect.width()
        )
        painter.drawText(
            rect, int(Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft), shown
        )
        painter.end()


def rough_eta(seconds: float) -> str:
    """Time left as a person says it: ``about 3 min left``, ``less than a minute left``."""
    if seconds < 60:
        return "less than a minute left"
    return f"{rough_duration(seconds)} left"


def step_text(step: StepFinished) -> str:
    return f"Training: step {step.step} of {step.total_steps}, {rough_eta(step.eta_s)}"


def finished_text(test_images: int) -> str:
    if test_images == 0:
        return "Training finished: mark some images as test (key T) to see how it does"
    noun = "image" if test_images == 1 else "images"
    return f"Training finished: see results on {test_images} test {noun}"


class TrainingIndicator(QWidget):
    """A small progress bar, what training is doing, its Cancel and, at the end, "See results"."""

    see_results = Signal()

    def __init__(self, jobs: ProjectJobs, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.test_images = 0
        self.progress = QProgressBar()
        self.progress.setFixedWidth(90)
        self.progress.setTextVisible(False)
        self.text = ElidedLabel("", minimum_width=80)
        self.cancel = QPushButton("Cancel")
        self.cancel.setToolTip("Stop training after the current step; nothing of it is kept")
        self.results = QPushButton("See results")
        self.results.setToolTip("Open the Results tab")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for widget in (self.progress, self.text, self.cancel, self.results):
            layout.addWidget(widget)
        self.cancel.clicked.connect(self.stop)
        self.results.clicked.connect(self._on_see_results)
        jobs.task_event.connect(self._on_event)
        jobs.busy_changed.connect(self._on_busy)
        self.hide()

    @property
    def running(self) -> bool:
        return self.jobs.current == TRAINING

    @Slot()
    def stop(self) -> None:
        """Cancel training: it ends at the next step, which may take seconds; say so at once."""
        if self.running:
            self.jobs.cancel()
            self.cancel.setEnabled(False)
            self.text.setText(STOPPING)

    @Slot()
    def _on_see_results(self) -> None:
        self.hide()
        self.see_results.emit()

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        if not busy:  # ended, or stopped with the project: ``finish`` tells how, if it can
            self.progress.hide()
            self.cancel.hide()
            self.setVisible(not self.results.isHidden())
        elif self.running:
            self.test_images = 0
            self.progress.setRange(0, 0)
            self.text.setText("Training: loading the images and the backbone…")
            self.cancel.setEnabled(True)
            self.cancel.show()
            self.progress.show()
            self.results.hide()
            self.show()

    @Slot(str, object)
    def _on_event(self, name: str, item: object) -> None:
        if name != TRAINING:
            return
        if isinstance(item, ProjectDataReady):
            self.test_images = sum(item.test_counts.values())
        elif isinstance(item, RunStarted):
            self.progress.setRange(0, max(item.total_steps, 1))
            self.progress.setValue(0)
        elif isinstance(item, StepFinished) and self.cancel.isEnabled():
            self.progress.setRange(0, max(item.total_steps, 1))
            self.progress.setValue(item.step)
            self.text.setText(step_text(item))

    def finish(self, last: object) -> str:
        """Show how training ended; the message for the status bar."""
        self.progress.hide()
        self.cancel.hide()
        if isinstance(last, ProjectTrainingSaved):
            self.text.setText("Training finished")
            self.results.show()
            self.show()
            return finished_text(self.test_images)
        self.hide()
        if isinstance(last, TuningCancelled):
            return f"Training cancelled after {last.steps_done} steps; nothing was kept"
        return "Training ended"


class StatusBar(QStatusBar):
    """Shows what the session and its jobs are doing; the notice stays on its right edge."""

    def __init__(
        self,
        session: ProjectSession,
        jobs: ProjectJobs | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.notice = ElidedLabel(SHORT_NOTICE, minimum_width=120)
        self.notice.setToolTip(SHORT_NOTICE)
        self.notice.setStyleSheet("QLabel { color: #a33; font-weight: bold; padding: 0 6px; }")
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(160)
        self.progress.setFormat("Importing %v of %m")
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(session.cancel_import)
        for widget in (self.progress, self.cancel):
            widget.hide()
            self.addWidget(widget)
        self.training: TrainingIndicator | None = None
        if jobs is not None:
            self.training = TrainingIndicator(jobs)
            self.addPermanentWidget(self.training)
            jobs.finished.connect(self._on_job_finished)
            jobs.failed.connect(self._on_job_failed)
        self.addPermanentWidget(self.notice)
        session.import_progress.connect(self._on_progress)
        session.import_finished.connect(self._on_finished)
        session.import_failed.connect(self._on_failed)
        session.project_changed.connect(self._on_project_changed)

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

    @Slot()
    def _on_project_changed(self) -> None:
        if self.training is not None and not self.training.running:
            self.training.results.hide()
            self.training.hide()

    @Slot(str, object)
    def _on_job_finished(self, name: str, last: object) -> None:
        if name == TRAINING and self.training is not None:
            self.showMessage(self.training.finish(last))

    @Slot(str, str)
    def _on_job_failed(self, name: str, message: str) -> None:
        if name == TRAINING and self.training is not None:
            self.training.finish(None)
            self.showMessage(f"Training failed: {message}")
