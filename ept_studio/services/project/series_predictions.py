"""A prediction per series: the slice scores of an inference run, aggregated over each series.

A series' probabilities are the mean of its slices' probabilities (the default) or, for "finding
present" tasks, the maximum over slices of each class's probability, renormalised to sum to one.
The decisive slice is the slice with the highest probability for the series' predicted class: its
attention overlay is what the app shows for the series.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Aggregation = Literal["mean", "max"]
AGGREGATIONS: tuple[Aggregation, ...] = ("mean", "max")


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
