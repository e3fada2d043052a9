"""Try the chosen model on a new image: the Results tab's preview of one dropped file.

The model runs as a background job of :class:`~ept_studio.gui.jobs.ProjectJobs` (loading a torch
model takes seconds), through :func:`~ept_studio.services.project.preview.iter_preview`; the box shows the
image as the model sees it, the model attention over it and the top model scores. The file is
only read: it is not added to the project. Descriptive words only: "model score", "model
attention", never "finding".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ept_studio.gui.jobs import ProjectJobs
from ept_studio.gui.viewer_canvas import to_qimage
from ept_studio.services.model import StageStarted
from ept_studio.services.project import ImagePreview, iter_preview

PREVIEW = "Preview"
"""The preview's task name in :class:`ProjectJobs`."""
PREVIEW_SIDE = 160
PREVIEW_HINT = (
    "Try it on a new image: drop a PNG, JPEG or DICOM file here to see the chosen model's "
    "scores and attention for it. The file is not added to the project."
)


class PreviewBox(QWidget):
    """One dropped image: rendered, with the model attention over it, and its top model scores."""

    def __init__(self, jobs: ProjectJobs, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.preview: ImagePreview | None = None
        self.title = QLabel(PREVIEW_HINT)
        self.title.setWordWrap(True)
        self.image = QLabel()
        self.overlay = QLabel()
        for label in (self.image, self.overlay):
            label.setFixedSize(PREVIEW_SIDE, PREVIEW_SIDE)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.overlay.setToolTip("model attention: where the model looked, not a finding")
        self.scores = QLabel("")
        self.scores.setWordWrap(True)
        self.scores.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        pictures = QHBoxLayout()
        pictures.addWidget(self.image)
        pictures.addWidget(self.overlay)
        pictures.addWidget(self.scores, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addLayout(pictures)
        self.clear()
        jobs.task_event.connect(self._on_event)
        jobs.finished.connect(self._on_finished)
        jobs.failed.connect(self._on_failed)

    def try_file(self, path: Path, run_id: int | None) -> bool:
        """Run the model of training run ``run_id`` on ``path`` in the background."""
        folder = self.jobs.session.folder
        if folder is None or run_id is None:
            self.clear("Train a model first: there is no model to try the image on.")
            return False
        backbone = self.jobs.backbone

        def job(cancel: Callable[[], bool]) -> Iterator[object]:
            return iter_preview(folder, run_id, path, backbone, cancel=cancel)

        if not self.jobs.start(PREVIEW, job):
            busy = self.jobs.current or "Another task"
            self.clear(f"{busy} is running; drop the image again after it.")
            return False
        self.clear(f"Trying the model of run {run_id} on {path.name}…")
        return True

    def clear(self, message: str = PREVIEW_HINT) -> None:
        self.preview = None
        self.title.setText(message)
        self.image.clear()
        self.overlay.clear()
        self.scores.setText("")
        self.image.setVisible(False)
        self.overlay.setVisible(False)

    def show_preview(self, preview: ImagePreview) -> None:
        self.preview = preview
        self.title.setText(
            f"{preview.file_name} (not added to the project): model of run {preview.model_run}"
        )
        for label, pixels in ((self.image, preview.image), (self.overlay, preview.overlay)):
            pixmap = QPixmap.fromImage(to_qimage(pixels))
            label.setPixmap(
                pixmap.scaled(
                    PREVIEW_SIDE,
                    PREVIEW_SIDE,
                    Qt.AspectRatioMode.KeepAspectRatio,
                    Qt.TransformationMode.SmoothTransformation,
                )
            )
            label.setVisible(True)
        lines = [f"Predicted class: {preview.predicted_class}", "Model score:"]
        lines += [f"  {name}: {score:.2f}" for name, score in preview.top()]
        lines.append(f"Right: {preview.overlay_caption}")
        self.scores.setText("\n".join(lines))

    @Slot(str, object)
    def _on_event(self, name: str, item: object) -> None:
        if name == PREVIEW and isinstance(item, StageStarted):
            self.clear(f"{item.text}…")

    @Slot(str, object)
    def _on_finished(self, name: str, last: object) -> None:
        if name == PREVIEW and isinstance(last, ImagePreview):
            self.show_preview(last)

    @Slot(str, str)
    def _on_failed(self, name: str, message: str) -> None:
        if name == PREVIEW:
            self.clear(f"This file cannot be tried: {message}")
