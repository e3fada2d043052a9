"""Calibrated scores and prediction sets in the K-shot protocol: one run's numbers, one cell's summary.

In each run the query images (none shares a group with the support) are split, seeded and
stratified by class, into a **calibration part** and an **evaluation part**: of each class's query
images, ``floor(m x fraction)`` go to calibration (half, rounded down, by default) and the rest to
evaluation. The split depends only on the protocol seed, K and the draw, so every method of a draw
is split the same way. A temperature (:func:`ept_studio.core.temperature.fit_calibration`) and
90 % split-conformal sets (:func:`ept_studio.core.conformal.fit_conformal`, on the temperature-scaled
probabilities, the app's ``mondrian="auto"`` rule) are fitted on the calibration part's logits; ECE
before and after scaling, the sets' coverage and their mean size are measured on the evaluation part
only, and so is the accuracy reported beside them (temperature scaling never changes the top class).

Finite-sample meaning, with ``n`` calibration images (per class when the sets are per class) and
``alpha = 1 - coverage``: when ``n >= 1 / alpha - 1`` the coverage over the random split is
guaranteed, ``1 - alpha <= E[coverage] <= 1 - alpha + 1 / (n + 1)`` (the upper bound assumes no tied
scores); below that the sets hold every class. Single-label runs only: a multi-label run records why
it has none.

One split is one draw of a random quantity: with 10-30 evaluation images its coverage moves by
several points from split to split, so a mean over five draws cannot test the bounds sharply. Each
run therefore also **re-splits** its query images ``resplits`` times (seeded, stratified as above;
no training again: the logits stay) and records the means over those splits: ECE before and after,
coverage and its Monte-Carlo standard error, set size, and the share of splits that calibrated and
that promised the coverage. Averaged over splits, the coverage estimates ``E[coverage]`` of the
draw itself, which the bounds above are about.

numpy (and the core's numpy / scipy / crepes functions) only: no torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ept_studio.common.calibration import (
    expected_calibration_error,
    reliability_table,
    top_label,
)
from ept_studio.core.conformal import (
    ConformalSets,
    NoPredictionSets,
    fit_conformal,
    minimum_images,
    prediction_sets,
)
from ept_studio.core.temperature import Calibration, apply_temperature, fit_calibration

DEFAULT_FRACTION = 0.5
DEFAULT_COVERAGE = 0.9
DEFAULT_RESPLITS = 1000
SOURCE = "the calibration half of the query images"


@dataclasses.dataclass(frozen=True)
class CalibrationProtocol:
    """How each run's query images are split and what the sets promise.

    ``fraction``: the share of each class's query images (rounded down) that calibrates;
    ``coverage``: the sets' target coverage; ``bins``: ECE's equal-width bins; ``seed``: the
    protocol seed the split is derived from; ``resplits``: how many further seeded splits each run
    is measured on (0: the one split only).
    """

    fraction: float = DEFAULT_FRACTION
    coverage: float = DEFAULT_COVERAGE
    bins: int = 15
    seed: int = 0
    resplits: int = DEFAULT_RESPLITS

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"the calibration fraction must be in (0, 1), got {self.fraction}")
        if not 0.0 < self.coverage < 1.0:
            raise ValueError(f"the coverage must be in (0, 1), got {self.coverage}")
        if self.resplits < 0:
            raise ValueError(f"the number of re-splits must be >= 0, got {self.resplits}")


def split_query(
    targets: npt.ArrayLike,
    shots: int,
    draw: int,
    protocol: CalibrationProtocol,
    resplit: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, evaluation) positions into the query, stratified by class and seeded by the
    protocol seed, K, the draw and ``resplit`` (0: the run's own split); both sorted, disjoint,
    together every position once."""
    labels = np.asarray(targets, dtype=np.int64)
    entropy = [protocol.seed, shots, draw, 271_828] + ([resplit] if resplit else [])
    rng = np.random.default_rng(entropy)
    calibration: list[int] = []
    evaluation: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        order = members[rng.permutation(members.size)]
        cut = math.floor(members.size * protocol.fraction)
        calibration.extend(int(i) for i in order[:cut])
        evaluation.extend(int(i) for i in order[cut:])
    return np.array(sorted(calibration), dtype=np.int64), np.array(sorted(evaluation), np.int64)


