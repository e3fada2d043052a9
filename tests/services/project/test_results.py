"""Run results: bootstrap intervals on handcrafted predictions (numbers worked out by hand), the
warnings on a real project, and a tiny-backbone training run that stores its test predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from support import tiny_backbone

from ept_studio.data.store import PredictionRow, Project, Role
from ept_studio.services.project import (
    ProjectTrainingSaved,
    import_paths,
    train_on_project,
)
from ept_studio.services.project.results import ResultsScope, run_results, scope_summary
from ept_studio.services.project.results_stats import Interval, score_predictions

TRUTH = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
PREDICTED = [0, 0, 0, 1, 1, 1, 0, 2, 2, 1]
EMPTY = np.zeros((0, 0), dtype=np.float32)


def _probabilities(predicted: list[int], classes: int = 3) -> np.ndarray:
    probs = np.full((len(predicted), classes), 0.1)
    probs[np.arange(len(predicted)), predicted] = 0.8
    return probs


def _inside(interval: Interval) -> bool:
    return interval.low <= interval.value <= interval.high


def test_single_label_metrics_match_the_hand_count_with_intervals_around_them() -> None:
    scores = score_predictions("ABC", "single", _probabilities(PREDICTED), TRUTH, seed=7)
    assert scores.evaluated == 10
    assert scores.accuracy.value == pytest.approx(0.7)
    assert scores.confusion_matrix == ((3, 1, 0), (1, 2, 0), (0, 1, 2))
    a, b, c = scores.per_class
    assert (a.support, a.predicted, b.support, b.predicted, c.support, c.predicted) == (
        4,
        4,
        3,
        4,
        3,
        2,
    )
    assert (a.precision.value, a.recall.value, a.f1.value) == pytest.approx((0.75, 0.75, 0.75))
    assert (b.precision.value, b.recall.value, b.f1.value) == pytest.approx((0.5, 2 / 3, 4 / 7))
    assert (c.precision.value, c.recall.value, c.f1.value) == pytest.approx((1.0, 2 / 3, 0.8))
    assert a.auc.value == pytest.approx(19 / 24)  # Mann-Whitney with ties counted one half
    for interval in (scores.accuracy, a.precision, a.recall, b.f1, c.recall, a.auc):
        assert _inside(interval)
        assert interval.high - interval.low > 0.1  # n = 10: wide
    assert (c.precision.low, c.precision.high) == (1.0, 1.0)  # C is only ever predicted for C
    bins = {b.low: b for b in scores.reliability if b.count}
    assert list(bins) == [pytest.approx(0.7)]
    only = next(iter(bins.values()))
    assert (only.count, only.confidence, only.accuracy) == (10, pytest.approx(0.8), 0.7)
    assert scores.ece == pytest.approx(0.1)
    again = score_predictions("ABC", "single", _probabilities(PREDICTED), TRUTH, seed=7)
    assert again.accuracy == scores.accuracy  # seeded: the same interval every time


def test_multi_label_metrics_per_class_auc_and_f1() -> None:
    probs = np.array([[0.9, 0.2], [0.7, 0.6], [0.4, 0.8], [0.1, 0.3], [0.6, 0.9], [0.2, 0.1]])
    truth = np.array([[1, 0], [1, 1], [0, 1], [0, 0], [0, 1], [1, 0]])
    scores = score_predictions("XY", "multi", probs, truth, resamples=500)
    assert scores.confusion_matrix is None
    x, y = scores.per_class
    # X: predicted (>= 0.5) on rows 0, 1, 4; true on 0, 1, 5 -> tp 2, precision 2/3, recall 2/3.
    assert (x.precision.value, x.recall.value, x.f1.value) == pytest.approx((2 / 3, 2 / 3, 2 / 3))
    # X AUC: positives .9 .7 .2 vs negatives .4 .1 .6 -> 3 + 3 + 1 = 7 of 9 pairs.
    assert x.auc.value == pytest.approx(7 / 9)
    # Y: every positive (.6 .8 .9) outscores every negative (.2 .3 .1); predictions all right.
    assert (y.auc.value, y.f1.value) == pytest.approx((1.0, 1.0))
    assert scores.accuracy.value == pytest.approx(10 / 12)
    assert _inside(x.auc)
    assert x.auc.high > x.auc.low


def test_an_inference_run_is_scored_against_the_labels_with_warnings(
    tmp_path: Path, class_folders: Path
) -> None:
    """No run record (a model from elsewhere): the images with the train role now are taken as
    trained on; only the test-role ones are scored, and the training view scores the rest."""
    with Project.create(tmp_path / "p", locations_dir=tmp_path / "loc") as project:
        import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        images = project.images()
        project.labels.set_label([images[0].id], None)
        project.labels.set_role([i.id for i in images[1:6]] + [images[6].id], Role.TEST)
        run_id = project.record_run(
            config={"kind": "inference", "class_names": ["fundus", "histology", "xray"]},
            seed=0,
            versions={},
            backbone="tiny",
            backbone_sha256="ab" * 32,
        )
        scores = {"fundus": 0.7, "histology": 0.2, "xray": 0.1}
        rows = [PredictionRow(i.id, "fundus", scores, EMPTY) for i in images]
        project.record_predictions(run_id, rows)
        results = run_results(project, run_id, resamples=200)
        training = run_results(project, run_id, scope="training", resamples=200)
    assert results.kind == "inference"
    assert (len(results.images), results.unlabelled, results.evaluated) == (12, 1, 6)
    assert (results.trained_on, results.not_scored) == (5, 5)
    assert not results.trained_known
    assert (
        scope_summary(results) == "on 6 test images (not trained on); 5 training images not scored"
    )
    assert results.scores is not None
    assert results.scores.accuracy.value == pytest.approx(5 / 6)  # 5 fundus, 1 histology
    fundus, histology, xray = results.scores.per_class
    assert (fundus.recall.value, fundus.precision.value) == pytest.approx((1.0, 5 / 6))
    assert histology.recall.value == 0.0
    assert math.isnan(histology.precision.value)
    assert xray.support == 0
    assert math.isnan(xray.recall.value)
    text = "\n".join(results.warnings)
    assert "evaluation set is tiny (n = 6 < 20): the intervals are wide" in text
    assert "the model predicts only one class (fundus)" in text
    assert "a class has no test image (xray)" in text
    assert "the images with the train role now are taken as the ones it was trained on" in text
    assert "patients appear in both" not in text
    assert training.scope is ResultsScope.TRAINING
    assert (training.evaluated, training.unlabelled, training.not_scored) == (5, 0, 7)
    assert training.scores is not None
    assert training.scores.accuracy.value == 0.0  # the 5 train-role images are all histology
    assert "not how it does on new images" in "\n".join(training.warnings)
    assert scope_summary(training).startswith("on 5 training images: not a test")


def test_a_training_run_stores_one_prediction_per_test_image(
    tmp_path: Path, class_folders: Path
) -> None:
    locations = tmp_path / "locations"
    with Project.create(tmp_path / "project", locations_dir=locations) as project:
        import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        ids = [i.id for i in project.images()]
        test_ids = ids[4:6] + ids[10:12]
        project.labels.set_role(test_ids, Role.TEST)
        events = list(
            train_on_project(
                project.folder,
                {"method": "ept", "length": 4},
                {"epochs": 1, "batch_size": 8, "lr": 0.05, "device": "cpu"},
                backbone=tiny_backbone(),
                locations_dir=locations,
            )
        )
        saved = events[-1]
        assert isinstance(saved, ProjectTrainingSaved)
        stored = project.predictions(saved.run_id)
        assert [row.image_id for row in stored] == sorted(test_ids)
        for row in stored:
            assert set(row.scores) == {"fundus", "histology"}
            assert sum(row.scores.values()) == pytest.approx(1.0, abs=1e-5)
            assert row.predicted_class == max(row.scores, key=row.scores.__getitem__)
            assert row.attention.shape == (0, 0)
        results = run_results(project.folder, saved.run_id, locations_dir=locations)
        record = json.loads(saved.run_record.read_text(encoding="utf-8"))
    assert results.kind == "training"
    assert results.evaluated == 4
    assert results.scores is not None
    assert results.scores.accuracy.value == pytest.approx(saved.metrics["accuracy"])
    matrix = [list(row) for row in results.scores.confusion_matrix or ()]
    assert matrix == record["evaluation"]["confusion_matrix"]
    assert "probabilities" not in record["evaluation"]
    assert any("evaluation set is tiny (n = 4 < 20)" in w for w in results.warnings)
