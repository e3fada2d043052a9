"""The numbers of a results view, from model scores and labels alone: no project, no torch.

With a handful of test images one accuracy number lies, so every headline metric comes with a 95 %
percentile bootstrap interval: ``resamples`` draws of the evaluated images with replacement, from
one seeded numpy generator (the same predictions always give the same interval). A metric that is
undefined in a draw (precision of a class never predicted, an AUC without a negative) is left out
of that metric's percentiles; a metric undefined on the data itself is NaN ("n/a" in reports).

Single-label: accuracy, per-class precision / recall / F1 and one-vs-rest AUC, the confusion
matrix, top-label reliability bins and ECE. Multi-label: per-label accuracy at score >= 0.5, per
class AUC and F1 (score >= 0.5 is positive), reliability over every (image, class) pair.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from ept_studio.common.calibration import (
    ReliabilityBin,
    expected_calibration_error,
    reliability_table,
    top_label,
)

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
RELIABILITY_BINS = 10
THRESHOLD = 0.5
"""Multi-label: a class counts as predicted when its score is at least this."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclasses.dataclass(frozen=True)
class Interval:
    """A metric on the evaluated images and its bootstrap interval (fractions in [0, 1])."""

    value: float
    low: float
    high: float

    @property
    def defined(self) -> bool:
        return not math.isnan(self.value)


@dataclasses.dataclass(frozen=True)
class ClassResult:
    """One class. ``support``: evaluated images that carry it; ``predicted``: predicted as it.

    ``precision`` and ``recall`` are given for both label modes; ``auc`` is one-vs-rest.
    """

    name: str
    support: int
    predicted: int
    precision: Interval
    recall: Interval
    f1: Interval
    auc: Interval


@dataclasses.dataclass(frozen=True)
class Scores:
    """Everything :func:`score_predictions` measures (see the module docstring)."""

    label_mode: str
    evaluated: int
    accuracy: Interval
    per_class: tuple[ClassResult, ...]
    confusion_matrix: tuple[tuple[int, ...], ...] | None
    """Single-label only: rows are the true class, columns the predicted class."""
    ece: float
    reliability: tuple[ReliabilityBin, ...]
    resamples: int
    confidence: float
    seed: int


def score_predictions(
    classes: Sequence[str],
    label_mode: str,
    probabilities: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> Scores:
    """Score ``probabilities [n, C]`` against ``targets`` (class indices ``[n]``, or 0/1 ``[n, C]``)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(targets).astype(np.int64)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] != len(classes):
        raise ValueError(f"need scores [n > 0, {len(classes)}], got shape {probs.shape}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, probs.shape[0], size=(resamples, probs.shape[0]))
    interval = _interval_maker(draws, confidence)
    if label_mode == "multi":
        hot = probs >= THRESHOLD
        accuracy = interval(lambda i: np.mean(hot[i] == (truth[i] > 0), axis=(-2, -1)))
        per_class = tuple(
            _class_result(name, hot[:, c], truth[:, c] > 0, probs[:, c], interval)
            for c, name in enumerate(classes)
        )
        matrix = None
    else:
        predicted = probs.argmax(axis=1)
        accuracy = interval(lambda i: np.mean(predicted[i] == truth[i], axis=-1))
        per_class = tuple(
            _class_result(name, predicted == c, truth == c, probs[:, c], interval)
            for c, name in enumerate(classes)
        )
        flat = np.bincount(truth * len(classes) + predicted, minlength=len(classes) ** 2)
        matrix = tuple(tuple(int(v) for v in row) for row in flat.reshape(len(classes), -1))
    bins = reliability(probs, truth)
    return Scores(
        label_mode=label_mode,
        evaluated=int(probs.shape[0]),
        accuracy=accuracy,
        per_class=per_class,
        confusion_matrix=matrix,
        ece=expected_calibration_error(bins),
        reliability=bins,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )


Metric = Callable[[IntArray], FloatArray | float]
"""A metric of the images at indices ``i``: ``i`` is ``[n]`` (the data) or ``[R, n]`` (draws)."""


def _interval_maker(draws: IntArray, confidence: float) -> Callable[[Metric], Interval]:
    tail = (1.0 - confidence) / 2.0 * 100.0
    everything = np.arange(draws.shape[1])

    def interval(metric: Metric) -> Interval:
        value = float(np.asarray(metric(everything)))
        resampled = np.asarray(metric(draws), dtype=np.float64)
        finite = resampled[np.isfinite(resampled)]
        if finite.size == 0:
            return Interval(value, math.nan, math.nan)
        low, high = np.percentile(finite, [tail, 100.0 - tail])
        return Interval(value, float(low), float(high))

    return interval


def _class_result(
    name: str,
    predicted: npt.NDArray[np.bool_],
    actual: npt.NDArray[np.bool_],
    scores: FloatArray,
    interval: Callable[[Metric], Interval],
) -> ClassResult:
    def ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)

    def hits(i: IntArray) -> FloatArray:
        return np.asarray(np.sum(predicted[i] & actual[i], axis=-1), dtype=np.float64)

    def count(flags: npt.NDArray[np.bool_], i: IntArray) -> FloatArray:
        return np.asarray(np.sum(flags[i], axis=-1), dtype=np.float64)

    return ClassResult(
        name=name,
        support=int(actual.sum()),
        predicted=int(predicted.sum()),
        precision=interval(lambda i: ratio(hits(i), count(predicted, i))),
        recall=interval(lambda i: ratio(hits(i), count(actual, i))),
        f1=interval(lambda i: ratio(2 * hits(i), count(predicted, i) + count(actual, i))),
        auc=interval(lambda i: _auc_rows(scores[i], actual[i])),
    )


def _auc_rows(scores: FloatArray, positives: npt.NDArray[np.bool_]) -> FloatArray | float:
    """Mann-Whitney AUC of one sample ``[n]`` or of each row of ``[R, n]`` (NaN without both)."""
    from ept_studio.core.metrics import binary_auc

    if scores.ndim == 1:
        return binary_auc(scores, positives)
    return np.array([binary_auc(s, p) for s, p in zip(scores, positives, strict=True)])


def reliability(probabilities: FloatArray, targets: IntArray) -> tuple[ReliabilityBin, ...]:
    """Top-label confidence vs accuracy in equal-width bins; multi-label: every (image, class)."""
    confidence, hits = top_label(probabilities, targets)
    return reliability_table(confidence, hits, RELIABILITY_BINS)
