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
from ept_studio.data.store import ImageRecord, Project
from ept_studio.services.project.model_card import card_runs, card_text
from ept_studio.services.project.results import RunResults, run_results

CSV_KIND = "predictions-csv"
CARD_KIND = "model-card"
README_SUFFIX = ".README.txt"
SCORE_MEANING = (
    "score_<class> is the model score of each class: the model's softmax output (multi-label: "
    "each class's sigmoid), between 0 and 1. It describes the model's output, not a finding, "
    "and is not a calibrated probability of disease."
)


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
    ``predicted_class``, ``score_<class>`` per class, then ``relative_path`` when
    ``relative_paths``. The notice and counts go to :func:`readme_path` beside it.
    """
    with _opened(folder_or_project, locations_dir) as project:
        results = run_results(project, run_id)
        readme = readme_path(destination)
        _write_text(readme, CSV_KIND, lambda: _readme_text(results, destination, relative_paths))
        _write(
            project,
            run_id,
            destination,
            CSV_KIND,
            lambda: _csv_text(project, results, relative_paths),
        )
    return destination


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


def _csv_text(project: Project, results: RunResults, relative_paths: bool) -> str:
    roles = {label.image_id: label.role.value for label in project.labels.all()}
    paths = _relative_paths(project.images()) if relative_paths else {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["image_id", "sha256", "role", "label", "trained_on", "predicted_class"]
    header += [f"score_{name}" for name in results.classes]
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


def _readme_text(results: RunResults, csv_path: Path, relative_paths: bool) -> str:
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
        "",
        "Columns: image_id (the image's number in the project), sha256 (the file's content "
        "hash), role (train or test, now), label (the class(es) the image carries now, "
        "';'-separated), trained_on, predicted_class, score_<class>"
        + (
            ", relative_path (relative to the common folder of the project's sources)."
            if relative_paths
            else "."
        ),
    ]
    if not relative_paths:
        lines.append("No file name or path is written: they can carry patient names.")
    return "\n".join(lines) + "\n"