def ece(probabilities: np.ndarray, targets: np.ndarray, bins: int) -> float:
    """Top-label ECE over ``bins`` equal-width bins (NaN with no images)."""
    confidence, hits = top_label(probabilities, targets)
    return expected_calibration_error(reliability_table(confidence, hits, bins))


def coverage_upper_bound(sets: ConformalSets) -> float:
    """``1 - alpha + 1 / (n + 1)``, with ``n`` the calibration images (per class: the fewest)."""
    n = min(sets.class_counts) if sets.mondrian else sets.n
    return min(1.0, sets.coverage + 1.0 / (n + 1))


def run_calibration(
    logits: npt.ArrayLike,
    targets: npt.ArrayLike,
    shots: int,
    draw: int,
    protocol: CalibrationProtocol,
    label_mode: str = "single",
) -> dict[str, Any]:
    """One run's calibration and prediction-set numbers (JSON-ready; see the module docstring):
    those of its own split, and under ``resplits`` the means over the re-splits."""
    if str(getattr(label_mode, "value", label_mode)) != "single":
        return {"skipped": "calibration and prediction sets are measured for single-label runs"}
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets, dtype=np.int64)
    row = split_numbers(z, y, *split_query(y, shots, draw, protocol), protocol)
    if protocol.resplits:
        row["resplits"] = resplit_means(z, y, shots, draw, protocol)
    return row


def split_numbers(
    z: np.ndarray, y: np.ndarray, cal: np.ndarray, ev: np.ndarray, protocol: CalibrationProtocol
) -> dict[str, Any]:
    """Temperature and sets fitted on the ``cal`` positions, measured on the ``ev`` positions."""
    fitted = fit_calibration(z[cal], y[cal], source=SOURCE)
    temperature = fitted.temperature if isinstance(fitted, Calibration) else 1.0
    before = apply_temperature(z[ev], 1.0)
    after = apply_temperature(z[ev], temperature)
    row: dict[str, Any] = {
        "calibration_size": int(cal.size),
        "evaluation_size": int(ev.size),
        "calibration_class_counts": np.bincount(y[cal], minlength=z.shape[1]).tolist(),
        "accuracy": _number(float(np.mean(after.argmax(axis=1) == y[ev])) if ev.size else math.nan),
        "temperature": _number(temperature) if isinstance(fitted, Calibration) else None,
        "uncalibrated_reason": None if isinstance(fitted, Calibration) else fitted.reason,
        "ece_before": _number(ece(before, y[ev], protocol.bins)),
        "ece_after": _number(ece(after, y[ev], protocol.bins)),
        "coverage_target": protocol.coverage,
    }
    sets = fit_conformal(apply_temperature(z[cal], temperature), y[cal], coverage=protocol.coverage)
    return {**row, **_set_numbers(sets, after, y[ev], protocol.coverage)}


