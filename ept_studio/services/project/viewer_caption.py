"""What the viewer says about the image it shows: its label(s) and role, the model's score, its size.

Qt-free, so the words are tested without a window. The model's part describes the newest inference
run's output for this image ("model score"), never a diagnosis.
"""

from __future__ import annotations

import dataclasses

from ept_studio.data.store import Project
from ept_studio.services.project.results import prediction_words, scores_of_run
from ept_studio.services.project.viewer import ImageView

__all__ = ["DROPPED", "UNLABELLED", "ImageCaption", "image_caption", "view_summary"]

UNLABELLED = "Unlabelled"
DROPPED = "Dropped file (not imported)"


@dataclasses.dataclass(frozen=True)
class ImageCaption:
    """The labels (class names, in the class list's order), the role, and the model's top class.

    ``in_project`` False: a file dropped on the viewer, which has no labels to show.
    """

    labels: tuple[str, ...] = ()
    role: str | None = None
    model_class: str | None = None
    model_score: float | None = None
    in_project: bool = True
    model_note: str = ""
    """Its prediction set at the model's coverage, ``uncalibrated`` when the scores are not."""

    @property
    def label_text(self) -> str:
        """``Lung · train``, ``Lung, Nodule · test`` or ``Unlabelled``."""
        if not self.in_project:
            return DROPPED
        if not self.labels:
            return UNLABELLED
        names = ", ".join(self.labels)
        return f"{names} · {self.role}" if self.role else names

    @property
    def model_text(self) -> str:
        """``Model: CT 92 % (model score; set: CT, MR at 90 %)``; empty when the newest run did
        not score the image."""
        if self.model_class is None:
            return ""
        note = f"; {self.model_note}" if self.model_note else ""
        if self.model_score is None:
            return f"Model: {self.model_class}" + (f" ({self.model_note})" if note else "")
        return f"Model: {self.model_class} {round(100 * self.model_score)} % (model score{note})"


def image_caption(project: Project, image_id: int, run_id: int | None) -> ImageCaption:
    """The image's labels and role, and run ``run_id``'s top class for it (None: no run)."""
    position = {info.id: (info.position, info.name) for info in project.labels.classes()}
    labels = project.labels.of(image_id)
    ranked = sorted(position[label.class_id] for label in labels if label.class_id in position)
    role = labels[0].role.value if labels else None
    model_class, model_score, note = _top_score(project, image_id, run_id)
    return ImageCaption(
        tuple(name for _, name in ranked), role, model_class, model_score, model_note=note
    )


def _top_score(
    project: Project, image_id: int, run_id: int | None
) -> tuple[str | None, float | None, str]:
    """The class with the highest score (the predicted class when the run stored no scores),
    and what the model says besides (its set, ``uncalibrated``)."""
    if run_id is None:
        return None, None, ""
    row = next((row for row in project.predictions(run_id) if row.image_id == image_id), None)
    if row is None:
        return None, None, ""
    if not row.scores:
        return row.predicted_class, None, ""
    classes, model = scores_of_run(project, run_id)
    note = prediction_words(row.scores, classes, model)
    name, score = max(
        row.scores.items(), key=lambda item: (item[1], item[0] == row.predicted_class)
    )
    return name, score, note


def view_summary(view: ImageView) -> str:
    """``CT · 512 × 512 px · 10 frames``: what kind of image it is, said once."""
    rows, columns = view.shape
    if view.kind == "dicom":
        kind = view.modality or "DICOM"
    else:
        kind = view.path.suffix.lstrip(".").upper() or "image"
    parts = [kind, f"{columns} × {rows} px"]
    if view.frames > 1:
        parts.append(f"{view.frames} frames")
    return " · ".join(parts)
