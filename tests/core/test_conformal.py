"""Split-conformal prediction sets on synthetic scores with a known distribution."""

from __future__ import annotations

import numpy as np
import pytest
from crepes import ConformalClassifier

from ept_studio.core.conformal import (
    EVERY_CLASS,
    ConformalSets,
    NoPredictionSets,
    choose_mondrian,
    fit_conformal,
    fit_multilabel_sets,
    minimum_images,
    prediction_set,
    prediction_sets,
)


def _scores(n: int, rng: np.random.Generator, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated by construction: each label is drawn from its own probability vector."""
    probabilities = rng.dirichlet(np.full(classes, 0.7), size=n)
    cumulative = probabilities.cumsum(axis=1)
    labels = (rng.random((n, 1)) > cumulative).sum(axis=1).clip(0, classes - 1)
    return probabilities, labels


def test_empirical_coverage_of_90_percent_sets_is_within_the_finite_sample_bounds() -> None:
    rng = np.random.default_rng(0)
    n, splits, tolerance = 200, 300, 0.01
    covered = []
    for _ in range(splits):
        probabilities, labels = _scores(n + 400, rng)
        sets = fit_conformal(probabilities[:n], labels[:n], coverage=0.9, mondrian=False)
        assert isinstance(sets, ConformalSets)
        assert sets.guaranteed
        test = prediction_sets(probabilities[n:], sets.thresholds)
        covered.append(np.mean([y in s for s, y in zip(test, labels[n:], strict=True)]))
    coverage = float(np.mean(covered))
    assert 0.9 - tolerance <= coverage <= 0.9 + 1 / (n + 1) + tolerance


@pytest.mark.parametrize("mondrian", [False, True])
def test_thresholds_give_exactly_the_sets_crepes_gives(mondrian: bool) -> None:
    rng = np.random.default_rng(1)
    probabilities, labels = _scores(60, rng)
    probabilities = np.round(probabilities, 2)  # ties between calibration and test scores
    test, _ = _scores(300, rng)
    test = np.vstack([np.round(test, 2), probabilities[:20]])
    sets = fit_conformal(probabilities, labels, coverage=0.85, mondrian=mondrian)
    assert isinstance(sets, ConformalSets)
    assert sets.mondrian is mondrian
    calibration_scores = 1.0 - probabilities[np.arange(len(labels)), labels]
    alphas = 1.0 - test
    if mondrian:
        classifier = ConformalClassifier().fit(calibration_scores, bins=labels)
        columns = [
            classifier.predict_set(
                alphas[:, c], bins=np.full(len(test), c), confidence=0.85, smoothing=False
            )
            for c in range(test.shape[1])
        ]
        expected = np.stack(columns, axis=1)
    else:
        classifier = ConformalClassifier().fit(calibration_scores)
        expected = classifier.predict_set(alphas, confidence=0.85, smoothing=False)
    ours = prediction_sets(test, sets.thresholds)
    assert ours == [list(np.flatnonzero(row)) for row in expected]


def test_too_few_calibration_images_cannot_promise_the_coverage() -> None:
    rng = np.random.default_rng(2)
    assert minimum_images(0.9) == 9
    assert minimum_images(0.95) == 19
    probabilities, labels = _scores(8, rng)
    sets = fit_conformal(probabilities, labels, coverage=0.9)
    assert isinstance(sets, ConformalSets)
    assert not sets.guaranteed
    assert sets.thresholds == (EVERY_CLASS,)
    assert prediction_set(probabilities[0], sets.thresholds) == [0, 1, 2, 3]
    assert sets.statement.startswith("Cannot promise 90 % coverage: 8 calibration images")
    enough, labels = _scores(9, rng)
    assert fit_conformal(enough, labels, coverage=0.9).guaranteed  # type: ignore[union-attr]
    none = fit_conformal(np.zeros((0, 3)), np.zeros(0, int))
    assert isinstance(none, NoPredictionSets)


def test_mondrian_when_classes_are_imbalanced_and_each_has_enough_images() -> None:
    assert choose_mondrian([40, 12], 0.9)
    assert not choose_mondrian([40, 30], 0.9)  # balanced: one threshold
    assert not choose_mondrian([40, 5], 0.9)  # too few in one class to promise it per class
    rng = np.random.default_rng(3)
    probabilities, _ = _scores(52, rng, classes=2)
    labels = np.array([0] * 40 + [1] * 12)
    sets = fit_conformal(probabilities, labels)
    assert isinstance(sets, ConformalSets)
    assert sets.mondrian
    assert len(sets.thresholds) == 2
    assert sets.guaranteed
    assert sets.class_counts == (40, 12)
    forced = fit_conformal(probabilities, labels, mondrian=True, coverage=0.95)
    assert isinstance(forced, ConformalSets)
    assert not forced.guaranteed
    assert "smallest class" in forced.statement


def test_multi_label_thresholds_keep_each_class_recall() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    scores = rng.random((n, 3))
    targets = (rng.random((n, 3)) < scores).astype(int)
    sets = fit_multilabel_sets(scores[:2000], targets[:2000], coverage=0.9)
    assert isinstance(sets, ConformalSets)
    assert sets.label_mode == "multi"
    assert sets.mondrian
    assert sets.guaranteed
    kept = np.array(
        [[c in s for c in range(3)] for s in prediction_sets(scores[2000:], sets.thresholds)]
    )
    positives = targets[2000:] > 0
    for c in range(3):
        assert kept[positives[:, c], c].mean() >= 0.9 - 0.02
    few = fit_multilabel_sets(scores[:10], targets[:10], coverage=0.9)
    assert isinstance(few, ConformalSets)
    assert not few.guaranteed


def test_conformal_block_round_trips_and_refuses_nonsense() -> None:
    block = ConformalSets(
        coverage=0.9,
        thresholds=(0.7, 0.8),
        mondrian=True,
        label_mode="single",
        n=30,
        class_counts=(20, 10),
        guaranteed=True,
    )
    assert ConformalSets.from_dict(block.to_dict()) == block
    for bad in (
        {**block.to_dict(), "thresholds": [0.7]},
        {**block.to_dict(), "coverage": 1.5},
        {**block.to_dict(), "thresholds": [0.7, 2.0]},
        {"coverage": 0.9},
    ):
        with pytest.raises(ValueError, match=r"must|missing|JSON|expected"):
            ConformalSets.from_dict(bad)
