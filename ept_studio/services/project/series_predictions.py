"""A prediction per series: the slice scores of an inference run, aggregated over each series.

A series' probabilities are the mean of its slices' probabilities (the default) or, for "finding
present" tasks, the maximum over slices of each class's probability, renormalised to sum to one.
The decisive slice is the slice with the highest probability for the series' predicted class: its
attention overlay is what the app shows for the series. A series is named by its representative
slice, the one its gallery tile shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from ept_studio.common.errors import ConfigError
from ept_studio.data.store import Project
from ept_studio.data.store_predictions import PredictionRow
from ept_studio.services.project.results import scores_of_run
from ept_studio.services.project.series import Series, group_series

Aggregation = Literal["mean", "max"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "max")

AGGREGATION_HELP = (
    "mean: the average of the slices' scores (the default). "
    "max: each finding's highest score on any slice, for 'is the finding present anywhere' "
    "questions."
)
"""What the aggregation choice means, in words for a tooltip or a --help line."""


@dataclasses.dataclass(frozen=True)
class SeriesPrediction:
    """One series' prediction from one inference run."""

    run_id: int
    series_key: str
    image_ids: tuple[int, ...]
    """The slices scored, in slice order (slices the run could not score are left out)."""
    predicted_class: str
    probabilities: dict[str, float]
    """Aggregated over the slices; the classes in the model's order."""
    aggregation: Aggregation
    decisive_image_id: int
    """The slice with the highest probability for ``predicted_class``."""
    calibrated: bool
    """Whether the slice scores were calibrated (temperature scaling) when the run made them."""
    series_number: int = 0
    """The series' 1-based position among the project's series (0: not known)."""
    representative_id: int = 0
    """The image id of the slice the series' gallery tile shows (0: not known): the middle one of
    all the series' slices in the project, scored by the run or not."""

    @property
    def slice_count(self) -> int:
        return len(self.image_ids)

    @property
    def probability(self) -> float:
        """The aggregated probability of the predicted class."""
        return self.probabilities[self.predicted_class]


def series_predictions(
    project: Project, run_id: int, aggregation: Aggregation | str = "mean"
) -> list[SeriesPrediction]:
    """Run ``run_id``'s per-image predictions aggregated per series, in project series order.

    Only the images the run scored count; an image removed from the project since is left out.
    """
    chosen = _aggregation(aggregation)
    rows = {row.image_id: row for row in project.predictions(run_id)}
    classes, model = scores_of_run(project, run_id)
    calibrated = model.calibration is not None
    whole = {one.key: (n, one) for n, one in enumerate(group_series(project.images()), start=1)}
    scored = group_series(image for image in project.images() if image.id in rows)
    return [
        _series_prediction(run_id, one, rows, classes, chosen, calibrated, *whole[one.key])
        for one in scored
    ]


def aggregate_scores(
    slice_scores: Sequence[Mapping[str, float]], classes: Sequence[str], aggregation: Aggregation
) -> np.ndarray:
    """The series' probabilities over ``classes`` from its slices' scores.

    ``mean``: the mean of the slices' probabilities. ``max``: each class's largest probability on
    any slice, divided by their sum so the series' probabilities still add up to one.
    """
    matrix = np.array([[float(s.get(c, 0.0)) for c in classes] for s in slice_scores], float)
    if aggregation == "mean":
        means: np.ndarray = matrix.mean(axis=0)
        return means
    peaks = matrix.max(axis=0)
    total = float(peaks.sum())
    return peaks / total if total > 0 else np.full(len(classes), 1.0 / len(classes))


def _series_prediction(
    run_id: int,
    series: Series,
    rows: Mapping[int, PredictionRow],
    classes: Sequence[str],
    aggregation: Aggregation,
    calibrated: bool,
    number: int,
    in_project: Series,
) -> SeriesPrediction:
    """``series``: the slices the run scored; ``in_project``: all of that series' slices."""
    slices = [rows[image_id] for image_id in series.image_ids]
    names = list(classes) or list(slices[0].scores)
    probabilities = aggregate_scores([row.scores for row in slices], names, aggregation)
    predicted = names[int(np.argmax(probabilities))]
    on_slices = np.array([row.scores.get(predicted, 0.0) for row in slices])
    return SeriesPrediction(
        run_id=run_id,
        series_key=series.key,
        image_ids=series.image_ids,
        predicted_class=predicted,
        probabilities={name: float(p) for name, p in zip(names, probabilities, strict=True)},
        aggregation=aggregation,
        decisive_image_id=slices[int(np.argmax(on_slices))].image_id,
        calibrated=calibrated,
        series_number=number,
        representative_id=in_project.representative.id,
    )


def _aggregation(value: Aggregation | str) -> Aggregation:
    for name in AGGREGATIONS:
        if value == name:
            return name
    raise ConfigError(f"unknown aggregation {value!r}: choose one of {', '.join(AGGREGATIONS)}")
