"""The Results tab: pick a tuned model, predict with it, look at its results, export it.

Predicting and the ONNX export run in the background (one task at a time, with Cancel); the prompt
file, the predictions CSV and the model card are small and written at once. Each ``*_to`` method
takes the destination, so tests and scripts skip the file dialog. The results views score only
images the model was not trained on, except the one named for training images; the model card
always describes the chosen model (its training run), whatever view is shown.

Dropping an image file on the tab tries the chosen model on it (a background job): the preview
shows its model scores and model attention; the file is not added to the project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.drops import dropped_paths
from ept_studio.gui.export_dialog import (
    STANDARD,
    OnnxExportDialog,
    exported_text,
    refusal_box,
    refused_text,
    standard_destination,
)
from ept_studio.gui.hints import DEMO_TOOLTIP, demo_results_note, show_note
from ept_studio.gui.jobs import ProjectJobs
from ept_studio.gui.results_preview import PreviewBox
from ept_studio.gui.results_view import ResultsView
from ept_studio.gui.series_results import SeriesResultsView
from ept_studio.services.model import BatchPredicted, InferenceStarted, StageStarted
from ept_studio.services.project import (
    ExportCancelled,
    OnnxExportResult,
    ProjectPredicted,
    ResultsChoice,
    ResultsScope,
    SmallerModelRefused,
    TrainedRun,
    demo_info,
    export_predictions_csv,
    export_prompt_file,
    export_run_onnx,
    open_project,
    predict_with_run,
    readme_path,
    result_runs,
    run_results,
    trained_runs,
    write_model_card,
)

PREDICTION = "Prediction"
ONNX_EXPORT = "ONNX export"


class ResultsPanel(QWidget):
    """Model and results pickers, the actions, a progress bar and the results view."""

    predictions_changed = Signal(int)
    """An inference run (its id) stored new predictions: thumbnails show them."""

    def __init__(
        self,
        jobs: ProjectJobs,
        selected_images: Callable[[], list[int]],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.selected_images = selected_images
        self.model_runs: list[TrainedRun] = []
        self.result_choices: list[ResultsChoice] = []
        self._stale = True
        self.onnx_destination: Path | None = None
        """Where the last ONNX export was asked to go (the standard model is offered there)."""
        self.refusal: QMessageBox | None = None
        self.model = QComboBox()
        self.shown = QComboBox()
        pickers = QFormLayout()
        pickers.addRow("Model", self.model)
        pickers.addRow("Results of", self.shown)
        self.predict_all = QPushButton("Predict all images")
        self.predict_selected = QPushButton("Predict selected")
        self.cancel_button = QPushButton("Cancel")
        self.export_prompt = QPushButton("Export prompt file…")
        self.export_onnx = QPushButton("Export ONNX…")
        self.export_csv = QPushButton("Predictions CSV…")
        self.export_csv.setToolTip(
            "One row per image: its number, content hash, label, whether the model was trained "
            "on it, and the model scores. No file name or path."
        )
        self.export_csv_paths = QPushButton("Predictions CSV with file paths…")
        self.export_csv_paths.setToolTip(
            "Adds each file's path relative to the folder of your sources. File names can carry "
            "patient names: share this file only where that is allowed."
        )
        self.model_card = QPushButton("Model card…")
        self.model_card.setToolTip(
            "Describes the chosen model (its training run) and its test results; predictions "
            "shown here are added only on images it was not trained on."
        )
        actions = QGridLayout()
        buttons = [self.predict_all, self.predict_selected, self.cancel_button]
        buttons += [self.export_prompt, self.export_onnx, self.export_csv]
        buttons += [self.export_csv_paths, self.model_card]
        for k, button in enumerate(buttons):
            actions.addWidget(button, k // 2, k % 2)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.hide()  # shown from the first prediction or export on
        self.state = QLabel("")
        self.state.setWordWrap(True)
        self.view = ResultsView()
        self.series = SeriesResultsView()  # double-click: MainWindow opens the slice
        self.series.hide()  # shown while the shown results have a series of slices
        self.preview = PreviewBox(jobs)
        layout = QVBoxLayout(self)
        layout.addLayout(pickers)
        layout.addLayout(actions)
        layout.addWidget(self.progress)
        layout.addWidget(self.state)
        layout.addWidget(self.preview)
        layout.addWidget(self.series)
        layout.addWidget(self.view, 1)
        self.setAcceptDrops(True)
        self.model.currentIndexChanged.connect(self._on_model)
        self.shown.currentIndexChanged.connect(self._on_shown)
        self.predict_all.clicked.connect(lambda: self.predict(None))
        self.predict_selected.clicked.connect(self._predict_selected)
        self.cancel_button.clicked.connect(jobs.cancel)
        self.export_prompt.clicked.connect(self._ask_prompt)
        self.export_onnx.clicked.connect(self._ask_onnx)
        self.export_csv.clicked.connect(self._ask_csv)
        self.export_csv_paths.clicked.connect(self._ask_csv_with_paths)
        self.model_card.clicked.connect(self._ask_card)
        jobs.task_event.connect(self._on_event)
        jobs.finished.connect(self._on_finished)
        jobs.failed.connect(self._on_failed)
        jobs.busy_changed.connect(self._on_busy)
        jobs.runs_changed.connect(self.refresh)
        jobs.session.project_changed.connect(self.refresh)
        self.refresh()

    # -- pickers ------------------------------------------------------------------------------

    @property
    def model_run(self) -> int | None:
        index = self.model.currentIndex()
        return self.model_runs[index].run_id if 0 <= index < len(self.model_runs) else None

    @property
    def shown_choice(self) -> ResultsChoice | None:
        index = self.shown.currentIndex()
        return self.result_choices[index] if 0 <= index < len(self.result_choices) else None

    @property
    def shown_run(self) -> int | None:
        choice = self.shown_choice
        return choice.run_id if choice is not None else None

    @property
    def shown_scope(self) -> ResultsScope:
        """Which images the shown view scores (test images unless the training view is chosen)."""
        choice = self.shown_choice
        return choice.scope if choice is not None else ResultsScope.TEST

    @Slot()
    def refresh(self) -> None:
        """Re-read the runs (keeps the chosen model when it is still there)."""
        keep = self.model_run
        folder = self.jobs.session.folder
        self.model_runs = []
        if folder is not None:
            with open_project(folder) as project:
                self.model_runs = trained_runs(project)
        self.model.blockSignals(True)
        self.model.clear()
        for index, run in enumerate(self.model_runs):
            self.model.addItem(run.label, run.run_id)
            self.model.setItemData(index, run.tooltip, Qt.ItemDataRole.ToolTipRole)
        ids = [run.run_id for run in self.model_runs]
        self.model.setCurrentIndex(ids.index(keep) if keep in ids else (0 if ids else -1))
        self.model.blockSignals(False)
        self._show_demo_note()
        self._on_model()
        self._on_busy(self.jobs.busy)

    def _show_demo_note(self) -> None:
        """Beside the score: why the demo's number means little (nothing for other projects)."""
        project = self.jobs.session.project
        info = demo_info(project) if project is not None else None
        if info is None:
            show_note(self.view.note, "")
        else:
            show_note(self.view.note, demo_results_note(info), DEMO_TOOLTIP)

    @Slot()
    def _on_model(self) -> None:
        """List the model's results views; the shown one stays unless a new run appeared (then
        the newest predictions are shown)."""
        folder, run_id = self.jobs.session.folder, self.model_run
        before, kept = list(self.result_choices), self.shown.currentIndex()
        self.result_choices = []
        if folder is not None and run_id is not None:
            with open_project(folder) as project:
                self.result_choices = result_runs(project, run_id)
        self.shown.blockSignals(True)
        self.shown.clear()
        for choice in self.result_choices:
            self.shown.addItem(choice.label, choice.run_id)
        same = self.result_choices == before and 0 <= kept < len(before)
        self.shown.setCurrentIndex(kept if same else (0 if self.result_choices else -1))
        self.shown.blockSignals(False)
        self._on_shown()

    @Slot()
    def _on_shown(self) -> None:
        """Show the chosen results; computed only while the tab is visible (bootstrap takes time)."""
        if not self.isVisible():
            self._stale = True
            return
        self._stale = False
        folder, run_id = self.jobs.session.folder, self.shown_run
        self.series.show_run(folder, run_id)
        self.series.setVisible(self.series.has_slices)  # only series of slices need a table
        if folder is None or run_id is None:
            self.view.show_results(None)
            return
        try:
            self.view.show_results(run_results(folder, run_id, scope=self.shown_scope))
        except EptStudioError as err:
            self.view.show_results(None)
            self.state.setText(str(err))

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._stale:
            self._on_shown()

    # -- background actions --------------------------------------------------------------------

    def predict(self, image_ids: list[int] | None) -> bool:
        """Predict ``image_ids`` (None: every image) with the chosen model, in the background."""
        folder, run_id = self.jobs.session.folder, self.model_run
        if folder is None or run_id is None:
            self.state.setText("Train a model first: there is nothing to predict with.")
            return False
        backbone = self.jobs.backbone

        def job(cancel: Callable[[], bool]) -> Iterator[object]:
            return predict_with_run(
                folder, run_id, image_ids=image_ids, backbone=backbone, cancel=cancel
            )

        return self._start(PREDICTION, job)

    @Slot()
    def _predict_selected(self) -> None:
        ids = self.selected_images()
        if not ids:
            self.state.setText("Select images in the gallery first.")
            return
        self.predict(ids)

    def export_onnx_to(
        self,
        destination: Path,
        precision: str = STANDARD,
        *,
        min_agreement: float | None = None,
        min_correlation: float | None = None,
    ) -> bool:
        """Export the chosen model to ONNX (with its parity check) in the background; int8 or
        fp16 only if it passes its check against fp32 (the thresholds: None for the defaults)."""
        folder, run_id = self.jobs.session.folder, self.model_run
        if folder is None or run_id is None:
            self.state.setText("Train a model first: there is nothing to export.")
            return False
        backbone, self.onnx_destination = self.jobs.backbone, Path(destination)

        def job(cancel: Callable[[], bool]) -> Iterator[object]:
            return export_run_onnx(
                folder,
                run_id,
                destination,
                precision=precision,
                min_agreement=min_agreement,
                min_correlation=min_correlation,
                backbone=backbone,
                cancel=cancel,
            )

        return self._start(ONNX_EXPORT, job)

    def _start(self, name: str, job: Callable[[Callable[[], bool]], Iterator[object]]) -> bool:
        if not self.jobs.start(name, job):
            self.state.setText(
                f"{self.jobs.current or 'Another task'} is running; wait or cancel it."
            )
            return False
        self.progress.show()
        self.progress.setRange(0, 0)
        self.state.setText(f"{name}…")
        return True

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        has_model = self.model_run is not None
        has_results = self.shown_run is not None
        for button in (self.predict_all, self.predict_selected, self.export_onnx):
            button.setEnabled(has_model and not busy)
        self.export_prompt.setEnabled(has_model)
        self.model_card.setEnabled(has_model)
        self.export_csv.setEnabled(has_results)
        self.export_csv_paths.setEnabled(has_results)
        self.cancel_button.setEnabled(busy and self.jobs.current in (PREDICTION, ONNX_EXPORT))

    @Slot(str, object)
    def _on_event(self, name: str, item: object) -> None:
        if name not in (PREDICTION, ONNX_EXPORT):
            return
        if isinstance(item, StageStarted):
            self.state.setText(f"{item.text}…")
        elif isinstance(item, InferenceStarted):
            self.progress.setRange(0, max(item.total, 1))
            self.progress.setValue(0)
            notes = f" ({'; '.join(item.notes)})" if item.notes else ""
            self.state.setText(f"Predicting {item.total} images on {item.provider}{notes}…")
        elif isinstance(item, BatchPredicted):
            self.progress.setValue(item.done)

    @Slot(str, object)
    def _on_finished(self, name: str, last: object) -> None:
        if name not in (PREDICTION, ONNX_EXPORT):
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        if isinstance(last, ProjectPredicted):
            verb = "Cancelled after" if last.cancelled else "Predicted"
            failed = f"; {last.failed} could not be read" if last.failed else ""
            self.state.setText(f"{verb} {last.predicted} images{failed}.")
            self.refresh()
            self.predictions_changed.emit(last.run_id)
        elif isinstance(last, ExportCancelled):
            self.progress.setValue(0)
            self.state.setText("Export cancelled; nothing was written.")
        elif isinstance(last, OnnxExportResult):
            self.state.setText(exported_text(last))
        elif isinstance(last, SmallerModelRefused):
            self.progress.setValue(0)
            self._offer_standard(last)

    def _offer_standard(self, refused: SmallerModelRefused) -> None:
        """Say why the smaller model was not saved; its button exports the standard one."""
        self.state.setText(refused_text(refused))
        if self.onnx_destination is not None:
            self.onnx_destination = standard_destination(self.onnx_destination, refused.precision)
        self.refusal, standard = refusal_box(self, refused)
        standard.clicked.connect(self._export_standard)
        self.refusal.open()

    @Slot()
    def _export_standard(self) -> None:
        if self.onnx_destination is not None:
            self.export_onnx_to(self.onnx_destination)

    @Slot(str, str)
    def _on_failed(self, name: str, message: str) -> None:
        if name not in (PREDICTION, ONNX_EXPORT):
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.state.setText(f"{name} failed: {message}")
        QMessageBox.warning(self, f"EPT Studio: {name.lower()} failed", message)

    # -- quick exports -------------------------------------------------------------------------

    def export_prompt_to(self, destination: Path) -> bool:
        return self._quick("Prompt file", lambda f, r: export_prompt_file(f, r, destination))

    def export_csv_to(self, destination: Path, *, relative_paths: bool = False) -> bool:
        """The shown run's predictions (every image, each marked trained on or not) and the
        notice file beside it; file paths only with ``relative_paths``."""
        shown = self.shown_run
        if shown is None:
            self.state.setText("Predict first: there are no predictions to export.")
            return False
        written = self._quick(
            "Predictions CSV",
            lambda f, _r: export_predictions_csv(
                f, shown, destination, relative_paths=relative_paths
            ),
        )
        if written:
            self.state.setText(
                f"Predictions CSV written: {Path(destination).name}, with the notice in "
                f"{readme_path(destination).name}"
            )
        return written

    def model_card_to(self, destination: Path) -> bool:
        """The card of the chosen model; a shown inference run of it adds its predictions
        (scored on images the model was not trained on only)."""
        shown = self.shown_run

        def write(folder: Path, model_run: int) -> Path:
            later = shown if shown is not None and shown != model_run else None
            return write_model_card(folder, model_run, destination, predictions_run=later)

        return self._quick("Model card", write)

    # -- try the model on a new image ----------------------------------------------------------

    def preview_file(self, path: Path) -> bool:
        """Show the chosen model's scores and attention for the file at ``path`` (not imported)."""
        return self.preview.try_file(path, self.model_run)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        self.dragMoveEvent(event)  # a drag enter is a drag move: the same test

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if _dropped_file(dropped_paths(event.mimeData())):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        path = _dropped_file(dropped_paths(event.mimeData()))
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.preview_file(path)

    def _quick(self, what: str, write: Callable[[Path, int], Path]) -> bool:
        folder, run_id = self.jobs.session.folder, self.model_run
        if folder is None or run_id is None:
            self.state.setText("Train a model first.")
            return False
        try:
            written = write(folder, run_id)
        except EptStudioError as err:
            self.state.setText(f"{what} not written: {err}")
            QMessageBox.warning(self, "EPT Studio", str(err))
            return False
        self.state.setText(f"{what} written: {written.name}")
        return True

    def _ask(self, title: str, name: str, pattern: str) -> Path | None:
        chosen, _ = QFileDialog.getSaveFileName(self, title, name, pattern)
        return Path(chosen) if chosen else None

    @Slot()
    def _ask_prompt(self) -> None:
        path = self._ask("Export prompt file", "prompt.safetensors", "Prompt files (*.safetensors)")
        if path:
            self.export_prompt_to(path)

    @Slot()
    def _ask_onnx(self) -> None:
        dialog = OnnxExportDialog(self)
        if dialog.exec() != OnnxExportDialog.DialogCode.Accepted:
            return
        precision = dialog.precision
        name = "model.onnx" if precision == STANDARD else f"model-{precision}.onnx"
        path = self._ask("Export ONNX model", name, "ONNX models (*.onnx)")
        if path:
            self.export_onnx_to(path, precision)

    @Slot()
    def _ask_csv(self) -> None:
        path = self._ask("Export predictions", "predictions.csv", "CSV (*.csv)")
        if path:
            self.export_csv_to(path)

    @Slot()
    def _ask_csv_with_paths(self) -> None:
        path = self._ask("Export predictions with file paths", "predictions.csv", "CSV (*.csv)")
        if path:
            self.export_csv_to(path, relative_paths=True)

    @Slot()
    def _ask_card(self) -> None:
        path = self._ask("Write model card", "model-card.md", "Markdown (*.md)")
        if path:
            self.model_card_to(path)


def _dropped_file(paths: list[Path]) -> Path | None:
    """The first file of a drop (a folder is not an image to try)."""
    return next((path for path in paths if path.is_file()), None)
