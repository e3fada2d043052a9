"""The Train tab: method and recipe settings, Train / Cancel, progress with ETA, live curves.

Every setting that is left at "recipe default" takes the recipe's value, so the panel never holds
a copy of the recipe (and never imports torch to read it). The panel renders the events of the
running training task; the work is in :class:`~ept_studio.gui.jobs.ProjectJobs`.
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ept_studio.errors import EptStudioError
from ept_studio.gui.curves import CurvePlot
from ept_studio.gui.jobs import TRAINING, ProjectJobs
from ept_studio.services.backbone_setup import offline_backbone_status
from ept_studio.services.project import ProjectDataReady, ProjectTrainingSaved
from ept_studio.services.project_tuning import (
    TuningCancelled,
    TuningEpoch,
    TuningRestarted,
    TuningStarted,
    TuningStep,
    TuningWarnings,
)
from ept_studio.services.training_options import (
    METHOD_CHOICES,
    RECIPE_CHOICES,
    TrainingOptions,
    device_choices,
    method_choice,
)

DEFAULT = "recipe default"
LOSS = "training loss"
VALIDATION_CURVES = ("loss", "accuracy", "macro_auc")
"""Held-out metrics drawn per epoch (at the epoch's last step), next to the training loss."""


def format_eta(seconds: float) -> str:
    """``about 1 min 05 s left``; ``less than a second left``."""
    if seconds < 1:
        return "less than a second left"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"about {hours} h {minutes:02d} min left"
    if minutes:
        return f"about {minutes} min {secs:02d} s left"
    return f"about {secs} s left"


class TrainingPanel(QWidget):
    """Settings form, the Train and Cancel buttons, the progress bar and the curves."""

    run_saved = Signal(object)
    """The :class:`ProjectTrainingSaved` of a run that finished."""

    def __init__(self, jobs: ProjectJobs, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.last_saved: ProjectTrainingSaved | None = None
        self.warnings: tuple[str, ...] = ()
        self._last_step = 0
        self._build_form()
        self.train_button = QPushButton("Train")
        self.train_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFormat("%p %")
        self.eta = QLabel("")
        self.state = QLabel("Label a few images per class (train role), then press Train.")
        self.state.setWordWrap(True)
        self.curves = CurvePlot("step")
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.form_box)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.state)
        layout.addWidget(self.curves, 1)
        self.train_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        jobs.task_event.connect(self._on_event)
        jobs.finished.connect(self._on_finished)
        jobs.failed.connect(self._on_failed)
        jobs.busy_changed.connect(self._on_busy)
        self._on_method(0)

    # -- the form -----------------------------------------------------------------------------

    def _build_form(self) -> None:
        self.form_box = QGroupBox("Tuning")
        form = QFormLayout(self.form_box)
        self.method = QComboBox()
        for choice in METHOD_CHOICES:
            self.method.addItem(choice.label, choice.key)
            self.method.setItemData(self.method.count() - 1, choice.description, 3)  # tooltip
        self.recipe = QComboBox()
        for choice in RECIPE_CHOICES:
            self.recipe.addItem(choice.label, choice.key)
        self.recipe.setToolTip(
            "The starting point; epochs, learning rate and batch size override it when set"
        )
        self.length = QSpinBox()
        self.length.setRange(1, 500)
        self.length.setValue(100)
        self.blocks = QLineEdit("all")
        self.blocks.setToolTip("all, shallow (first block only), a list like 0,1,2 or 0-5")
        self.epochs = _spin(0, 1000, DEFAULT)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(5)
        self.learning_rate.setRange(0.0, 1.0)
        self.learning_rate.setSingleStep(0.0001)
        self.learning_rate.setSpecialValueText(DEFAULT)
        self.learning_rate.setToolTip(
            "The rate of the method's tensors: prompts, LoRA factors, biases, or the backbone's"
            " weights under full fine-tuning"
        )
        self.batch_size = _spin(0, 256, DEFAULT)
        self.seed = _spin(0, 2**31 - 1, "")
        self.hold_out = QCheckBox("Hold out a fifth of each class to pick the best epoch")
        self.hold_out.setChecked(True)
        self.hold_out.setToolTip(
            "Only when every class has at least 5 training images; test images are never used"
        )
        self.patience = _spin(0, 1000, "never")
        self.patience.setToolTip("epochs without improvement on the held-out images")
        self.device = QComboBox()
        for key, label in device_choices():
            self.device.addItem(label, key)
        form.addRow("Method", self.method)
        form.addRow("Recipe", self.recipe)
        form.addRow("Prompt length", self.length)
        form.addRow("Prompted blocks", self.blocks)
        form.addRow("Epochs", self.epochs)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Seed", self.seed)
        form.addRow("", self.hold_out)
        form.addRow("Stop early after", self.patience)
        form.addRow("Device", self.device)
        self.method.currentIndexChanged.connect(self._on_method)

    @Slot(int)
    def _on_method(self, _index: int) -> None:
        choice = method_choice(str(self.method.currentData()))
        self.length.setEnabled(choice.uses_length)
        self.blocks.setEnabled(choice.uses_blocks)
        if choice.key == "vpt" and self.length.value() == 100:
            self.length.setValue(10)
        elif choice.key.startswith("ept") and self.length.value() == 10:
            self.length.setValue(100)
        self.method.setToolTip(choice.description)

    def options(self) -> TrainingOptions:
        """The form as :class:`TrainingOptions`; a bad entry is a ConfigError naming it."""
        return TrainingOptions(
            method=str(self.method.currentData()),
            recipe=str(self.recipe.currentData()),
            length=self.length.value(),
            blocks=self.blocks.text(),
            epochs=self.epochs.value() or None,
            learning_rate=self.learning_rate.value() or None,
            batch_size=self.batch_size.value() or None,
            seed=self.seed.value(),
            device=str(self.device.currentData()),
            hold_out=self.hold_out.isChecked(),
            patience=self.patience.value() or None,
        )

    def set_recipe(self, key: str) -> None:
        index = self.recipe.findData(key)
        if index < 0:
            raise ValueError(f"no recipe {key!r} in the list")
        self.recipe.setCurrentIndex(index)

    def set_method(self, key: str) -> None:
        index = self.method.findData(key)
        if index < 0:
            raise ValueError(f"no method {key!r} in the list")
        self.method.setCurrentIndex(index)

    # -- running ------------------------------------------------------------------------------

    @Slot()
    def start(self) -> bool:
        """Train with the form's settings; False (with the reason shown) when it cannot start."""
        try:
            options = self.options()
        except EptStudioError as err:
            self.state.setText(str(err))
            return False
        if self.jobs.session.folder is None:
            self.state.setText("Create or open a project first.")
            return False
        if self.jobs.backbone is None and not _backbone_present():
            self.state.setText(
                "The offline default backbone is not set up on this machine: press 'Get the "
                "offline backbone…' in the status bar first."
            )
            return False
        if not self.jobs.start_training(options):
            self.state.setText(
                f"{self.jobs.current or 'Another task'} is running; wait or cancel it."
            )
            return False
        self.curves.clear()
        self.warnings = ()
        self.progress.setRange(0, 0)  # busy until the first step reports the total
        self.eta.setText("")
        self.state.setText("Loading the images and the backbone…")
        return True

    @Slot()
    def cancel(self) -> None:
        if self.jobs.current == TRAINING:
            self.state.setText("Cancelling: the run stops before its next step…")
            self.jobs.cancel()

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        training = busy and self.jobs.current == TRAINING
        self.train_button.setEnabled(not busy)
        self.cancel_button.setEnabled(training)
        self.form_box.setEnabled(not busy)

    @Slot(str, object)
    def _on_event(self, name: str, item: object) -> None:
        if name != TRAINING:
            return
        if isinstance(item, ProjectDataReady):
            self.state.setText(_data_summary(item))
        elif isinstance(item, TuningStarted):
            self.progress.setRange(0, item.total_steps)
            self.progress.setValue(0)
            self.state.setText(
                f"Training on {item.device}: {item.total_steps} steps, "
                f"{item.trainable_parameters:,} values learn."
            )
        elif isinstance(item, TuningStep):
            self._last_step = item.step
            self.progress.setValue(item.step)
            self.eta.setText(f"Step {item.step} of {item.total_steps}, {format_eta(item.eta_s)}")
            self.curves.add_point(LOSS, item.step, item.loss)
        elif isinstance(item, TuningRestarted):
            self.curves.clear()
            self.progress.setValue(0)
            self.state.setText(
                f"{item.reason}. Starting again from the initial tensors at "
                f"{item.lr_scale:g} x the learning rate (attempt {item.attempt + 1})."
            )
        elif isinstance(item, TuningWarnings):
            self.warnings = item.warnings
        elif isinstance(item, TuningEpoch) and item.val_metrics:
            for key in VALIDATION_CURVES:
                if key in item.val_metrics:
                    self.curves.add_point(f"held-out {key}", self._last_step, item.val_metrics[key])

    @Slot(str, object)
    def _on_finished(self, name: str, last: object) -> None:
        if name != TRAINING:
            return
        self.progress.setRange(0, 1)
        if isinstance(last, TuningCancelled):
            self.progress.setValue(0)
            self.eta.setText("")
            self.state.setText(
                f"Cancelled after {last.steps_done} steps. Nothing was saved from this run; "
                "your labels are unchanged."
            )
        elif isinstance(last, ProjectTrainingSaved):
            self.progress.setValue(1)
            self.eta.setText("")
            self.last_saved = last
            self.state.setText(
                "\n".join([_saved_summary(last), *(f"Warning: {w}" for w in self.warnings)])
            )
            self.run_saved.emit(last)

    @Slot(str, str)
    def _on_failed(self, name: str, message: str) -> None:
        if name != TRAINING:
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta.setText("")
        self.state.setText(f"Training failed: {message}")
        QMessageBox.warning(self, "EPT Studio: training failed", message)


def _backbone_present() -> bool:
    try:
        return offline_backbone_status().present
    except EptStudioError:
        return False


def _spin(low: int, high: int, special: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    if special:
        spin.setSpecialValueText(special)
    return spin


def _data_summary(ready: ProjectDataReady) -> str:
    train = sum(ready.train_counts.values())
    test = sum(ready.test_counts.values())
    parts = [f"{train} training and {test} test images in {len(ready.classes)} classes."]
    if ready.unreadable:
        parts.append(f"{ready.unreadable} unreadable file(s) left out.")
    for reason, count in ready.excluded.items():
        parts.append(f"{count} left out: {reason}.")
    if ready.patients_in_both_roles:
        parts.append(
            f"Warning: {ready.patients_in_both_roles} patient(s) have images in both train and "
            "test; the test figures will be optimistic."
        )
    return " ".join(parts)


def _saved_summary(saved: ProjectTrainingSaved) -> str:
    if not saved.metrics:
        return f"Run {saved.run_id} saved. No test-role images, so no test metrics."
    shown = ", ".join(f"{key} {value:.3f}" for key, value in sorted(saved.metrics.items()))
    return f"Run {saved.run_id} saved. On the test images: {shown}."
