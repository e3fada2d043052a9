"""A training run as the Train tab shows it: progress with ETA, what is happening, live curves, and
the saved run's summary in plain metric names."""

from __future__ import annotations

from PySide6.QtCore import QObject, Slot
from PySide6.QtWidgets import QLabel, QProgressBar

from ept_studio.common.training_events import (
    EpochFinished,
    RunFinished,
    RunRestarted,
    RunStarted,
    StepFinished,
)
from ept_studio.gui.curves import CurvePlot
from ept_studio.gui.jobs import TRAINING
from ept_studio.services.model import metric_tooltip, plain_metric_name
from ept_studio.services.project import ProjectDataReady, ProjectTrainingSaved, TuningCancelled

LOSS = "training loss"
VALIDATION_CURVES = ("loss", "accuracy", "macro_auc")
"""Held-out metrics drawn per epoch (at the epoch's last step), next to the training loss."""

_PERCENT_METRICS = frozenset({"accuracy", "balanced_accuracy"})


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


def plain_metric(key: str, value: float) -> str:
    """``Accuracy 83 %``, ``AUC (mean over classes) 0.91``: a metric as a clinician reads it."""
    name = plain_metric_name(key)
    if key in _PERCENT_METRICS:
        return f"{name} {value * 100:.0f} %"
    return f"{name} {value:.2f}"


class RunView(QObject):
    """The progress bar, ETA and state lines and the curves, fed with the run's events."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.last_saved: ProjectTrainingSaved | None = None
        self.warnings: tuple[str, ...] = ()
        self._last_step = 0
        self.progress = QProgressBar()
        self.progress.setFormat("%p %")
        self.progress.hide()  # an empty bar before the first run reads as a text field
        self.eta = QLabel("")
        self.state = QLabel("Label a few images per class, then press Train.")
        self.state.setWordWrap(True)
        self.curves = CurvePlot("step")

    def started(self) -> None:
        self.curves.clear()
        self.progress.show()
        self.state.setToolTip("")
        self.warnings = ()
        self.progress.setRange(0, 0)  # busy until the first step reports the total
        self.eta.setText("")
        self.state.setText("Loading the images and the backbone…")

    @Slot(str, object)
    def on_event(self, name: str, item: object) -> None:
        if name != TRAINING:
            return
        if isinstance(item, ProjectDataReady):
            self.state.setText(_data_summary(item))
        elif isinstance(item, RunStarted):
            self.progress.setRange(0, item.total_steps)
            self.progress.setValue(0)
            self.state.setText(
                f"Training on {device_words(item.device)}: {item.total_steps} steps. The "
                "pretrained model stays as it is; only the method's "
                f"{item.trainable_parameters:,} numbers learn."
            )
            self.state.setToolTip(f"trainable parameters: {item.trainable_parameters:,}")
        elif isinstance(item, StepFinished):
            self._last_step = item.step
            self.progress.setValue(item.step)
            self.eta.setText(f"Step {item.step} of {item.total_steps}, {format_eta(item.eta_s)}")
            self.curves.add_point(LOSS, item.step, item.loss)
        elif isinstance(item, RunRestarted):
            self.curves.clear()
            self.progress.setValue(0)
            self.state.setText(
                f"{item.reason}. Starting again from the initial tensors at "
                f"{item.lr_scale:g} x the learning rate (attempt {item.attempt + 1})."
            )
        elif isinstance(item, RunFinished):
            self.warnings = item.warnings
        elif isinstance(item, EpochFinished) and item.val_metrics:
            for key in VALIDATION_CURVES:
                if key in item.val_metrics:
                    name = plain_metric_name(key).split(" (")[0]
                    name = name if name[:2].isupper() else name[:1].lower() + name[1:]
                    self.curves.add_point(
                        f"held-out {name}", self._last_step, item.val_metrics[key]
                    )

    def finished(self, last: object) -> ProjectTrainingSaved | None:
        """Show how the run ended; the saved run, when it was saved."""
        self.progress.setRange(0, 1)
        self.eta.setText("")
        if isinstance(last, TuningCancelled):
            self.progress.setValue(0)
            self.state.setText(
                f"Cancelled after {last.steps_done} steps. Nothing was saved from this run; "
                "your labels are unchanged."
            )
        elif isinstance(last, ProjectTrainingSaved):
            self.progress.setValue(1)
            self.last_saved = last
            lines = [saved_summary(last), *(f"Warning: {w}" for w in self.warnings)]
            self.state.setText("\n".join(lines))
            self.state.setToolTip("\n".join(metric_tooltip(key) for key in sorted(last.metrics)))
            return last
        return None

    def failed(self, message: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.eta.setText("")
        self.state.setText(f"Training failed: {message}")


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


def saved_summary(saved: ProjectTrainingSaved) -> str:
    """``Run 3 saved. On 12 test images, scored with the fine-detail check: accuracy 83 %, …`` in
    plain metric names: what the figures were measured on comes with them."""
    if not saved.metrics:
        return (
            f"Run {saved.run_id} saved. There were no test images, so no accuracy: press "
            "'Split for me' and train again to measure it."
        )
    shown = ", ".join(plain_metric(k, v) for k, v in sorted(saved.metrics.items()))
    images = f"{saved.test_size} test image{'' if saved.test_size == 1 else 's'}"
    scored = "" if saved.detail_size is None else ", scored with the fine-detail check"
    return f"Run {saved.run_id} saved. On {images}{scored}: {shown}."


def device_words(device: str) -> str:
    """``cpu`` -> ``the CPU``, ``cuda:0`` -> ``the GPU (cuda:0)``: the device as a person says it."""
    if device.startswith("cpu"):
        return "the CPU"
    if device.startswith(("cuda", "mps")):
        return f"the GPU ({device})"
    return device
