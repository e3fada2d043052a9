"""Prediction sets with a stated coverage: split conformal classification on calibrated scores.

A prediction set holds every class whose score is not too strange compared with calibration images
the model was not trained on; over new images from the same source, the set holds the true class
with at least the chosen coverage (90 % by default). The non-conformity of a class is
``1 - p(class)`` on the calibrated probabilities; a class is in the set when its non-conformity is at
most the stored threshold (one threshold for every class, or one per class).

Fitting goes through ``crepes`` (BSD-3): it works on pre-computed non-conformity scores with numpy,
does class-conditional (Mondrian) calibration through its ``bins``, and needs neither torch (unlike
TorchCP) nor a scikit-learn estimator to wrap (unlike MAPIE); crepes itself imports scikit-learn
when it loads, so it is imported only here, only when fitting. Its non-smoothed p-values are used
(the smoothed ones are random, so no threshold could reproduce them): a class is in crepes' set when
``(#{calibration scores >= a} + 1) / (n + 1) >= 1 - coverage``. That rule is monotone in ``a``, so it
is exactly "``a`` at most a threshold"; the threshold is found by asking crepes about the
calibration scores themselves, and :func:`prediction_set` then needs only numpy (the ONNX path).

Finite-sample honesty: with ``n`` calibration images (per class when class-conditional) the
guarantee holds only when ``n >= 1 / alpha - 1`` (``alpha = 1 - coverage``: 9 images for 90 %).
Below that, crepes' sets hold every class; the result says it cannot promise the coverage.

Class-conditional (Mondrian) rule, ``mondrian="auto"``: one threshold per class when the classes
are imbalanced (the smallest class has fewer than half the calibration images of the largest) and
every class has enough images to promise the coverage on its own; otherwise one threshold for all,
which promises the coverage over all images, not per class. Multi-label models get one threshold per
class chosen on that class's positive images (:func:`fit_multilabel_sets`), which keeps each class's
recall at least the coverage, with the same count check per class.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ept_studio.common.config import from_json_block, is_finite_number

DEFAULT_COVERAGE = 0.90
EVERY_CLASS = 1.0
"""The threshold that keeps every class (a non-conformity ``1 - p`` is never above 1)."""
_TOLERANCE = 1e-9


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConformalSets:
    """How to turn calibrated probabilities into prediction sets, and how far they can be trusted.

    ``thresholds``: one (every class) or one per class; a class is in the set when
    ``1 - probability <= threshold``. ``mondrian``: the thresholds are per class. ``n``: calibration
    images; ``class_counts``: per class (multi-label: images where the class is present).
    ``guaranteed``: whether those counts are enough to promise ``coverage``.
    """

    coverage: float
    thresholds: tuple[float, ...]
    mondrian: bool
    label_mode: str
    n: int
    class_counts: tuple[int, ...]
    guaranteed: bool

    def __post_init__(self) -> None:
        if not is_finite_number(self.coverage) or not 0.0 < float(self.coverage) < 1.0:
            raise ValueError(f"'coverage' must be between 0 and 1, got {self.coverage!r:.40}")
        object.__setattr__(self, "coverage", float(self.coverage))
        if self.label_mode not in ("single", "multi"):
            raise ValueError(
                f"'label_mode' must be 'single' or 'multi', got {self.label_mode!r:.40}"
            )
        if not isinstance(self.mondrian, bool) or not isinstance(self.guaranteed, bool):
            raise ValueError("'mondrian' and 'guaranteed' must be true or false")
        if not _is_count(self.n):
            raise ValueError(f"'n' must be a whole number >= 0, got {self.n!r:.40}")
        counts = _sequence(self.class_counts, "class_counts")
        if not counts or not all(map(_is_count, counts)):
            raise ValueError("'class_counts' must be whole numbers >= 0, one per class")
        object.__setattr__(self, "class_counts", tuple(int(c) for c in counts))
        thresholds = _sequence(self.thresholds, "thresholds")
        if not thresholds or not all(is_finite_number(t) and 0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError("'thresholds' must be numbers from 0 to 1")
        expected = len(self.class_counts) if self.mondrian else 1
        if len(thresholds) != expected:
            raise ValueError(
                f"{len(thresholds)} thresholds for {'per-class' if self.mondrian else 'global'} "
                f"sets over {len(self.class_counts)} classes (expected {expected})"
            )
        object.__setattr__(self, "thresholds", tuple(float(t) for t in thresholds))

    @property
    def classes(self) -> int:
        return len(self.class_counts)

    @property
    def needed(self) -> int:
        """How many calibration images (per class when per-class) the coverage needs."""
        return minimum_images(self.coverage)

    @property
    def statement(self) -> str:
        """What the sets promise, in one plain sentence."""
        percent = f"{self.coverage * 100:g} %"
        where = "for each class" if self.mondrian else "over all images"
        if self.label_mode == "multi":
            what, unit = "each present label", "images where that label is present"
        else:
            what, unit = "the true class", "calibration images"
        if self.guaranteed:
            return (
                f"Sets hold {what} at least {percent} of the time ({where}), for images like the "
                f"{self.n} calibration images."
            )
        fewest = min(self.class_counts) if self.mondrian else self.n
        scope = " for its smallest class" if self.mondrian else ""
        kept = (
            "classes with fewer are in every set" if self.mondrian else "the sets keep every class"
        )
        return (
            f"Cannot promise {percent} coverage: {fewest} {unit}{scope}, at least {self.needed} "
            f"are needed; {kept}."
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["thresholds"] = list(self.thresholds)
        data["class_counts"] = list(self.class_counts)
        return data

    @classmethod
    def from_dict(cls, data: object) -> ConformalSets:
        """Rebuild from :meth:`to_dict` output; ValueError naming what is wrong."""
        return from_json_block(cls, data, "conformal")


@dataclasses.dataclass(frozen=True)
class NoPredictionSets:
    """No sets can be made; ``reason`` is a sentence the app can show as it is."""

    reason: str


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _sequence(value: object, name: str) -> Sequence[Any]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{name!r} must be a list")
    return value


def _alpha(coverage: float) -> float:
    if not is_finite_number(coverage) or not 0.0 < float(coverage) < 1.0:
        raise ValueError(f"the coverage must be between 0 and 1, got {coverage!r:.40}")
    return 1.0 - float(coverage)


def minimum_images(coverage: float) -> int:
    """The fewest calibration images ``n`` with ``n >= 1 / alpha - 1`` (9 for 90 %)."""
    return max(0, math.ceil(1.0 / _alpha(coverage) - 1.0 - _TOLERANCE))


def nonconformity(probabilities: npt.ArrayLike) -> np.ndarray:
    """``1 - p`` for every class, in float64 (what the thresholds compare against)."""
    return 1.0 - np.asarray(probabilities, dtype=np.float64)


def prediction_set(probabilities: npt.ArrayLike, thresholds: Sequence[float]) -> list[int]:
    """The class indices in one image's set: ``1 - p[c] <= threshold`` (global or ``[c]``).

    The same sets as crepes' non-smoothed ``predict_set``; may be empty when no class is typical.
    """
    row = nonconformity(probabilities)
    if row.ndim != 1:
        raise ValueError(f"one image's probabilities [C] expected, got shape {row.shape}")
    limits = np.asarray(thresholds, dtype=np.float64)
    if limits.size not in (1, row.size):
        raise ValueError(f"{limits.size} thresholds for {row.size} classes")
    return [int(c) for c in np.flatnonzero(row <= limits)]


def prediction_sets(probabilities: npt.ArrayLike, thresholds: Sequence[float]) -> list[list[int]]:
    """:func:`prediction_set` for every row of ``[n, C]`` probabilities."""
    return [prediction_set(row, thresholds) for row in np.asarray(probabilities)]


def _crepes_threshold(scores: np.ndarray, coverage: float) -> float:
    """The largest non-conformity crepes still puts in a set, for one group's calibration scores.

    Asked of crepes on the calibration scores themselves and :data:`EVERY_CLASS`: whether ``a`` is
    in the set depends only on how many calibration scores are ``>= a``, so the answer at these
    candidates settles every other ``a`` (in the set exactly when ``a <= threshold``).
    """
    from crepes import ConformalClassifier

    candidates = np.unique(np.append(scores, EVERY_CLASS))
    if scores.size == 0:
        return EVERY_CLASS
    classifier = ConformalClassifier().fit(scores)
    kept = classifier.predict_set(candidates, confidence=coverage, smoothing=False).astype(bool)
    return float(candidates[kept].max())


def choose_mondrian(class_counts: Sequence[int], coverage: float) -> bool:
    """The ``auto`` rule: per-class thresholds when the classes are imbalanced (the smallest has
    fewer than half the images of the largest) and every class has enough to promise the coverage."""
    counts = list(class_counts)
    imbalanced = 2 * min(counts) < max(counts)
    return bool(imbalanced and min(counts) >= minimum_images(coverage))


def fit_conformal(
    probabilities: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    coverage: float = DEFAULT_COVERAGE,
    mondrian: bool | str = "auto",
) -> ConformalSets | NoPredictionSets:
    """Split-conformal sets for a single-label model from calibrated ``[n, C]`` probabilities and
    the class indices ``[n]`` of images it was not trained on. See the module docstring for
    ``mondrian="auto"``; True or False forces per-class or global thresholds."""
    probs = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    _alpha(coverage)
    if probs.ndim != 2 or y.shape != (probs.shape[0],):
        raise ValueError(
            f"probabilities [n, C] and n targets expected, got {probs.shape}, {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= probs.shape[1]):
        raise ValueError("a target is not one of the model's classes")
    n, classes = probs.shape
    if n == 0:
        return NoPredictionSets("no prediction sets: there are no calibration images")
    counts = np.bincount(y, minlength=classes)
    per_class = choose_mondrian(counts.tolist(), coverage) if mondrian == "auto" else bool(mondrian)
    scores = 1.0 - probs[np.arange(n), y]
    if per_class:
        thresholds = tuple(_crepes_threshold(scores[y == c], coverage) for c in range(classes))
        fewest = int(counts.min())
    else:
        thresholds = (_crepes_threshold(scores, coverage),)
        fewest = n
    return ConformalSets(
        coverage=coverage,
        thresholds=thresholds,
        mondrian=per_class,
        label_mode="single",
        n=n,
        class_counts=tuple(int(c) for c in counts),
        guaranteed=bool(fewest >= minimum_images(coverage)),
    )


def fit_multilabel_sets(
    probabilities: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    coverage: float = DEFAULT_COVERAGE,
) -> ConformalSets | NoPredictionSets:
    """Per-class thresholds for a multi-label model from calibrated sigmoid scores ``[n, C]`` and
    multi-hot targets ``[n, C]``: class ``c``'s threshold is fitted on the images where ``c`` is
    present, so each class's recall is at least ``coverage`` when it has enough such images."""
    probs = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(targets) > 0
    _alpha(coverage)
    if probs.ndim != 2 or truth.shape != probs.shape:
        raise ValueError(
            f"probabilities and targets [n, C] expected, got {probs.shape}, {truth.shape}"
        )
    n, classes = probs.shape
    if n == 0:
        return NoPredictionSets("no prediction sets: there are no calibration images")
    scores = 1.0 - probs
    thresholds = tuple(_crepes_threshold(scores[truth[:, c], c], coverage) for c in range(classes))
    counts = tuple(int(truth[:, c].sum()) for c in range(classes))
    return ConformalSets(
        coverage=coverage,
        thresholds=thresholds,
        mondrian=True,
        label_mode="multi",
        n=n,
        class_counts=counts,
        guaranteed=bool(min(counts) >= minimum_images(coverage)),
    )
