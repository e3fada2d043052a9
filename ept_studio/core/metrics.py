"""Classification metrics in plain numpy: what the paper and MedFMC report, plus calibration.

Conventions: ``probabilities`` / ``scores`` are ``[n, C]``; single-label ``targets`` are class
indices ``[n]``, multi-label ``targets`` are 0/1 ``[n, C]``; ``predictions`` are class indices
``[n]``.
Metrics are fractions in [0, 1] (the paper prints percentages). A metric that cannot be computed
(for example an AUC without a negative sample) is NaN rather than an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ept_studio.core.model import LabelMode

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def accuracy(targets: ArrayLike, predictions: ArrayLike) -> float:
    """The share of samples whose predicted class is the target."""
    truth, predicted = _paired_labels(targets, predictions)
    return float(np.mean(truth == predicted))


def balanced_accuracy(targets: ArrayLike, predictions: ArrayLike) -> float:
    """The mean recall over the classes present in ``targets`` (robust to class imbalance)."""
    truth, predicted = _paired_labels(targets, predictions)
    recalls = [np.mean(predicted[truth == c] == c) for c in np.unique(truth)]
    return float(np.mean(recalls))


def confusion_matrix(targets: ArrayLike, predictions: ArrayLike, num_classes: int) -> IntArray:
    """``[C, C]`` counts: row = true class, column = predicted class."""
    truth, predicted = _paired_labels(targets, predictions)
    for name, labels in (("target", truth), ("prediction", predicted)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"a {name} lies outside the classes 0..{num_classes - 1}")
    flat = np.bincount(truth * num_classes + predicted, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def binary_auc(scores: ArrayLike, positives: ArrayLike) -> float:
    """ROC AUC by the Mann-Whitney U statistic; a tied positive/negative pair counts one half.

    NaN when there is no positive or no negative sample.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    is_positive = np.asarray(positives).astype(bool).ravel()
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    rank_sum = float(_average_ranks(values)[is_positive].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def macro_auc(scores: ArrayLike, targets: ArrayLike) -> float:
    """One-vs-rest AUC averaged over the classes with both positives and negatives (else NaN)."""
    score_matrix = _score_matrix(scores)
    one_hot = _indicator_targets(targets, score_matrix.shape)
    aucs = [binary_auc(score_matrix[:, c], one_hot[:, c]) for c in range(score_matrix.shape[1])]
    return _nan_mean(aucs)


def average_precision(scores: ArrayLike, positives: ArrayLike) -> float:
    """AP = sum over thresholds of (recall step) x precision; tied scores form one threshold.

    NaN when there is no positive sample.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    is_positive = np.asarray(positives).astype(np.float64).ravel()
    if not is_positive.any():
        return float("nan")
    order = np.argsort(-values, kind="mergesort")
    ordered, hits = values[order], is_positive[order]
    group_end = np.r_[ordered[1:] != ordered[:-1], True]
    true_pos = np.cumsum(hits)[group_end]
    false_pos = np.cumsum(1.0 - hits)[group_end]
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / true_pos[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: ArrayLike, targets: ArrayLike) -> float:
    """Per-class AP averaged over the classes with at least one positive (NaN if none has one)."""
    score_matrix = _score_matrix(scores)
    one_hot = _indicator_targets(targets, score_matrix.shape)
    precisions = [
        average_precision(score_matrix[:, c], one_hot[:, c]) for c in range(score_matrix.shape[1])
    ]
    return _nan_mean(precisions)


def expected_calibration_error(
    probabilities: ArrayLike, targets: ArrayLike, bins: int = 15
) -> float:
    """Top-label ECE over ``bins`` equal-width confidence bins ``(k/bins, (k+1)/bins]``.

    ECE = sum over bins of (share of samples in the bin) x |accuracy - mean confidence|. With
    multi-label targets ``[n, C]`` every (sample, label) pair is one binary prediction.
    """
    probs = _score_matrix(probabilities)
    truth = np.asarray(targets)
    if truth.ndim == 2:
        positive = probs.ravel()
        probs = np.stack([1.0 - positive, positive], axis=1)
        truth = truth.ravel()
    if bins < 1:
        raise ValueError(f"ECE needs at least one bin, got {bins}")
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == truth.astype(np.int64)).astype(np.float64)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins).astype(np.float64)
    gap = np.bincount(index, weights=correct, minlength=bins) - np.bincount(
        index, weights=confidence, minlength=bins
    )
    return float(np.sum(np.abs(gap)) / counts.sum())


def log_loss(probabilities: ArrayLike, targets: ArrayLike, floor: float = 1e-7) -> float:
    """Mean negative log-likelihood of the true labels (nats), probabilities floored at ``floor``.

    Single-label targets ``[n]`` take ``-log p[i, target_i]``; multi-label targets ``[n, C]`` take
    the binary cross-entropy of every (sample, label) pair. 0 is a perfect, confident model.
    """
    probs = np.clip(_score_matrix(probabilities), floor, 1.0 - floor)
    truth = np.asarray(targets)
    if truth.ndim == 2:
        positives = _indicator_targets(truth, probs.shape).astype(bool)
        return float(-np.mean(np.where(positives, np.log(probs), np.log1p(-probs))))
    labels = _class_indices(truth, probs.shape[0])
    return float(-np.mean(np.log(probs[np.arange(len(labels)), labels])))


def classification_metrics(
    probabilities: ArrayLike, targets: ArrayLike, label_mode: LabelMode | str
) -> dict[str, float]:
    """The metrics a run reports.

    Single-label: ``accuracy``, ``balanced_accuracy``, ``macro_auc``, ``ece``.
    Multi-label: ``map``, ``macro_auc`` and ``accuracy`` (per label, p >= 0.5 is positive).
    """
    probs = _score_matrix(probabilities)
    if label_mode == "multi":
        truth = _indicator_targets(targets, probs.shape)
        return {
            "map": mean_average_precision(probs, truth),
            "macro_auc": macro_auc(probs, truth),
            "accuracy": float(np.mean((probs >= 0.5) == truth.astype(bool))),
        }
    labels = _class_indices(targets, probs.shape[0])
    predictions = probs.argmax(axis=1)
    return {
        "accuracy": accuracy(labels, predictions),
        "balanced_accuracy": balanced_accuracy(labels, predictions),
        "macro_auc": macro_auc(probs, labels),
        "ece": expected_calibration_error(probs, labels),
    }


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    group = np.cumsum(starts_group) - 1
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = ((starts + ends - 1) / 2.0 + 1.0)[group]
    return ranks


def _nan_mean(values: list[float]) -> float:
    finite = [v for v in values if not np.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


def _score_matrix(scores: ArrayLike) -> FloatArray:
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] == 0:
        raise ValueError(f"scores must be a non-empty [n, C] array, got shape {matrix.shape}")
    return matrix


def _class_indices(targets: ArrayLike, count: int) -> IntArray:
    labels = np.asarray(targets)
    if labels.ndim != 1 or labels.shape[0] != count:
        raise ValueError(f"expected {count} class indices, got shape {labels.shape}")
    return labels.astype(np.int64)


def _indicator_targets(targets: ArrayLike, shape: tuple[int, ...]) -> IntArray:
    """0/1 ``[n, C]`` from class indices ``[n]`` or from multi-hot targets ``[n, C]``."""
    count, num_classes = shape
    truth = np.asarray(targets)
    if truth.ndim == 1:
        labels = _class_indices(truth, count)
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"a target lies outside the classes 0..{num_classes - 1}")
        return np.eye(num_classes, dtype=np.int64)[labels]
    if truth.shape != (count, num_classes):
        raise ValueError(f"multi-label targets must be {[count, num_classes]}, got {truth.shape}")
    return (truth > 0.5).astype(np.int64)


def _paired_labels(targets: ArrayLike, predictions: ArrayLike) -> tuple[IntArray, IntArray]:
    truth = np.asarray(targets).astype(np.int64).ravel()
    predicted = np.asarray(predictions).astype(np.int64).ravel()
    if truth.shape != predicted.shape or truth.size == 0:
        raise ValueError(
            f"need as many predictions as targets, got {predicted.size} and {truth.size}"
        )
    return truth, predicted
