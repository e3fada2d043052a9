"""The metrics against values worked out by hand, and AUC against a brute-force pair count."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ept_studio.core.metrics import (
    accuracy,
    average_precision,
    balanced_accuracy,
    binary_auc,
    classification_metrics,
    confusion_matrix,
    expected_calibration_error,
    log_loss,
    macro_auc,
    mean_average_precision,
)
from ept_studio.core.model import LabelMode


def test_accuracy_and_balanced_accuracy() -> None:
    assert accuracy([0, 1, 1, 2], [0, 1, 2, 2]) == 0.75
    # recall of class 0 is 2/3, of class 1 is 1/1
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx(5 / 6, rel=1e-15)
    # a class never predicted and never present does not count
    assert balanced_accuracy([0, 2], [0, 1]) == 0.5


def test_confusion_matrix_rows_are_truth() -> None:
    matrix = confusion_matrix([0, 0, 1, 2, 2], [0, 1, 1, 2, 0], num_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert matrix.dtype == np.int64
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError, match="as many"):
        confusion_matrix([0, 1], [0], num_classes=2)


def test_auc_counts_ties_as_half() -> None:
    # positives 0.4, 0.8 against negatives 0.1, 0.4: pairs 1 + 0.5 + 1 + 1 = 3.5 of 4
    assert binary_auc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == 0.875
    assert binary_auc([0.3, 0.3, 0.3], [1, 0, 1]) == 0.5
    assert binary_auc([0.9, 0.1], [0, 1]) == 0.0
    assert math.isnan(binary_auc([0.2, 0.5], [1, 1]))
    assert math.isnan(binary_auc([0.2, 0.5], [0, 0]))


def test_auc_matches_a_brute_force_pair_count() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40) / 4.0  # many ties
    positives = rng.integers(0, 2, size=40)
    wins = 0.0
    pairs = 0
    for i, j in itertools.product(np.flatnonzero(positives), np.flatnonzero(positives == 0)):
        pairs += 1
        wins += 1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0
    assert binary_auc(scores, positives) == pytest.approx(wins / pairs, rel=1e-12)


def test_macro_auc_skips_absent_classes() -> None:
    probabilities = [[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.4, 0.4, 0.2], [0.2, 0.6, 0.2]]
    # class 0: positives 0.7, 0.5 vs negatives 0.4, 0.2 -> 1.0
    # class 1: positives 0.4, 0.6 vs negatives 0.2, 0.3 -> 1.0; class 2 has no positives
    assert macro_auc(probabilities, [0, 0, 1, 1]) == 1.0
    # class 0: 0.7, 0.2 vs 0.5, 0.4 -> 2/4; class 1: 0.3, 0.4 vs 0.2, 0.6 -> 2/4
    assert macro_auc(probabilities, [0, 1, 1, 0]) == 0.5
    assert math.isnan(macro_auc([[0.5, 0.5], [0.6, 0.4]], [[1, 1], [1, 1]]))


def test_average_precision_by_hand() -> None:
    # hits at ranks 1 and 3: (1/1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6, rel=1e-15)
    # tied 0.5s form one threshold: recall 0 -> 0.5 at precision 1/3, 0.5 -> 1 at precision 2/4
    assert average_precision([0.9, 0.5, 0.5, 0.1], [0, 1, 0, 1]) == pytest.approx(5 / 12, rel=1e-15)
    assert average_precision([0.1, 0.2], [1, 1]) == 1.0
    assert math.isnan(average_precision([0.1, 0.2], [0, 0]))


def test_mean_average_precision_skips_labels_without_positives() -> None:
    scores = np.array([[0.9, 0.9, 0.1], [0.8, 0.5, 0.2], [0.7, 0.5, 0.3], [0.6, 0.1, 0.4]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    # label 0: 5/6; label 1: 5/12; label 2: no positive, skipped
    assert mean_average_precision(scores, targets) == pytest.approx((5 / 6 + 5 / 12) / 2, rel=1e-15)
    assert math.isnan(mean_average_precision(scores, np.zeros((4, 3))))


def test_expected_calibration_error_by_hand() -> None:
    probabilities = [[0.95, 0.05], [0.75, 0.25], [0.35, 0.65], [0.45, 0.55]]
    targets = [0, 1, 1, 0]
    # 5 bins: (0.8, 1] holds 0.95 (right): |1 - 0.95| = 0.05
    #         (0.6, 0.8] holds 0.75 (wrong) and 0.65 (right): |0.5 - 0.7| = 0.2, twice the weight
    #         (0.4, 0.6] holds 0.55 (wrong): |0 - 0.55| = 0.55
    expected = (0.05 + 2 * 0.2 + 0.55) / 4
    assert expected_calibration_error(probabilities, targets, bins=5) == pytest.approx(
        expected, rel=1e-12
    )
    assert expected_calibration_error([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == 0.0
    with pytest.raises(ValueError, match="bin"):
        expected_calibration_error(probabilities, targets, bins=0)


def test_multi_label_ece_treats_each_label_as_a_binary_prediction() -> None:
    # pairs: p=0.9 (pos), p=0.3 (neg) -> confidences 0.9 and 0.7, both right, one bin each (bins=5)
    ece = expected_calibration_error([[0.9, 0.3]], [[1, 0]], bins=5)
    assert ece == pytest.approx((0.1 + 0.3) / 2, rel=1e-12)


def test_classification_metrics_single_label() -> None:
    probabilities = [[0.95, 0.05], [0.75, 0.25], [0.35, 0.65], [0.45, 0.55]]
    metrics = classification_metrics(probabilities, [0, 1, 1, 0], LabelMode.SINGLE)
    assert set(metrics) == {"accuracy", "balanced_accuracy", "macro_auc", "ece"}
    assert metrics["accuracy"] == 0.5
    assert metrics["balanced_accuracy"] == 0.5
    # class 0 scores: positives 0.95, 0.45 vs negatives 0.75, 0.35 -> 3/4; class 1 mirrors it
    assert metrics["macro_auc"] == 0.75
    assert metrics["ece"] == expected_calibration_error(probabilities, [0, 1, 1, 0])


def test_classification_metrics_multi_label() -> None:
    scores = np.array([[0.9, 0.9, 0.1], [0.8, 0.5, 0.2], [0.7, 0.5, 0.3], [0.6, 0.1, 0.4]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    metrics = classification_metrics(scores, targets, "multi")
    assert set(metrics) == {"map", "macro_auc", "accuracy"}
    assert metrics["map"] == mean_average_precision(scores, targets)
    # label 0: positives 0.9, 0.7 vs negatives 0.8, 0.6 -> 3/4
    # label 1: positives 0.5, 0.1 vs negatives 0.9, 0.5 -> 0.5/4
    assert metrics["macro_auc"] == pytest.approx((3 / 4 + 0.5 / 4) / 2, rel=1e-15)
    # p >= 0.5 is positive: 12 decisions, wrong at (0,1) (1,0) (2,1) (3,0) (3,1) -> 7/12 right
    assert metrics["accuracy"] == pytest.approx(7 / 12, rel=1e-15)


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\[n, C\]"):
        classification_metrics([0.1, 0.9], [1, 0], "single")
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([[0.1, 0.9]], [1, 0], "single")
    with pytest.raises(ValueError, match="multi-label targets"):
        classification_metrics([[0.1, 0.9]], [[1, 0, 1]], "multi")
    with pytest.raises(ValueError, match="outside"):
        macro_auc([[0.1, 0.9]], [2])


def test_log_loss_single_label_is_the_mean_negative_log_likelihood() -> None:
    probabilities = np.array([[0.8, 0.2], [0.25, 0.75], [0.5, 0.5]])
    expected = -(math.log(0.8) + math.log(0.75) + math.log(0.5)) / 3
    assert log_loss(probabilities, [0, 1, 1]) == pytest.approx(expected, rel=1e-12)
    assert log_loss(np.array([[1.0, 0.0]]), [1]) == pytest.approx(-math.log(1e-7), rel=1e-9)


def test_log_loss_multi_label_is_the_binary_cross_entropy() -> None:
    scores = np.array([[0.9, 0.2], [0.4, 0.6]])
    targets = np.array([[1, 0], [0, 1]])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.6) + math.log(0.6)) / 4
    assert log_loss(scores, targets) == pytest.approx(expected, rel=1e-12)
