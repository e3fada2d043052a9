"""Run a model over a project's images and store the results as an inference run's predictions.

The model is anything with the runner API (an exported ONNX model through ONNX Runtime, or a tuned
torch model before export). Each image is rendered with its own stored rendering spec, as in
training; every batch's predictions are committed as soon as the model returns them.
"""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ept_studio import __version__
from ept_studio.common.errors import DatasetError
from ept_studio.data.render import RenderingSpec, render_file
from ept_studio.data.store import ImageFilter, ImageStatus, PredictionRow, Project
from ept_studio.services.model.images import rendering_spec
from ept_studio.services.model.onnx_inference import (
    BatchPredicted,
    ImagePrediction,
    InferenceFinished,
    iter_predictions,
)

if TYPE_CHECKING:
    from ept_studio.core.model_io import Runner


@dataclasses.dataclass(frozen=True)
class ProjectPredicted:
    """The inference run is stored: its id, and how many images it scored or could not use."""

    run_id: int
    predicted: int
    failed: int
    cancelled: bool


def predict_project(
    folder: Path,
    runner: Runner,
    *,
    model_name: str,
    image_ids: Sequence[int] | None = None,
    source_run: int | None = None,
    batch_size: int = 8,
    workers: int = 2,
    cancel: Callable[[], bool] | None = None,
    locations_dir: Path | None = None,
) -> Iterator[object]:
    """Yield the inference events, then :class:`ProjectPredicted`; results go into the project.

    ``image_ids`` limits the run to those images (default: every image whose file is here);
    ``source_run`` is the training run the model came from, when it is this project's.
    """
    wanted = None if image_ids is None else set(image_ids)
    with Project.open(folder, locations_dir=locations_dir) as project:
        image_id: dict[Path, int] = {}
        specs: dict[Path, RenderingSpec] = {}
        for image in project.images(ImageFilter(status=ImageStatus.OK)):
            if image.path is not None and (wanted is None or image.id in wanted):
                image_id[image.path] = image.id
                specs[image.path] = rendering_spec(image.rendering)
        if not image_id:
            raise DatasetError(f"{folder}: the project has no image whose source file is here")
        run_id = _record_inference_run(project, runner, model_name, source_run)
        finished: InferenceFinished | None = None
        try:
            for event in iter_predictions(
                runner,
                list(image_id),
                batch_size=batch_size,
                workers=workers,
                cancel=cancel,
                decode=_decoder(specs),
            ):
                if isinstance(event, BatchPredicted):
                    project.record_predictions(run_id, _rows(event.predictions, image_id))
                if isinstance(event, InferenceFinished):
                    finished = event
                yield event
        except GeneratorExit:
            project.finish_run(run_id, "cancelled")
            raise
        except BaseException:
            project.finish_run(run_id, "failed")
            raise
        if finished is None:  # the generator was closed early
            project.finish_run(run_id, "cancelled")
            return
        status = "cancelled" if finished.cancelled else "finished"
        counts = {"images": len(finished.predictions), "failed": len(finished.failed)}
        project.finish_run(run_id, status, metrics=counts, device=finished.provider)
        yield ProjectPredicted(run_id, counts["images"], counts["failed"], finished.cancelled)


def _record_inference_run(
    project: Project, runner: Runner, model_name: str, source_run: int | None
) -> int:
    info = runner.info
    return project.record_run(
        config={
            "kind": "inference",
            "model": Path(model_name).name,
            "prompt_sha256": info.prompt_sha256,
            "method": info.method,
            "class_names": list(info.class_names),
            "source_run": source_run,
        },
        seed=0,
        versions={"ept_studio": __version__, "python": platform.python_version()},
        backbone=info.backbone,
        backbone_sha256=info.backbone_sha256,
        device=runner.provider,
    )


def _decoder(specs: dict[Path, RenderingSpec]) -> Callable[[Path], np.ndarray]:
    def decode(path: Path) -> np.ndarray:
        return render_file(path, specs[path])

    return decode


def _rows(
    predictions: tuple[ImagePrediction, ...], image_id: dict[Path, int]
) -> list[PredictionRow]:
    return [
        PredictionRow(image_id[p.path], p.predicted_class, p.scores, p.attention)
        for p in predictions
    ]
