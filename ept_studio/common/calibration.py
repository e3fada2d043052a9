"""Calibration numbers shared by the few-shot protocol (core) and a run's results (services).

numpy only, so the results view computes them without torch. Top-label confidence against accuracy
in equal-width bins; multi-label scores count every (image, label) pair as one binary prediction.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


@dataclasses.dataclass(frozen=True)
class ReliabilityBin:
    """Confidence bin ``(low, high]``: how many predictions, their mean confidence and accuracy."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def top_label(
    probabilities: npt.ArrayLike, targets: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, hit) per prediction: class indices ``[n]`` or multi-hot ``[n, C]`` targets."""
    probs = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(targets)
    if truth.ndim == 2:
        positive = probs.ravel()
        probs = np.stack([1.0 - positive, positive], axis=1)
        truth = (truth.ravel() > 0).astype(np.int64)
    hits = probs.argmax(axis=1) == truth.astype(np.int64)
    return probs.max(axis=1), hits.astype(np.float64)


def reliability_table(
    confidence: np.ndarray, hits: np.ndarray, bins: int
) -> tuple[ReliabilityBin, ...]:
    """The ``bins`` equal-width bins of (confidence, hit) pairs; empty bins have NaN means."""
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    table = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        table.append(
            ReliabilityBin(
                low=b / bins,
                high=(b + 1) / bins,
                count=count,
                confidence=float(confidence[members].mean()) if count else math.nan,
                accuracy=float(hits[members].mean()) if count else math.nan,
            )
        )
    return tuple(table)


def expected_calibration_error(table: Sequence[ReliabilityBin]) -> float:
    """Sum over bins of (share of predictions) x |accuracy - mean confidence|; NaN when empty."""
    total = sum(b.count for b in table)
    if total == 0:
        return math.nan
    return float(sum(b.count / total * abs(b.accuracy - b.confidence) for b in table if b.count))
