"""Exports of a run's results: the per-image predictions as CSV, and a markdown model card.

Neither carries patient data by default: images are named by their project id and full content
hash, never by path or file name. The CSV's first line is its header row, so any spreadsheet reads
it; the research-use notice, what the scores are and the counts go in a ``<name>.README.txt``
beside it. A relative path column is written only when asked (file names can carry patient
names), relative to the common folder of the project's sources, never absolute. Every row says
whether the model was trained on the image, so a reader can filter the training images out.

The model card describes the *model* (a training run), whatever results view was on screen: see
:mod:`~ept_studio.services.project.model_card`. Every export is recorded in the project by kind, time and
sha256 under a neutral name (``predictions.csv``): the name typed for it can carry a patient's name.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.common.files import atomic_write_text, file_sha256
from ept_studio.core.conformal import ConformalSets, NoPredictionSets, prediction_set
from ept_studio.core.temperature import Calibration
from ept_studio.data.store import ImageRecord, Project
from ept_studio.services.model.run_record import TrainingRecord
from ept_studio.services.project.model_card import card_runs, card_text
from ept_studio.services.project.results import (
    RunResults,
    load_run_record,
    model_run_of,
    run_results,
    trained_hashes,
)
from ept_studio.services.project.series_predictions import (
    AGGREGATION_HELP,
    Aggregation,
    SeriesPrediction,
    series_predictions,
)

CSV_KIND = "predictions-csv"
CARD_KIND = "model-card"
SERIES_CSV_KIND = "series-predictions-csv"
README_SUFFIX = ".README.txt"
SCORE_MEANING = (
    "score_<class> is the model score of each class: the model's softmax output (multi-label: "
    "each class's sigmoid), between 0 and 1. It describes the model's output, not a finding, "
    "and is not a calibrated probability of disease."
)
SET_SEPARATOR = " | "
"""Between the class names of a ``prediction_set`` cell."""


def readme_path(csv_path: Path) -> Path:
    """The notice file written beside a predictions CSV: ``predictions.csv`` ->
    ``predictions.README.txt``."""
    path = Path(csv_path)
    return path.with_name(path.stem + README_SUFFIX)


def export_predictions_csv(
    folder_or_project: Path | Project,
    run_id: int,
    destination: Path,
    *,
    relative_paths: bool = False,
    locations_dir: Path | None = None,
) -> Path:
    """Write run ``run_id``'s predictions to ``destination`` (CSV, UTF-8) and record the export.

    Columns: ``image_id``, ``sha256`` (full content hash), ``role``, ``label`` (``;``-joined,
    empty when none), ``trained_on`` (``yes``/``no``: the model learned from the image),
    ``predicted_class``, ``score_<class>`` per class, ``prediction_set`` (the classes in the
    image's prediction set, joined by :data:`SET_SEPARATOR`, from the stored scores and the
    thresholds in the model's run record; empty when the model has no sets), then
    ``relative_path`` when ``relative_paths``. The notice, the counts and what the sets promise
    go to :func:`readme_path` beside it.
    """
    with _opened(folder_or_project, locations_dir) as project:
        results = run_results(project, run_id)
        model = _model_record(project, results)
        readme = readme_path(destination)
        _write_text(
            readme, CSV_KIND, lambda: _readme_text(results, destination, relative_paths, model)
        )
        _write(
            project,
            run_id,
            destination,
            CSV_KIND,
            lambda: _csv_text(project, results, relative_paths, _sets(model)),
        )
    return destination


def export_series_csv(
    folder_or_project: Path | Project,
    run_id: int,
    destination: Path,
    *,
    aggregation: Aggregation | str = "mean",
    locations_dir: Path | None = None,
) -> list[SeriesPrediction]:
    """Write run ``run_id``'s per-series predictions to ``destination`` (CSV, UTF-8), record the
    export, and return the predictions written.

    Columns: ``series`` (the series' number in the project), ``slices`` (slices scored),
    ``aggregation``, ``trained_on`` (``yes`` when the model learned from any of its slices,
    ``unknown`` when its run record cannot be read), ``predicted_class``, ``score_<class>`` per
    class, ``decisive_image_id`` (the slice that scores the predicted class highest). No UID, file
    name or path: a series is named by its number. The notice and what the scores are go to
    :func:`readme_path` beside it.
    """
    with _opened(folder_or_project, locations_dir) as project:
        predictions = series_predictions(project, run_id, aggregation)
        run = project.run(run_id)
        model = model_run_of(project, run)
        record = load_run_record(project, model) if model is not None else None
        trained = _trained_series(project, predictions, trained_hashes(project, run))
        text = _series_csv_text(predictions, trained)
        _write_text(
            readme_path(destination),
            SERIES_CSV_KIND,
            lambda: _series_readme_text(run_id, predictions, destination, record),
        )
        _write(project, run_id, destination, SERIES_CSV_KIND, lambda: text)
    return predictions


def _trained_series(
    project: Project, predictions: Sequence[SeriesPrediction], trained: frozenset[str] | None
) -> dict[str, str]:
    """series key -> ``yes``, ``no`` or ``unknown``: did the model learn from any of its slices."""
    if trained is None:
        return {p.series_key: "unknown" for p in predictions}
    sha = {image.id: image.sha256 for image in project.images()}
    return {
        p.series_key: "yes" if any(sha.get(i) in trained for i in p.image_ids) else "no"
        for p in predictions
    }


def _series_csv_text(predictions: Sequence[SeriesPrediction], trained: dict[str, str]) -> str:
    classes = list(predictions[0].probabilities) if predictions else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["series", "slices", "aggregation", "trained_on", "predicted_class"]
    writer.writerow([*header, *(f"score_{name}" for name in classes), "decisive_image_id"])
    for item in predictions:
        writer.writerow(
            [
                str(item.series_number),
                str(item.slice_count),
                item.aggregation,
                trained[item.series_key],
                item.predicted_class,
                *(f"{item.probabilities.get(name, math.nan):.6f}" for name in classes),
                str(item.decisive_image_id),
            ]
        )
    return out.getvalue()


def _series_readme_text(
    run_id: int,
    predictions: Sequence[SeriesPrediction],
    csv_path: Path,
    record: TrainingRecord | None,
) -> str:
    slices = sum(p.slice_count for p in predictions)
    lines = [
        RESEARCH_USE_NOTICE,
        "",
        f"{Path(csv_path).name}: the predictions of run {run_id}, one row per series "
        f"({len(predictions)} series, {slices} images scored; an image that is not part of a "
        "DICOM series is a series of one slice).",
        "Only rows with trained_on = no say anything about how the model does on new images.",
        "",
        SCORE_MEANING.replace("score_<class> is", "Per slice, score_<class> is"),
        f"A series' score_<class> combines its slices' scores. {AGGREGATION_HELP} "
        "With max, each class's highest score is divided by the sum of those highest scores, "
        "so the row still adds up to 1.",
        _calibration_words(record),
        "",
        "Columns: series (the series' number in the project), slices (slices scored), "
        "aggregation (mean or max), trained_on (the model learned from at least one of its "
        "slices), predicted_class, score_<class>, decisive_image_id (the image number of the "
        "slice that scores the predicted class highest: open it to see its attention overlay).",
        "No file name, path or DICOM UID is written: they can identify a patient.",
    ]
    return "\n".join(lines) + "\n"


def _model_record(project: Project, results: RunResults) -> TrainingRecord | None:
    """The run record of the training run whose model made ``results``' predictions."""
    if results.model_run is None:
        return None
    return load_run_record(project, project.run(results.model_run))


def _sets(record: TrainingRecord | None) -> ConformalSets | None:
    conformal = record.conformal if record is not None else None
    return conformal if isinstance(conformal, ConformalSets) else None


def _set_cell(scores: dict[str, float], classes: Sequence[str], sets: ConformalSets | None) -> str:
    if sets is None:
        return ""
    row = [scores.get(name, 0.0) for name in classes]
    return SET_SEPARATOR.join(classes[c] for c in prediction_set(row, sets.thresholds))


def write_model_card(
    folder_or_project: Path | Project,
    model_run_id: int,
    destination: Path,
    *,
    predictions_run: int | None = None,
    locations_dir: Path | None = None,
) -> Path:
    """Write a markdown model card for the model of training run ``model_run_id``.

    ``predictions_run``: an inference run of that model whose predictions the card adds, scored
    only on images the model was not trained on. An inference run given as ``model_run_id`` is
    taken as that: the card describes the training run it came from.
    """
    with _opened(folder_or_project, locations_dir) as project:
        model, later = card_runs(project, model_run_id, predictions_run)
        _write(project, model, destination, CARD_KIND, lambda: card_text(project, model, later))
    return destination


@contextmanager
def _opened(folder_or_project: Path | Project, locations_dir: Path | None) -> Iterator[Project]:
    if isinstance(folder_or_project, Project):
        yield folder_or_project
        return
    with Project.open(Path(folder_or_project), locations_dir=locations_dir) as project:
        yield project


def _write(
    project: Project, run_id: int, destination: Path, kind: str, text: Callable[[], str]
) -> None:
    _write_text(destination, kind, text)
    project.record_export(run_id, kind, Path(destination).name, file_sha256(Path(destination)))


def _write_text(destination: Path, kind: str, text: Callable[[], str]) -> None:
    atomic_write_text(Path(destination), text(), kind)


def _csv_text(
    project: Project, results: RunResults, relative_paths: bool, sets: ConformalSets | None
) -> str:
    roles = {label.image_id: label.role.value for label in project.labels.all()}
    paths = _relative_paths(project.images()) if relative_paths else {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["image_id", "sha256", "role", "label", "trained_on", "predicted_class"]
    header += [f"score_{name}" for name in results.classes]
    header.append("prediction_set")
    writer.writerow(header + (["relative_path"] if relative_paths else []))
    for item in results.images:
        row = [
            str(item.image_id),
            item.sha256,
            roles.get(item.image_id, ""),
            ";".join(item.labels or ()),
            "yes" if item.trained_on else "no",
            item.predicted_class,
            *(f"{item.scores.get(name, math.nan):.6f}" for name in results.classes),
            _set_cell(item.scores, results.classes, sets),
        ]
        writer.writerow(row + ([paths.get(item.image_id, "")] if relative_paths else []))
    return out.getvalue()


def _relative_paths(images: Sequence[ImageRecord]) -> dict[int, str]:
    """image id -> its path relative to the common folder of every known source (``/``-separated)."""
    known = {image.id: image.path for image in images if image.path is not None}
    if not known:
        return {}
    try:
        root = Path(os.path.commonpath([str(path.parent) for path in known.values()]))
    except ValueError:  # sources on different drives: no common folder, so no path is written
        return {}
    return {image_id: path.relative_to(root).as_posix() for image_id, path in known.items()}


def _readme_text(
    results: RunResults, csv_path: Path, relative_paths: bool, record: TrainingRecord | None
) -> str:
    model = f"training run {results.model_run}" if results.model_run is not None else "unknown"
    trained = results.trained_on
    source = "its run record" if results.trained_known else "the train role the images have now"
    lines = [
        RESEARCH_USE_NOTICE,
        "",
        f"{Path(csv_path).name}: the predictions of run {results.run_id} ({results.kind}).",
        f"Model: {model} of this EPT Studio project.",
        f"Images: {len(results.images)} predicted; {trained} of them the model was trained on "
        f"(trained_on = yes, from {source}), {len(results.images) - trained} not.",
        "Only rows with trained_on = no say anything about how the model does on new images.",
        "",
        SCORE_MEANING,
        _calibration_words(record),
        "",
        *_set_words(record),
        "",
        "Columns: image_id (the image's number in the project), sha256 (the file's content "
        "hash), role (train or test, now), label (the class(es) the image carries now, "
        "';'-separated), trained_on, predicted_class, score_<class>, prediction_set"
        + (
            ", relative_path (relative to the common folder of the project's sources)."
            if relative_paths
            else "."
        ),
    ]
    if not relative_paths:
        lines.append("No file name or path is written: they can carry patient names.")
    return "\n".join(lines) + "\n"


def _calibration_words(model: TrainingRecord | None) -> str:
    calibration = model.calibration if model is not None else None
    if isinstance(calibration, Calibration):
        return (
            f"The scores are temperature-scaled (T = {calibration.temperature:.3f}, fitted on "
            f"{calibration.images} {calibration.source} the model was not trained on), so that "
            "a score of 0.8 is right about 8 times in 10 on images like those."
        )
    reason = getattr(calibration, "reason", None) or "the model's run records no calibration"
    return f"The scores are uncalibrated ({reason})."


def _set_words(model: TrainingRecord | None) -> list[str]:
    conformal = model.conformal if model is not None else None
    if not isinstance(conformal, ConformalSets):
        reason = (
            conformal.reason
            if isinstance(conformal, NoPredictionSets)
            else "no prediction sets: the model's run records no prediction-set thresholds"
        )
        return [f"prediction_set is empty in every row: {reason}."]
    rule = "one threshold per class" if conformal.mondrian else "one threshold for every class"
    return [
        f"prediction_set lists the classes (separated by '{SET_SEPARATOR.strip()}') the model "
        f"cannot rule out at {conformal.coverage * 100:g} % coverage: over new images like its "
        f"{conformal.n} calibration images, the set should hold the true class at least "
        f"{conformal.coverage * 100:g} % of the time ({rule}). An empty set means no class was "
        "typical enough.",
        conformal.statement,
    ]
