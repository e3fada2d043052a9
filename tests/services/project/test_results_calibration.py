"""Calibrated scores in a run's results, on a real project whose run stored chosen scores: the
calibration images are never scored as test images, the calibration error before temperature
scaling is recovered exactly from the stored scores, each image gets its prediction set, and an
uncalibrated run says so and why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from labelled_projects import labelled_project
from recorded_runs import CLASSES, record_training_run

from ept_studio.core.conformal import ConformalSets
from ept_studio.core.temperature import Calibration, apply_temperature, calibration_error
from ept_studio.data.store import Project
from ept_studio.services.project.gallery import GalleryFilter, gallery_items
from ept_studio.services.project.results import (
    confusion_selection,
    reliability_selection,
    run_results,
    scope_summary,
)
from ept_studio.services.project.results_stats import (
    check_calibration,
    uncalibrated_probabilities,
)
from ept_studio.services.project.viewer_caption import image_caption

TEMPERATURE = 2.5
THRESHOLD = 0.6
"""A class is in the set when its calibrated score is at least 0.4."""


def _logits(count: int, seed: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 3.0, size=(count, len(CLASSES)))


def test_scores_before_scaling_are_recovered_exactly_from_the_calibrated_ones() -> None:
    logits = _logits(200)
    targets = np.random.default_rng(4).integers(0, 2, size=200)
    stored = apply_temperature(logits, TEMPERATURE).astype(np.float64)
    recovered = uncalibrated_probabilities(stored, TEMPERATURE, "single")
    assert recovered == pytest.approx(apply_temperature(logits, 1.0), abs=1e-5)
    check = check_calibration(stored, targets, "single", temperature=TEMPERATURE)
    assert check.ece_before == pytest.approx(
        calibration_error(apply_temperature(logits, 1.0), targets), abs=1e-6
    )
    assert check.ece_after == pytest.approx(calibration_error(stored, targets), abs=1e-9)
    assert check.ece_before != pytest.approx(check.ece_after)
    assert sum(b.count for b in check.reliability_before) == 200
    assert sum(len(m) for m in check.members_after) == 200


def test_multi_label_scores_before_scaling_are_recovered_through_the_logit() -> None:
    logits = _logits(50, seed=5)
    stored = apply_temperature(logits, TEMPERATURE, "multi").astype(np.float64)
    recovered = uncalibrated_probabilities(stored, TEMPERATURE, "multi")
    assert recovered == pytest.approx(apply_temperature(logits, 1.0, "multi"), abs=1e-5)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    opened = labelled_project(tmp_path, {name: [None] * 6 for name in CLASSES})
    yield opened
    opened.close()


def _split(project: Project) -> tuple[dict[int, int], list[int], list[int], list[int]]:
    """Targets by image id; per class two images each to train, calibrate and test."""
    names = {c.id: c.name for c in project.labels.classes()}
    targets = {
        label.image_id: CLASSES.index(names[label.class_id]) for label in project.labels.all()
    }
    train, calibration, test = [], [], []
    for k in range(len(CLASSES)):
        ids = sorted(i for i, t in targets.items() if t == k)
        train += ids[:2]
        calibration += ids[2:4]
        test += ids[4:]
    return targets, train, calibration, test


def _calibrated_run(project: Project) -> tuple[int, np.ndarray, dict[int, int], list[int]]:
    targets, train, calibration, test = _split(project)
    ids = sorted(targets)
    logits = _logits(len(ids))
    stored = apply_temperature(logits, TEMPERATURE)
    block = Calibration(
        temperature=TEMPERATURE,
        images=len(calibration),
        source="held-out support images",
        ece_before=0.3,
        ece_after=0.1,
    )
    sets = ConformalSets(
        coverage=0.9,
        thresholds=(THRESHOLD,),
        mondrian=False,
        label_mode="single",
        n=len(calibration),
        class_counts=(2, 2),
        guaranteed=False,
    )
    run_id = record_training_run(
        project,
        {i: stored[k].tolist() for k, i in enumerate(ids)},
        targets,
        train=train,
        calibration=calibration,
        test=test,
        calibration_block=block.to_dict(),
        conformal_block=sets.to_dict(),
    )
    return run_id, logits[[ids.index(i) for i in test]], targets, test


def test_calibration_images_are_left_out_of_the_test_and_counted(project: Project) -> None:
    run_id, _, _, test = _calibrated_run(project)
    results = run_results(project, run_id, resamples=50)
    assert sorted(i.image_id for i in results.scored) == sorted(test)
    assert (results.evaluated, results.trained_on, results.calibrated_on) == (4, 4, 4)
    assert scope_summary(results) == (
        "on 4 test images (not trained on); 4 training images and 4 calibration images not scored"
    )


def test_ece_before_and_after_match_a_direct_computation_from_the_logits(
    project: Project,
) -> None:
    run_id, logits, targets, test = _calibrated_run(project)
    y = np.array([targets[i] for i in sorted(test)])
    order = np.argsort(test)
    check = run_results(project, run_id, resamples=50).calibration
    assert check is not None
    assert check.calibrated
    assert (check.temperature, check.fitted_on, check.evaluated) == (TEMPERATURE, 4, 4)
    assert check.ece_before == pytest.approx(
        calibration_error(apply_temperature(logits[order], 1.0), y), abs=1e-6
    )
    assert check.ece_after == pytest.approx(
        calibration_error(apply_temperature(logits[order], TEMPERATURE), y), abs=1e-6
    )


def test_each_scored_image_gets_its_set_and_the_sets_are_scored(project: Project) -> None:
    run_id, _, targets, _ = _calibrated_run(project)
    results = run_results(project, run_id, resamples=50)
    for image in results.images:
        expected = tuple(c for c in CLASSES if 1.0 - image.scores[c] <= THRESHOLD)
        assert image.prediction_set == expected
    sets = results.sets
    assert sets is not None
    covered = sum(CLASSES[targets[i.image_id]] in (i.prediction_set or ()) for i in results.scored)
    assert (sets.covered, sets.evaluated, sets.images) == (covered, 4, 4)
    sizes = [len(i.prediction_set or ()) for i in results.scored]
    assert sets.mean_size == pytest.approx(np.mean(sizes))
    assert not sets.guaranteed
    assert sets.statement.startswith("Cannot promise 90 % coverage: 4 calibration images")


def test_a_cell_and_a_bar_select_exactly_their_images(project: Project) -> None:
    run_id, _, targets, _ = _calibrated_run(project)
    results = run_results(project, run_id, resamples=50)
    matrix = results.scores.confusion_matrix if results.scores else None
    assert matrix is not None
    for t in range(2):
        for p in range(2):
            chosen = confusion_selection(results, t, p)
            expected = [
                i.image_id
                for i in results.scored
                if targets[i.image_id] == t and int(np.argmax([i.scores[c] for c in CLASSES])) == p
            ]
            assert list(chosen.image_ids) == expected
            assert len(expected) == matrix[t][p]
            assert (
                chosen.label
                == f"Run {run_id} test images: true {CLASSES[t]}, predicted {CLASSES[p]}"
            )
    check = results.calibration
    assert check is not None
    for calibrated, bins in ((True, check.reliability_after), (False, check.reliability_before)):
        for index, b in enumerate(bins):
            chosen = reliability_selection(results, index, calibrated=calibrated)
            assert len(chosen.image_ids) == b.count  # single-label: one prediction an image
    shown = gallery_items(project, GalleryFilter.chosen(chosen.image_ids, chosen.label))
    assert [item.image_id for item in shown] == list(chosen.image_ids)


def test_the_caption_and_the_gallery_show_the_set(project: Project) -> None:
    run_id, _, _, test = _calibrated_run(project)
    image = next(i for i in run_results(project, run_id).images if i.image_id == test[0])
    words = f"set: {', '.join(image.prediction_set or ()) or 'no class'} at 90 %"
    caption = image_caption(project, test[0], run_id)
    assert caption.model_text.endswith(f"% (model score; {words})")
    item = next(i for i in gallery_items(project) if i.image_id == test[0])
    assert item.prediction_note == words


def test_an_uncalibrated_run_says_why_wherever_its_scores_are_shown(project: Project) -> None:
    targets, train, calibration, test = _split(project)
    reason = "scores are uncalibrated: only 4 held-out images; at least 10 are needed"
    run_id = record_training_run(
        project,
        {i: [0.7, 0.3] for i in targets},
        targets,
        train=train,
        calibration=[],
        test=test + calibration,
        calibration_block={"reason": reason},
        conformal_block={"reason": "no prediction sets: there are no calibration images"},
    )
    results = run_results(project, run_id, resamples=50)
    check = results.calibration
    assert check is not None
    assert not check.calibrated
    assert check.reason == reason
    assert check.ece_before == check.ece_after
    assert results.sets is None
    assert results.sets_reason == "no prediction sets: there are no calibration images"
    assert "uncalibrated" in image_caption(project, test[0], run_id).model_text
    item = next(i for i in gallery_items(project) if i.image_id == test[0])
    assert item.prediction_note == "uncalibrated"
