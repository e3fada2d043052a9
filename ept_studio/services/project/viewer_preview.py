"""A file dropped on the viewer: the model's score and attention for it, shown like a project image.

:mod:`ept_studio.services.project.preview` runs the model on the file (read only, never imported) and
keeps its attention colours unblended; the viewer blends them at the opacity the user picks over
whatever window it shows.
"""

from __future__ import annotations

import numpy as np

from ept_studio.data.overlay import blend
from ept_studio.data.store import Project
from ept_studio.services.project.preview import ImagePreview
from ept_studio.services.project.run_actions import trained_runs
from ept_studio.services.project.viewer_caption import ImageCaption

__all__ = [
    "blend_heatmap",
    "newest_model_run",
    "preview_caption",
    "preview_heatmap",
]


def preview_heatmap(preview: ImagePreview) -> np.ndarray:
    """The attention colours (``H x W x 3`` uint8) of the preview, to blend at any opacity."""
    return preview.heatmap


def blend_heatmap(base: np.ndarray, heatmap: np.ndarray, opacity: float) -> np.ndarray:
    """``base`` with ``heatmap`` over it at ``opacity`` (0..1); both ``H x W x 3`` uint8."""
    return blend(base, heatmap, opacity)


def preview_caption(preview: ImagePreview) -> ImageCaption:
    """The caption of a dropped file: no labels, the model's top class and its model score."""
    ranked = preview.top(1)
    name, score = ranked[0] if ranked else (preview.predicted_class, None)
    return ImageCaption(model_class=name, model_score=score, in_project=False)


def newest_model_run(project: Project) -> int | None:
    """The newest finished training run, the model to try a dropped file on by default."""
    runs = trained_runs(project)
    return runs[0].run_id if runs else None