def resplit_means(
    z: np.ndarray, y: np.ndarray, shots: int, draw: int, protocol: CalibrationProtocol
) -> dict[str, Any]:
    """Means over re-splits ``1..resplits`` of the query (see the module docstring).

    ``coverage_mc_se``: the Monte-Carlo standard error of the mean coverage over the splits (how
    far it may lie from the draw's own ``E[coverage]``); ``calibrated_share`` /
    ``guaranteed_share``: the share of splits with a temperature / with the coverage promised.
    """
    rows = [
        split_numbers(z, y, *split_query(y, shots, draw, protocol, r), protocol)
        for r in range(1, protocol.resplits + 1)
    ]
    with_sets = [r for r in rows if r["coverage"] is not None]
    coverage = np.array([float(r["coverage"]) for r in with_sets])
    temperatures = [r["temperature"] for r in rows if r["temperature"] is not None]
    return {
        "splits": len(rows),
        "ece_before": _mean([r["ece_before"] for r in rows]),
        "ece_after": _mean([r["ece_after"] for r in rows]),
        "calibrated_share": _number(len(temperatures) / len(rows)) if rows else None,
        "temperature_median": _number(float(np.median(temperatures))) if temperatures else None,
        "splits_with_sets": len(with_sets),
        "coverage": _mean(coverage.tolist()),
        "coverage_mc_se": _number(float(coverage.std(ddof=1) / math.sqrt(coverage.size)))
        if coverage.size > 1
        else None,
        "coverage_upper_bound": _mean([r["coverage_upper_bound"] for r in with_sets]),
        "set_size": _mean([r["set_size"] for r in with_sets]),
        "guaranteed_share": _number(sum(bool(r["guaranteed"]) for r in rows) / len(rows))
        if rows
        else None,
    }


def _set_numbers(
    sets: ConformalSets | NoPredictionSets,
    probabilities: np.ndarray,
    targets: np.ndarray,
    target: float,
) -> dict[str, Any]:
    if isinstance(sets, NoPredictionSets) or targets.size == 0:
        reason = sets.reason if isinstance(sets, NoPredictionSets) else "no evaluation images"
        return {
            "coverage": None,
            "set_size": None,
            "empty_sets": None,
            "guaranteed": False,
            "mondrian": False,
            "coverage_upper_bound": None,
            "sets_reason": reason,
        }
    chosen = prediction_sets(probabilities, sets.thresholds)
    hits = [int(t) in s for s, t in zip(chosen, targets, strict=True)]
    return {
        "coverage": _number(float(np.mean(hits))),
        "set_size": _number(float(np.mean([len(s) for s in chosen]))),
        "empty_sets": sum(not s for s in chosen),
        "guaranteed": sets.guaranteed,
        "mondrian": sets.mondrian,
        "coverage_upper_bound": _number(coverage_upper_bound(sets)),
        "sets_reason": None if sets.guaranteed else sets.statement,
        "needed": minimum_images(target),
    }


