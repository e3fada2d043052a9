"""Which images to look at again after an inference run: the misclassified and the most uncertain.

Both read the predictions the project stored for a run (by default the latest finished run that has
any). Classes are compared by name, and only the classes the run scored: a class added after the
model was trained cannot be judged wrong. Multi-label projects threshold each class's score at
:data:`THRESHOLD`.
"""

from __future__ import annotations

import math

from ept_studio.data.store import LabelMode, PredictionRow, Project

__all__ = [
    "THRESHOLD",
    "UNCERTAIN_FRACTION",
    "UNCERTAIN_MINIMUM",
    "latest_prediction_run",
    "misclassified",
    "most_uncertain",
]

THRESHOLD = 0.5
"""A multi-label class is predicted when its score reaches this."""
UNCERTAIN_FRACTION = 0.2
"""The share of the predicted images the "most uncertain" view lists..."""
UNCERTAIN_MINIMUM = 5
"""...but at least this many (or all of them, when there are fewer)."""


def latest_prediction_run(project: Project) -> int | None:
    """The newest finished run that stored predictions, or None when there is none."""
    found = _latest(project)
    return None if found is None else found[0]


def latest_predictions(project: Project) -> dict[int, PredictionRow]:
    """The newest prediction run's rows by image id (empty when no run stored predictions)."""
    found = _latest(project)
    return {} if found is None else {row.image_id: row for row in found[1]}


def misclassified(project: Project, run_id: int | None = None) -> list[int]:
    """Labelled images whose prediction disagrees with their label(s), by image id."""
    rows = _rows(project, run_id)
    names = {info.id: info.name for info in project.labels.classes()}
    labels: dict[int, set[str]] = {}
    for label in project.labels.all():
        labels.setdefault(label.image_id, set()).add(names[label.class_id])
    multi = project.label_mode is LabelMode.MULTI
    wrong = []
    for row in rows:
        given = labels.get(row.image_id)
        if not given:
            continue
        known = given & row.scores.keys()
        if multi:
            predicted = {name for name, score in row.scores.items() if score >= THRESHOLD}
            if predicted != known:
                wrong.append(row.image_id)
        elif known and row.predicted_class not in known:
            wrong.append(row.image_id)
    return wrong


def most_uncertain(
    project: Project,
    run_id: int | None = None,
    *,
    fraction: float = UNCERTAIN_FRACTION,
    minimum: int = UNCERTAIN_MINIMUM,
) -> list[int]:
    """The images the model was least sure of, least sure first (labelled or not).

    Single-label: the smallest margin between the two best scores; multi-label: the class score
    closest to :data:`THRESHOLD`. Ties go to the older image.
    """
    rows = _rows(project, run_id)
    if project.label_mode is LabelMode.MULTI:
        ranked = sorted(rows, key=lambda row: (_threshold_distance(row), row.image_id))
    else:
        ranked = sorted(rows, key=lambda row: (_margin(row), row.image_id))
    count = min(len(ranked), max(minimum, math.ceil(fraction * len(ranked))))
    return [row.image_id for row in ranked[:count]]


def _rows(project: Project, run_id: int | None) -> list[PredictionRow]:
    if run_id is not None:
        return project.predictions(run_id)
    found = _latest(project)
    return [] if found is None else found[1]


def _latest(project: Project) -> tuple[int, list[PredictionRow]] | None:
    for run in reversed(project.runs()):
        if run.status == "finished":
            rows = project.predictions(run.id)
            if rows:
                return run.id, rows
    return None


def _margin(row: PredictionRow) -> float:
    scores = sorted(row.scores.values(), reverse=True)
    if len(scores) < 2:
        return math.inf
    return scores[0] - scores[1]


def _threshold_distance(row: PredictionRow) -> float:
    return min((abs(score - THRESHOLD) for score in row.scores.values()), default=math.inf)
