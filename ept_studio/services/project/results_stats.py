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
from ept_studio.core.conformal import ConformalSets

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


def uncalibrated_probabilities(
    probabilities: npt.ArrayLike, temperature: float, label_mode: str
) -> FloatArray:
    """The scores before temperature scaling, recovered from calibrated ones and ``T``.

    Calibrated scores are ``softmax(z / T)``, so ``T * log p`` is ``z`` less a constant per row
    and ``softmax(T * log p) = softmax(z)`` exactly; multi-label scores are ``sigmoid(z / T)``,
    so ``sigmoid(T * logit p) = sigmoid(z)``. A score of exactly 0 (or 1) stays 0 (or 1).
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    with np.errstate(divide="ignore"):
        if label_mode == "multi":
            logits = temperature * (np.log(probs) - np.log1p(-probs))
            return np.asarray(0.5 * (1.0 + np.tanh(0.5 * logits)), dtype=np.float64)
        logits = temperature * np.log(probs)
    logits = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(logits)
    return np.asarray(exponentials / exponentials.sum(axis=1, keepdims=True), dtype=np.float64)


def bin_members(
    probabilities: npt.ArrayLike, targets: npt.ArrayLike, bins: int = RELIABILITY_BINS
) -> tuple[tuple[int, ...], ...]:
    """For each reliability bin, the rows (images) with a prediction in it: the top-label
    confidence, or for multi-label scores any of the image's (class) predictions."""
    probs = np.asarray(probabilities, dtype=np.float64)
    confidence, _ = top_label(probs, targets)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    rows = np.arange(confidence.size) // (probs.shape[1] if np.ndim(targets) == 2 else 1)
    return tuple(tuple(sorted({int(r) for r in rows[index == b]})) for b in range(bins))


@dataclasses.dataclass(frozen=True)
class CalibrationCheck:
    """The scores before and after temperature scaling, on the same scored images.

    ``temperature`` None: the scores are uncalibrated (``reason`` says why), and before and
    after are the same. ``members_before`` / ``members_after``: per reliability bin, the indices
    of the scored images with a prediction in it.
    """

    temperature: float | None
    reason: str | None
    fitted_on: int
    """Calibration images the temperature was fitted on (0: none)."""
    source: str
    evaluated: int
    ece_before: float
    ece_after: float
    reliability_before: tuple[ReliabilityBin, ...]
    reliability_after: tuple[ReliabilityBin, ...]
    members_before: tuple[tuple[int, ...], ...]
    members_after: tuple[tuple[int, ...], ...]

    @property
    def calibrated(self) -> bool:
        return self.temperature is not None


def check_calibration(
    probabilities: npt.ArrayLike,
    targets: npt.ArrayLike,
    label_mode: str,
    *,
    temperature: float | None,
    reason: str | None = None,
    fitted_on: int = 0,
    source: str = "",
) -> CalibrationCheck:
    """Reliability and ECE of stored (calibrated) scores and of the scores before scaling,
    recovered with :func:`uncalibrated_probabilities`; without a temperature both are the same."""
    after = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(targets).astype(np.int64)
    before = (
        after if temperature is None else uncalibrated_probabilities(after, temperature, label_mode)
    )
    bins_before, bins_after = reliability(before, truth), reliability(after, truth)
    return CalibrationCheck(
        temperature=temperature,
        reason=reason,
        fitted_on=fitted_on,
        source=source,
        evaluated=int(after.shape[0]),
        ece_before=expected_calibration_error(bins_before),
        ece_after=expected_calibration_error(bins_after),
        reliability_before=bins_before,
        reliability_after=bins_after,
        members_before=bin_members(before, truth),
        members_after=bin_members(after, truth),
    )


@dataclasses.dataclass(frozen=True)
class SetResults:
    """Prediction sets on the scored images against the coverage they were made for.

    Single-label: ``covered`` of ``evaluated`` images had their true class in the set;
    multi-label: ``covered`` of ``evaluated`` present labels were in their image's set.
    ``statement``: what the sets promise, from the calibration images (finite-sample).
    """

    coverage: float
    label_mode: str
    covered: int
    evaluated: int
    images: int
    mean_size: float
    guaranteed: bool
    calibration_images: int
    needed: int
    statement: str

    @property
    def empirical(self) -> float:
        return self.covered / self.evaluated if self.evaluated else math.nan


def score_sets(
    sets: Sequence[Sequence[int]], targets: npt.ArrayLike, rule: ConformalSets
) -> SetResults:
    """Empirical coverage and mean set size of ``sets`` (class indices per image) on
    ``targets`` (class indices ``[n]`` or multi-hot ``[n, C]``)."""
    truth = np.asarray(targets)
    if truth.ndim == 2:
        present = [
            (row, int(c)) for row in range(truth.shape[0]) for c in np.flatnonzero(truth[row])
        ]
        covered = sum(c in sets[row] for row, c in present)
        evaluated = len(present)
    else:
        covered = sum(int(t) in chosen for t, chosen in zip(truth, sets, strict=True))
        evaluated = int(truth.shape[0])
    return SetResults(
        coverage=rule.coverage,
        label_mode=rule.label_mode,
        covered=int(covered),
        evaluated=evaluated,
        images=len(sets),
        mean_size=float(np.mean([len(s) for s in sets])) if sets else math.nan,
        guaranteed=rule.guaranteed,
        calibration_images=min(rule.class_counts) if rule.mondrian else rule.n,
        needed=rule.needed,
        statement=rule.statement,
    )