def summarise_calibration(rows: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """One cell's means over its runs, and the coverage's finite-sample bounds.

    ``coverage_low`` is ``1 - alpha``; ``coverage_high`` the mean over the runs of each run's
    ``1 - alpha + 1 / (n + 1)``, so ``coverage_low <= E[mean coverage] <= coverage_high`` when
    every run is guaranteed. ``coverage_se``: the standard error of the mean over the runs.
    """
    measured = [r for r in rows if r is not None and "skipped" not in r]
    if not measured:
        return None
    with_sets = [r for r in measured if r.get("coverage") is not None]
    coverage = [float(r["coverage"]) for r in with_sets]
    return {
        "runs": len(measured),
        "calibration_size_mean": _mean([r["calibration_size"] for r in measured]),
        "calibration_size_min": min(int(r["calibration_size"]) for r in measured),
        "calibration_size_max": max(int(r["calibration_size"]) for r in measured),
        "evaluation_size_mean": _mean([r["evaluation_size"] for r in measured]),
        "accuracy_mean": _mean([r["accuracy"] for r in measured]),
        "calibrated_runs": sum(r["temperature"] is not None for r in measured),
        "temperature_mean": _mean([r["temperature"] for r in measured]),
        "ece_before_mean": _mean([r["ece_before"] for r in measured]),
        "ece_after_mean": _mean([r["ece_after"] for r in measured]),
        "runs_with_sets": len(with_sets),
        "guaranteed_runs": sum(bool(r["guaranteed"]) for r in with_sets),
        "mondrian_runs": sum(bool(r["mondrian"]) for r in with_sets),
        "coverage_target": float(measured[0]["coverage_target"]),
        "coverage_mean": _mean(coverage),
        "coverage_se": _number(float(np.std(coverage, ddof=1) / math.sqrt(len(coverage))))
        if len(coverage) > 1
        else None,
        "coverage_low": float(measured[0]["coverage_target"]),
        "coverage_high": _mean([r["coverage_upper_bound"] for r in with_sets]),
        "set_size_mean": _mean([r["set_size"] for r in with_sets]),
        "empty_sets": sum(int(r["empty_sets"]) for r in with_sets),
        "resplits": summarise_resplits([r.get("resplits") for r in measured]),
    }


def summarise_resplits(rows: Sequence[Mapping[str, Any] | None]) -> dict[str, Any] | None:
    """One cell's means over its runs of each run's re-split means (None unless every run has
    them). ``coverage_mc_se`` is the Monte-Carlo standard error of that mean; ``coverage_se`` the
    spread over the draws (a draw's own ``E[coverage]`` differs from the next draw's, each within
    the bounds). ``coverage_high``: the mean of the runs' ``1 - alpha + 1 / (n + 1)``."""
    if not rows or any(r is None for r in rows):
        return None
    runs = [r for r in rows if r is not None]
    with_sets = [r for r in runs if r["coverage"] is not None]
    coverage = [float(r["coverage"]) for r in with_sets]
    mc = [float(r["coverage_mc_se"] or 0.0) for r in with_sets]
    return {
        "splits": int(runs[0]["splits"]),
        "ece_before_mean": _mean([r["ece_before"] for r in runs]),
        "ece_after_mean": _mean([r["ece_after"] for r in runs]),
        "calibrated_share": _mean([r["calibrated_share"] for r in runs]),
        "temperature_median": _mean([r["temperature_median"] for r in runs]),
        "runs_with_sets": len(with_sets),
        "coverage_mean": _mean(coverage),
        "coverage_mc_se": _number(math.sqrt(sum(v * v for v in mc)) / len(mc)) if mc else None,
        "coverage_se": _number(float(np.std(coverage, ddof=1) / math.sqrt(len(coverage))))
        if len(coverage) > 1
        else None,
        "coverage_high": _mean([r["coverage_upper_bound"] for r in with_sets]),
        "set_size_mean": _mean([r["set_size"] for r in with_sets]),
        "guaranteed_share": _mean([r["guaranteed_share"] for r in runs]),
    }


def recalibrate(document: dict[str, Any]) -> bool:
    """Measure a results document's calibration again from the query scores its runs keep.

    Every run that carries ``query_scores`` gets its ``calibration`` anew (this module's current
    rules and the document's protocol), and each summary's ``calibration`` is summarised anew from
    its runs. Returns whether any run had scores; the document is changed in place.
    """
    settings = document.get("protocol", {})
    protocol = CalibrationProtocol(
        fraction=float(settings.get("calibration_fraction", DEFAULT_FRACTION)),
        coverage=float(settings.get("set_coverage", DEFAULT_COVERAGE)),
        bins=int(settings.get("reliability_bins", 15)),
        seed=int(settings.get("seed", 0)),
        resplits=int(settings.get("calibration_resplits", DEFAULT_RESPLITS)),
    )
    label_mode = str(document.get("dataset", {}).get("label_mode", "single"))
    scored = [run for run in document.get("runs", []) if run.get("query_scores")]
    for run in scored:
        scores = run["query_scores"]
        run["calibration"] = run_calibration(
            scores["logits"], scores["targets"], run["shots"], run["draw"], protocol, label_mode
        )
    for summary in document.get("summaries", []):
        runs = [
            r for r in scored if r["method"] == summary["method"] and r["shots"] == summary["shots"]
        ]
        if runs:
            summary["calibration"] = summarise_calibration([r["calibration"] for r in runs])
    return bool(scored)


def _mean(values: Sequence[Any]) -> float | None:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return _number(float(np.mean(finite))) if finite else None


def _number(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 6)
