"""A project of one 4-slice CT series and two loose PNG images, with inference runs whose scores
are chosen, so every per-series number can be checked by hand.

Slice scores for (Brain, Bone), in slice order: (0.2, 0.8), (0.4, 0.6), (0.9, 0.1), (0.3, 0.7).
Mean: Brain 0.45, Bone 0.55 (Bone; decisive slice 1). Max: Brain 0.9, Bone 0.8 renormalised to
0.9 / 1.7 and 0.8 / 1.7 (Brain; decisive slice 3). The loose images score (0.7, 0.3) and (0.25, 0.75).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import skimage.data
from labelled_projects import write_series
from PIL import Image
from recorded_runs import CLASSES, record_training_run

from ept_studio.core.temperature import Calibration
from ept_studio.data.store import PredictionRow, Project
from ept_studio.services.project import import_paths

SLICE_SCORES = ((0.2, 0.8), (0.4, 0.6), (0.9, 0.1), (0.3, 0.7))
LOOSE_SCORES = ((0.7, 0.3), (0.25, 0.75))


def series_project(tmp_path: Path, locations: Path | None = None) -> Project:
    """The project (open; the caller closes it): the series imported first, then the PNGs.
    ``locations``: its location index folder (default ``tmp_path / "locations"``)."""
    write_series(tmp_path / "data" / "ct", len(SLICE_SCORES))
    loose = tmp_path / "data" / "photos"
    loose.mkdir(parents=True)
    retina = skimage.data.retina()
    for index in range(len(LOOSE_SCORES)):
        crop = retina[100 * index : 100 * index + 64, 200:264]
        Image.fromarray(crop).save(loose / f"photo{index}.png")
    where = locations or tmp_path / "locations"
    project = Project.create(tmp_path / "project", "single", locations_dir=where)
    import_paths(project, [tmp_path / "data" / "ct", loose], thumbnails=False)
    return project


def slice_ids(project: Project) -> list[int]:
    """The series' image ids in slice order (InstanceNumber)."""
    slices = [image for image in project.images() if image.series_hash is not None]
    return [image.id for image in sorted(slices, key=lambda image: image.instance_number or 0)]


def loose_ids(project: Project) -> list[int]:
    """The PNG images' ids, in file order."""
    pngs = [image for image in project.images() if image.kind != "dicom"]
    return [
        image.id for image in sorted(pngs, key=lambda image: image.path.name if image.path else "")
    ]


def inference_run(
    project: Project, *, calibrated: bool, scored: Sequence[int] | None = None
) -> int:
    """An inference run that stored the chosen scores; its model is a recorded training run whose
    scores were calibrated (temperature scaling) or not. ``scored``: the images it scored (default
    every image)."""
    ids = slice_ids(project) + loose_ids(project)
    scores = dict(zip(ids, SLICE_SCORES + LOOSE_SCORES, strict=True))
    if scored is not None:
        scores = {image_id: scores[image_id] for image_id in scored}
    block = (
        Calibration(
            temperature=1.5,
            images=2,
            source="held-out support images",
            ece_before=0.3,
            ece_after=0.1,
        ).to_dict()
        if calibrated
        else {"reason": "scores are uncalibrated: too few held-out images"}
    )
    model = record_training_run(
        project, {}, {}, train=[], calibration=[], test=[], calibration_block=block
    )
    run_id = project.record_run(
        config={"kind": "inference", "class_names": list(CLASSES), "source_run": model},
        seed=0,
        versions={},
        backbone="tiny",
        backbone_sha256="ab" * 32,
    )
    project.record_predictions(run_id, [_row(i, s) for i, s in scores.items()])
    project.finish_run(run_id, "finished")
    return run_id


def _row(image_id: int, scores: Sequence[float]) -> PredictionRow:
    return PredictionRow(
        image_id,
        CLASSES[int(np.argmax(scores))],
        dict(zip(CLASSES, scores, strict=True)),
        np.linspace(0.0, 1.0, 32, dtype=np.float32).reshape(2, 16),  # 2 heads, 4 x 4 patches
    )
