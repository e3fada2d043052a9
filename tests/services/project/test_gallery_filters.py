"""The review filters (misclassified, most uncertain) on a real project with a recorded run.

The inference run is recorded through the real store with known scores, so the expected images and
their order follow from the numbers alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ept_studio.data.store import PredictionRow
from ept_studio.services.project import LabelMode, Project, create_project, import_paths
from ept_studio.services.project.gallery import GalleryFilter, GalleryView, gallery_items
from ept_studio.services.project.gallery_review import (
    latest_prediction_run,
    misclassified,
    most_uncertain,
)


@pytest.fixture
def folders(class_folders: Path) -> Path:
    """The two class folders (6 fundus, 6 histology) and one loose, unlabelled image."""
    noise = np.random.default_rng(3).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(class_folders / "loose.png")
    return class_folders


def _project(tmp_path: Path, folders: Path, mode: LabelMode) -> Project:
    project = create_project(tmp_path / f"project-{mode.value}", mode)
    report = import_paths(project, [folders], folders_as_classes=True, thumbnails=False)
    assert report.labelled == {"fundus": 6, "histology": 6}
    return project


def _ids(project: Project) -> tuple[list[int], list[int], int]:
    """Image ids of the fundus images, the histology images and the loose one."""
    by_class: dict[str, list[int]] = {}
    names = {info.id: info.name for info in project.labels.classes()}
    for label in project.labels.all():
        by_class.setdefault(names[label.class_id], []).append(label.image_id)
    labelled = {i for ids in by_class.values() for i in ids}
    (loose,) = [image.id for image in project.images() if image.id not in labelled]
    return sorted(by_class["fundus"]), sorted(by_class["histology"]), loose


def _record(project: Project, scores: dict[int, dict[str, float]], status: str = "finished") -> int:
    run_id = project.record_run(
        config={"kind": "inference"},
        seed=0,
        versions={},
        backbone="tiny-test-vit",
        backbone_sha256="ab" * 32,
    )
    rows = [
        PredictionRow(image_id, max(s, key=s.__getitem__), s, np.zeros((1, 4), np.float32))
        for image_id, s in scores.items()
    ]
    if rows:
        project.record_predictions(run_id, rows)
    project.finish_run(run_id, status)
    return run_id


def _pair(fundus: float) -> dict[str, float]:
    return {"fundus": fundus, "histology": round(1.0 - fundus, 2)}


@pytest.fixture
def single(tmp_path: Path, folders: Path) -> Iterator[Project]:
    with _project(tmp_path, folders, LabelMode.SINGLE) as project:
        yield project


def test_single_label_review_of_the_latest_run(single: Project) -> None:
    f, h, loose = _ids(single)
    scores = {i: _pair(0.8) for i in f} | {i: _pair(0.1) for i in h}
    scores |= {f[0]: _pair(0.9), f[1]: _pair(0.3), f[2]: _pair(0.52)}  # f[1] wrong
    scores |= {h[0]: _pair(0.45), h[1]: _pair(0.95)}  # h[1] wrong
    scores[loose] = _pair(0.5)  # a tie, but unlabelled: uncertain, never misclassified
    first = _record(single, scores)
    assert latest_prediction_run(single) == first
    assert misclassified(single) == [f[1], h[1]]
    # margins: loose 0, f[2] .04, h[0] .1, f[1] .4, then f[3..5] .6 (ties: oldest first);
    # 13 images * 20 % = 3, so the minimum of 5 applies
    assert most_uncertain(single) == [loose, f[2], h[0], f[1], f[3]]
    assert most_uncertain(single, fraction=0.5) == [loose, f[2], h[0], f[1], f[3], f[4], f[5]]
    view = gallery_items(single, GalleryFilter(GalleryView.UNCERTAIN))
    assert [item.image_id for item in view] == [loose, f[2], h[0], f[1], f[3]]

    second = _record(single, {i: _pair(0.9) for i in f} | {i: _pair(0.2) for i in h})
    _record(single, {f[0]: _pair(0.0)}, status="failed")  # failed runs are not reviewed
    _record(single, {})  # nor runs without predictions
    assert latest_prediction_run(single) == second
    assert misclassified(single) == []
    earlier = GalleryFilter(GalleryView.MISCLASSIFIED, run_id=first)
    assert [item.image_id for item in gallery_items(single, earlier)] == [f[1], h[1]]


def test_no_run_means_empty_review_views(single: Project) -> None:
    assert latest_prediction_run(single) is None
    assert misclassified(single) == most_uncertain(single) == []
    assert gallery_items(single, GalleryFilter(GalleryView.MISCLASSIFIED)) == []


def test_a_class_the_run_never_saw_is_not_judged(single: Project) -> None:
    f, _, _ = _ids(single)
    _record(single, {i: _pair(0.1) for i in f[:2]})  # both "wrong"
    later = single.labels.add_class("later")
    single.labels.set_label([f[0]], later.id)  # relabelled with a class the model does not know
    assert misclassified(single) == [f[1]]


def test_multi_label_review_thresholds_each_class(tmp_path: Path, folders: Path) -> None:
    with _project(tmp_path, folders, LabelMode.MULTI) as project:
        f, h, loose = _ids(project)
        histology = project.labels.class_by_name("histology")
        assert histology is not None
        project.labels.set_label([f[0]], histology.id)  # f[0] is both fundus and histology
        scores = {i: {"fundus": 0.95, "histology": 0.05} for i in f}
        scores |= {i: {"fundus": 0.05, "histology": 0.95} for i in h}
        scores[f[0]] = {"fundus": 0.9, "histology": 0.6}  # right: both above 0.5
        scores[f[1]] = {"fundus": 0.9, "histology": 0.7}  # wrong: histology too
        scores[h[0]] = {"fundus": 0.4, "histology": 0.45}  # wrong: nothing predicted
        _record(project, scores)
        assert misclassified(project) == [f[1], h[0]]
        # closest score to 0.5: h[0] .05, f[0] .1, f[1] .2, then all others .45 (oldest first)
        assert most_uncertain(project) == [h[0], f[0], f[1], f[2], f[3]]
        assert loose not in most_uncertain(project, fraction=1.0)  # never predicted
