"""Try a model on one new image: its model scores and its model attention, without importing it.

A clinician drops a file on the Results tab to see at once what the chosen model makes of it (as
a teaching tool's live preview does). The file is only read: it is not added to the project, no
thumbnail is cached and nothing is written next to it. It is rendered with the rendering stored
in the model (the same pixels in as at training, the same prediction out) and run through the
model the app would predict with: the exported ONNX model when there is one, else the tuned torch
model. The words are descriptive: "model score", "model attention", never "finding".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ept_studio.common.errors import ProjectError
from ept_studio.data.overlay import CAPTION, attention_heatmap, blend
from ept_studio.data.render import RenderingSpec, render_file
from ept_studio.data.store import Project
from ept_studio.services.model.images import rendering_spec
from ept_studio.services.model.stages import StageStarted
from ept_studio.services.project.run_actions import is_training_run, open_run_model

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model_io import Runner

OVERLAY_OPACITY = 0.5

__all__ = ["ImagePreview", "iter_preview", "preview_image"]


@dataclasses.dataclass(frozen=True)
class ImagePreview:
    """One image through one model: what to show beside the dropped file's name."""

    model_run: int
    file_name: str
    """The dropped file's name, for the screen only (never written anywhere)."""
    image: np.ndarray = dataclasses.field(repr=False, compare=False)
    """``H x W x 3`` uint8: the image rendered as the model sees it."""
    heatmap: np.ndarray = dataclasses.field(repr=False, compare=False)
    """``H x W x 3`` uint8: the model attention (mean over heads) in its colour map, unblended,
    so a viewer can blend it at its own opacity."""
    scores: dict[str, float]
    """Model score of every class (they sum to 1 for a single-label model)."""
    predicted_class: str
    spec: RenderingSpec
    """The rendering used (the model's stored one)."""
    overlay_caption: str = CAPTION

    @property
    def overlay(self) -> np.ndarray:
        """``image`` with the model attention blended over it at :data:`OVERLAY_OPACITY`."""
        return blend(self.image, self.heatmap, OVERLAY_OPACITY)

    def top(self, count: int = 3) -> list[tuple[str, float]]:
        """The ``count`` highest-scoring classes, highest first."""
        ranked = sorted(self.scores.items(), key=lambda item: -item[1])
        return ranked[:count]


def preview_image(
    folder: Path,
    run_id: int,
    path: Path,
    backbone: LoadedBackbone | None = None,
    *,
    locations_dir: Path | None = None,
) -> ImagePreview:
    """The model of training run ``run_id`` on the file at ``path`` (read only, not imported)."""
    events = list(iter_preview(folder, run_id, path, backbone, locations_dir=locations_dir))
    last = events[-1] if events else None
    if not isinstance(last, ImagePreview):  # pragma: no cover - the generator's contract
        raise ProjectError(f"{Path(path).name}: the preview gave no result")
    return last


def iter_preview(
    folder: Path,
    run_id: int,
    path: Path,
    backbone: LoadedBackbone | None = None,
    *,
    cancel: Callable[[], bool] | None = None,
    locations_dir: Path | None = None,
) -> Iterator[object]:
    """:class:`StageStarted` while the model loads, then the :class:`ImagePreview`.

    A generator, so the GUI runs it as a background job (loading a torch model takes seconds).
    """
    with Project.open(folder, locations_dir=locations_dir) as project:
        run = project.run(run_id)
        if not is_training_run(run):
            raise ProjectError(f"run {run_id} is not a tuned model: choose one in the Model list")
        yield StageStarted("Loading the model")
        runner = open_run_model(project, run_id, backbone)
    if cancel is not None and cancel():
        return
    yield _preview(run_id, Path(path), runner)


def _preview(run_id: int, path: Path, runner: Runner) -> ImagePreview:
    info = runner.info
    spec = rendering_spec(info.rendering)
    image = render_file(path, spec)
    outputs = runner.predict([image])
    probabilities = np.asarray(outputs.probabilities[0], dtype=np.float64)
    scores = {name: float(p) for name, p in zip(info.class_names, probabilities, strict=True)}
    predicted = info.class_names[int(np.argmax(probabilities))]
    attention = np.asarray(outputs.attention[0])
    heatmap = attention_heatmap(attention, info.patch_grid, (image.shape[0], image.shape[1]))
    heads = int(attention.shape[0]) if attention.ndim == 2 else 0
    caption = f"{CAPTION} (mean of {heads} heads)" if heads > 1 else CAPTION
    return ImagePreview(run_id, path.name, image, heatmap, scores, predicted, spec, caption)
