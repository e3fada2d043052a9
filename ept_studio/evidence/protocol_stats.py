"""Aggregating protocol runs: mean +- sd over runs, a seeded bootstrap CI, AUC, ECE, reliability.

The confidence interval is a two-level percentile bootstrap of the mean primary metric: each
resample draws the runs with replacement and, inside each drawn run, its query images with
replacement, so it reflects both the spread over support draws / seeds and the finite query set
(with a single run it is the query-set uncertainty alone). Resamples come from one seeded numpy
generator: the same results give the same interval.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ept_studio.common.calibration import ReliabilityBin, reliability_table, top_label
from ept_studio.core.metrics import mean_average_precision
from ept_studio.core.model import LabelMode
from ept_studio.evidence.protocol import PRIMARY_METRIC, EpisodeResult, ProtocolConfig
from ept_studio.evidence.protocol_calibration import summarise_calibration

MetricFunction = Callable[[np.ndarray, np.ndarray], float]


@dataclasses.dataclass(frozen=True)
class MethodSummary:
    """One method at one K over all its runs; metrics are fractions in [0, 1]."""

    method: str
    shots: int
    runs: int
    failed_runs: int
    metric: str
    mean: float
    sd: float
    ci_low: float
    ci_high: float
    auc_mean: float
    auc_sd: float
    ece_mean: float
    ece_sd: float
    balanced_accuracy_mean: float
    train_seconds_mean: float
    trainable_parameters: int
    classes_min: int
    classes_max: int
    query_size_mean: float
    reliability: tuple[ReliabilityBin, ...]
    calibration: dict[str, Any] | None = None
    """Means of the runs' calibration numbers and the coverage's bounds
    (:func:`~ept_studio.evidence.protocol_calibration.summarise_calibration`)."""


def summarise(
    results: Sequence[EpisodeResult], label_mode: LabelMode, config: ProtocolConfig
) -> list[MethodSummary]:
    """One summary per (method, K), in the order the results first name them."""
    keys: list[tuple[str, int]] = []
    for result in results:
        if (result.method, result.shots) not in keys:
            keys.append((result.method, result.shots))
    summaries = []
    for method, shots in keys:
        runs = [r for r in results if r.method == method and r.shots == shots]
        summaries.append(_summary(method, shots, runs, LabelMode(label_mode), config))
    return summaries


def _summary(
    method: str,
    shots: int,
    runs: list[EpisodeResult],
    label_mode: LabelMode,
    config: ProtocolConfig,
) -> MethodSummary:
    metric = PRIMARY_METRIC[label_mode]
    values = [r.metrics[metric] for r in runs]
    seed = config.seed * 7_368_787 + shots * 31 + sum(map(ord, method))
    low, high = bootstrap_ci(
        runs, metric_function(label_mode), config.resamples, config.confidence, seed
    )
    auc_mean, auc_sd = mean_sd([r.metrics.get("macro_auc", math.nan) for r in runs])
    ece_mean, ece_sd = mean_sd([r.metrics.get("ece", math.nan) for r in runs])
    mean, sd = mean_sd(values)
    return MethodSummary(
        method=method,
        shots=shots,
        runs=len(runs),
        failed_runs=sum(r.failure is not None for r in runs),
        metric=metric,
        mean=mean,
        sd=sd,
        ci_low=low,
        ci_high=high,
        auc_mean=auc_mean,
        auc_sd=auc_sd,
        ece_mean=ece_mean,
        ece_sd=ece_sd,
        balanced_accuracy_mean=mean_sd(
            [r.metrics.get("balanced_accuracy", math.nan) for r in runs]
        )[0],
        train_seconds_mean=float(np.mean([r.train_seconds for r in runs])),
        trainable_parameters=runs[0].trainable_parameters,
        classes_min=min(len(r.classes) for r in runs),
        classes_max=max(len(r.classes) for r in runs),
        query_size_mean=float(np.mean([r.query_size for r in runs])),
        reliability=reliability_bins(runs, config.reliability_bins),
        calibration=summarise_calibration([r.calibration for r in runs]),
    )


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite values."""
    finite = np.array([v for v in values if not math.isnan(v)], dtype=np.float64)
    if finite.size == 0:
        return math.nan, math.nan
    sd = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return float(finite.mean()), sd


def metric_function(label_mode: LabelMode) -> MetricFunction:
    """The primary metric on (probabilities, targets): accuracy, or mAP for multi-label."""
    if LabelMode(label_mode) is LabelMode.MULTI:
        return mean_average_precision

    def accuracy(probabilities: np.ndarray, targets: np.ndarray) -> float:
        return float(np.mean(probabilities.argmax(axis=1) == targets))

    return accuracy


def bootstrap_ci(
    runs: Sequence[EpisodeResult],
    metric: MetricFunction,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float]:
    """Percentile interval of the mean metric under the two-level bootstrap (module docstring)."""
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    for index in range(resamples):
        chosen = rng.integers(0, len(runs), size=len(runs))
        scores = []
        for run_index in chosen:
            run = runs[int(run_index)]
            rows = rng.integers(0, run.targets.shape[0], size=run.targets.shape[0])
            scores.append(metric(run.probabilities[rows], run.targets[rows]))
        finite = [s for s in scores if not math.isnan(s)]
        means[index] = float(np.mean(finite)) if finite else math.nan
    means = means[~np.isnan(means)]
    if means.size == 0:
        return math.nan, math.nan
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def reliability_bins(runs: Sequence[EpisodeResult], bins: int) -> tuple[ReliabilityBin, ...]:
    """Top-label confidence vs accuracy over every query prediction of ``runs`` (pooled).

    Multi-label runs count each (image, label) pair as one binary prediction, as ECE does.
    """
    pairs = [top_label(run.probabilities, run.targets) for run in runs]
    confidence = np.concatenate([c for c, _ in pairs])
    hits = np.concatenate([h for _, h in pairs])
    return reliability_table(confidence, hits, bins)
