"""The Train tab: the method, one Train button that says what will happen, a readiness checklist,
"Split for me", the Advanced settings, and progress with live curves while a run trains.

Everything shown before the press comes from torch-free services: the checklist
(:func:`~ept_studio.services.project.readiness.check_readiness`, whose blocking items are the training
service's own rule) and the plan (:func:`~ept_studio.services.project.training_plan.plan_training`, the run's
own step arithmetic), so a run never fails for a reason the tab could have named, and no setting is
changed behind the user's back. The work runs in :class:`~ept_studio.gui.jobs.ProjectJobs`.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QFont
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.backbone_dialog import BackbonePicker
from ept_studio.gui.hints import DEMO_TOOLTIP, demo_train_note, note_label, show_note
from ept_studio.gui.jobs import TRAINING, ProjectJobs
from ept_studio.gui.readiness_view import ReadinessView
from ept_studio.gui.training_run import LOSS, RunView, format_eta
from ept_studio.gui.training_settings import (
    DEFAULT,
    AdvancedSettings,
    backbone_present,
    choose_data,
    horizontal_rule,
    wrapped_label,
)
from ept_studio.services.model import (
    METHOD_CHOICES,
    TrainingOptions,
    method_choice,
)
from ept_studio.services.project import (
    Project,
    ProjectTrainingSaved,
    ReadinessItem,
    Severity,
    TrainingPlan,
    apply_test_split,
    check_readiness,
    demo_info,
    plan_training,
    remember_backbone,
    remembered_backbone,
    suggest_test_split,
)

__all__ = ["DEFAULT", "LOSS", "TRAINING", "TrainingPanel", "format_eta"]

NO_PROJECT = "Create or open a project first."
NO_BACKBONE = (
    "The offline default backbone is not set up on this machine: press 'Get the offline "
    "backbone…' in the status bar first."
)


class TrainingPanel(QWidget):
    """Method, Train / Cancel, the plan, the checklist, Advanced settings, progress and curves."""

    run_saved = Signal(object)
    """The :class:`ProjectTrainingSaved` of a run that finished."""
    readiness_changed = Signal(bool)
    """True when nothing blocks training any more, False when something does."""

    def __init__(self, jobs: ProjectJobs, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.plan: TrainingPlan | None = None
        self.reasons: list[str] = [NO_PROJECT]
        """Why Train is off (empty: it can start)."""
        self._ready: bool | None = None
        self._stopping = False
        self.split_action = QAction("Split for me", self)
        self.split_action.setToolTip(
            "Put about a fifth of each class's labelled images in the test set, whole patients "
            "at a time, so that training reports an accuracy. Undo puts them back."
        )
        self.run_view = RunView(self)
        self.progress, self.eta = self.run_view.progress, self.run_view.eta
        self.state, self.curves = self.run_view.state, self.run_view.curves
        self._build()
        self._connect()
        self._on_method(0)

    # -- building -----------------------------------------------------------------------------

    def _build(self) -> None:
        self.settings_box = QWidget()
        settings = QVBoxLayout(self.settings_box)
        settings.setContentsMargins(0, 0, 0, 0)
        top = QFormLayout()
        self.method = QComboBox()
        for choice in METHOD_CHOICES:
            self.method.addItem(choice.label, choice.key)
            self.method.setItemData(self.method.count() - 1, choice.description, 3)  # tooltip
        top.addRow("Method", self.method)
        self.backbone = BackbonePicker()
        top.addRow("Backbone", self.backbone)
        settings.addLayout(top)
        self.advanced = AdvancedSettings()
        self._alias_settings(self.advanced)
        body = QWidget()
        layout = QVBoxLayout(body)
        self.demo_note = note_label()
        layout.addWidget(self.demo_note)
        layout.addWidget(self.settings_box)
        layout.addLayout(self._train_row())
        layout.addWidget(self.plan_label)
        layout.addWidget(self.notes_label)
        layout.addLayout(self._split_row())
        layout.addWidget(horizontal_rule())
        layout.addWidget(self.checklist)
        layout.addWidget(self.advanced)
        layout.addWidget(self.progress)
        layout.addWidget(self.eta)
        layout.addWidget(self.state)
        layout.addWidget(self.curves, 1)
        self._scroll(body)

    def _alias_settings(self, advanced: AdvancedSettings) -> None:
        """The Advanced widgets under the panel's names, which tests and callers use."""
        self.recipe, self.length, self.blocks = advanced.recipe, advanced.length, advanced.blocks
        self.epochs, self.learning_rate = advanced.epochs, advanced.learning_rate
        self.batch_size, self.seed = advanced.batch_size, advanced.seed
        self.hold_out = advanced.hold_out
        self.patience, self.device = advanced.patience, advanced.device
        self.coverage = advanced.coverage

    def _train_row(self) -> QHBoxLayout:
        self.train_button = QPushButton("Train")
        self.train_button.setDefault(True)
        self.train_button.setMinimumHeight(40)
        font = QFont(self.train_button.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.25)
        self.train_button.setFont(font)
        self.train_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.plan_label = wrapped_label("")
        self.notes_label = wrapped_label("")
        row = QHBoxLayout()
        row.addWidget(self.train_button, 1)
        row.addWidget(self.cancel_button)
        return row

    def _split_row(self) -> QHBoxLayout:
        self.counts_label = wrapped_label("")
        self.split_button = QToolButton()
        self.split_button.setDefaultAction(self.split_action)
        self.checklist = ReadinessView(self.split_action)
        row = QHBoxLayout()
        row.addWidget(self.counts_label, 1)
        row.addWidget(self.split_button)
        return row

    def _scroll(self, body: QWidget) -> None:
        """Everything scrolls vertically in a short window; the width never scrolls."""
        scroll = QScrollArea()
        scroll.setWidget(body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        bar = scroll.verticalScrollBar().sizeHint().width()
        margins = body.contentsMargins().left() + body.contentsMargins().right()
        layout = body.layout()
        if layout is not None:
            margins += layout.contentsMargins().left() + layout.contentsMargins().right()
        advanced = self.advanced.body.minimumSizeHint().width() + margins  # hidden at first
        scroll.setMinimumWidth(max(body.minimumSizeHint().width(), advanced) + bar)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.body = body
        self.scroll_area = scroll
        self.advanced.toggle.toggled.connect(self._on_advanced_shown)

    @Slot(bool)
    def _on_advanced_shown(self, shown: bool) -> None:
        """Opening Advanced scrolls it into view: on a short screen it opens below the fold."""
        if shown:
            QTimer.singleShot(0, self._scroll_to_advanced)

    def _scroll_to_advanced(self) -> None:
        bar = self.scroll_area.verticalScrollBar()
        top = self.advanced.mapTo(self.body, QPoint(0, 0)).y()
        bar.setValue(min(bar.maximum(), top))

    @property
    def last_saved(self) -> ProjectTrainingSaved | None:
        return self.run_view.last_saved

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.run_view.warnings

    def _connect(self) -> None:
        session = self.jobs.session
        for signal in (
            session.labels_changed,
            session.classes_changed,
            session.images_changed,
            self.jobs.runs_changed,
            self.advanced.changed,
        ):
            signal.connect(self.refresh)
        session.project_changed.connect(self._on_project)
        self.method.currentIndexChanged.connect(self._on_method)
        self.backbone.changed.connect(self._on_backbone)
        self.train_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.split_action.triggered.connect(self.split_for_me)
        self.jobs.task_event.connect(self.run_view.on_event)
        self.jobs.finished.connect(self._on_finished)
        self.jobs.failed.connect(self._on_failed)
        self.jobs.busy_changed.connect(self._on_busy)

    # -- settings -----------------------------------------------------------------------------

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
        self.refresh()

    def options(self) -> TrainingOptions:
        """The settings as :class:`TrainingOptions`; a bad entry is a ConfigError naming it."""
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
            coverage=self.coverage.value() / 100,
            calibrate_on_test=self.advanced.calibrate_on_test.isChecked(),
            slices_per_series=self.advanced.slices_per_series.value(),
            trained_share=self.advanced.chosen_trained_share(),
            detail=self.advanced.detail.isChecked(),
        )

    @Slot()
    def _on_project(self) -> None:
        """A project opened: its demo note, and the backbone it remembers (shown even when it is
        not on this computer, so that Train says how to get it instead of using another)."""
        project = self.jobs.session.project
        info = demo_info(project) if project is not None else None
        if info is None:
            show_note(self.demo_note, "")
        else:
            show_note(self.demo_note, demo_train_note(info), DEMO_TOOLTIP)
        self.backbone.choose(remembered_backbone(project) if project is not None else None)

    @Slot()
    def _on_backbone(self) -> None:
        """Train on the chosen backbone from the next run, and remember it in the project."""
        self.jobs.backbone_name = self.backbone.name
        project = self.jobs.session.project
        if project is not None:
            try:
                remember_backbone(project, self.backbone.name)
            except EptStudioError as err:
                self.state.setText(str(err))
        self.refresh()

    def set_recipe(self, key: str) -> None:
        choose_data(self.recipe, key, "recipe")

    def set_method(self, key: str) -> None:
        choose_data(self.method, key, "method")

    # -- readiness and the plan ---------------------------------------------------------------

    @Slot()
    def refresh(self) -> None:
        """Check the labels and settings again: the checklist, the counts, the plan, Train's state."""
        project = self.jobs.session.project
        self.plan = None
        if project is None:
            self.reasons = [NO_PROJECT]
            self.checklist.set_items(())
            self.counts_label.setText("")
        else:
            self.reasons = self._check(project)
        self._show_plan()
        self._update_buttons()
        ready = not self.reasons
        if ready != self._ready:
            self._ready = ready
            self.readiness_changed.emit(ready)

    def _check(self, project: Project) -> list[str]:
        """The reasons Train is off for the open project (and the plan, when there are none).

        A bad setting (the options' own check) is a blocking line of the checklist too."""
        try:
            readiness = check_readiness(project)
        except EptStudioError as err:
            self.checklist.set_items(())
            return [str(err)]
        items = list(readiness.items)
        options: TrainingOptions | None = None
        try:
            options = self.options()
        except EptStudioError as err:
            items.append(ReadinessItem("settings", Severity.BLOCKING, f"Advanced: {err}."))
        if self.jobs.backbone is None and not backbone_present(self.jobs.backbone_name):
            items.append(ReadinessItem("backbone", Severity.BLOCKING, self._no_backbone()))
        self.checklist.set_items(items)
        self.counts_label.setText(readiness.split_counts())
        reasons = [i.text for i in items if i.severity is Severity.BLOCKING]
        if not reasons and options is not None:
            try:
                self.plan = plan_training(project, options, backbone_name=self._backbone_name())
            except EptStudioError as err:
                return [str(err)]
        return reasons

    def _no_backbone(self) -> str:
        name = self.jobs.backbone_name
        if name is None:
            return NO_BACKBONE
        return (
            f"The backbone {name} is not on this computer: run `ept-studio models get {name} "
            "--accept-licence`, or choose another backbone."
        )

    def _backbone_name(self) -> str | None:
        spec = getattr(self.jobs.backbone, "spec", None)
        name = getattr(spec, "name", None)
        return name if isinstance(name, str) else self.jobs.backbone_name

    def _show_plan(self) -> None:
        if self.reasons:
            more = f" (and {len(self.reasons) - 1} more)" if len(self.reasons) > 1 else ""
            self.plan_label.setText(f"Cannot train yet: {self.reasons[0]}{more}")
            self.plan_label.setToolTip("\n".join(self.reasons))
            self.notes_label.setText("")
            return
        plan = self.plan
        if plan is not None:
            self.plan_label.setText(plan.headline())
            self.plan_label.setToolTip(plan.estimate_basis)
            self.notes_label.setText("\n".join(f"• {note}" for note in plan.notes))

    def _update_buttons(self) -> None:
        busy = self.jobs.busy
        training = busy and self.jobs.current == TRAINING
        self.train_button.setEnabled(not busy and not self.reasons)
        if self.reasons:
            self.train_button.setToolTip("Cannot train yet:\n" + "\n".join(self.reasons))
        elif self.plan is not None:
            self.train_button.setToolTip(f"{self.plan.headline()}. {self.plan.estimate_basis}")
        self.cancel_button.setEnabled(training and not self._stopping)
        has_project = self.jobs.session.project is not None
        self.split_action.setEnabled(has_project and not busy)
        self.settings_box.setEnabled(not busy)
        self.advanced.setEnabled(not busy)

    # -- actions ------------------------------------------------------------------------------

    @Slot()
    def split_for_me(self) -> None:
        """Move about a fifth of each class to the test set, whole patients at a time (one undo)."""
        project = self.jobs.session.project
        if project is None or self.jobs.busy:
            return
        try:
            moved = apply_test_split(project, suggest_test_split(project))
        except EptStudioError as err:
            self.state.setText(str(err))
            return
        if not moved:
            self.state.setText(
                "Nothing to move: every class already has its share of test images, or has "
                "only one patient (or image) to train on."
            )
            return
        images = "image" if len(moved) == 1 else "images"
        self.state.setText(
            f"Moved {len(moved)} {images} to the test set, whole patients at a time. "
            "Undo (Ctrl+Z) puts them back."
        )
        self.jobs.session.labels_changed.emit()

    @Slot()
    def start(self) -> bool:
        """Train with the settings; False (with the reasons shown) when it cannot start."""
        self.refresh()
        if self.reasons:
            self.state.setText("\n".join(self.reasons))
            return False
        if not self.jobs.start_training(self.options()):
            self.state.setText(
                f"{self.jobs.current or 'Another task'} is running; wait or cancel it."
            )
            return False
        self._stopping = False
        self.run_view.started()
        return True

    @Slot()
    def cancel(self) -> None:
        """Stop the run before its next step; Cancel greys out at once, Train stays off until
        the run has ended."""
        if self.jobs.current == TRAINING and not self._stopping:
            self._stopping = True
            self.cancel_button.setEnabled(False)
            self.state.setText("Stopping after the current step…")
            self.jobs.cancel()

    @Slot(bool)
    def _on_busy(self, busy: bool) -> None:
        if not busy:
            self._stopping = False
        self._update_buttons()

    @Slot(str, object)
    def _on_finished(self, name: str, last: object) -> None:
        if name != TRAINING:
            return
        self._stopping = False
        saved = self.run_view.finished(last)
        self.refresh()
        if saved is not None:
            self.run_saved.emit(saved)

    @Slot(str, str)
    def _on_failed(self, name: str, message: str) -> None:
        if name != TRAINING:
            return
        self._stopping = False
        self.run_view.failed(message)
        self._update_buttons()
        QMessageBox.warning(self, "EPT Studio: training failed", message)
