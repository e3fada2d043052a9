"""The results of a run: its stored predictions against the labels, with intervals and warnings.

- A *training* run stored one prediction per test-role image when it finished; they are scored
  against the targets it was evaluated on (its ``run.json``), so relabelling later does not rewrite
  history. Without the run record, the images' current labels are used.
- An *inference* run is scored against the labels its images carry now (both roles; a warning says
  when images the model may have been trained on are among them). Images without a label, or
  with a class the model does not know, are counted and left out.

The numbers come from :func:`~ept_studio.services.results_stats.score_predictions` (bootstrap
intervals, seeded). The warnings are the ones a few-shot user needs to read the numbers honestly.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ept_studio.calibration import ReliabilityBin
from ept_studio.data.store import LabelMode, Project, Role, RunRecord
from ept_studio.errors import ProjectError
from ept_studio.services.results_stats import (
    DEFAULT_RESAMPLES,
    ClassResult,
    Interval,
    Scores,
    score_predictions,
)

TINY_EVALUATION = 20

__all__ = [
    "ClassResult",
    "EvaluatedImage",
    "Interval",
    "ReliabilityBin",
    "RunResults",
    "load_run_record",
    "run_kind",
    "run_results",
]


@dataclasses.dataclass(frozen=True)
class EvaluatedImage:
    """One scored image: its id, content hash, the model's output and its label (None: no label)."""

    image_id: int
    sha256: str
    predicted_class: str
    scores: dict[str, float]
    labels: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class RunResults:
    """A run's results view. ``scores`` is None when no image has both a prediction and a label."""

    run_id: int
    kind: str
    """``training`` or ``inference``."""
    classes: tuple[str, ...]
    label_mode: str
    images: tuple[EvaluatedImage, ...]
    """Every prediction of the run, labelled or not, by image id."""
    scores: Scores | None
    unlabelled: int
    warnings: tuple[str, ...]

    @property
    def evaluated(self) -> int:
        return self.scores.evaluated if self.scores is not None else 0


def run_kind(run: RunRecord) -> str:
    """``inference`` for a run that scored images with an exported model, else ``training``."""
    return "inference" if run.config.get("kind") == "inference" else "training"


def run_results(
    folder_or_project: Path | Project,
    run_id: int,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    locations_dir: Path | None = None,
) -> RunResults:
    """The results of run ``run_id`` of a project (an open one, or its folder)."""
    if isinstance(folder_or_project, Project):
        return _results(folder_or_project, run_id, resamples, seed)
    with Project.open(Path(folder_or_project), locations_dir=locations_dir) as project:
        return _results(project, run_id, resamples, seed)


def _results(project: Project, run_id: int, resamples: int, seed: int) -> RunResults:
    run = project.run(run_id)
    kind = run_kind(run)
    classes = tuple(str(c) for c in run.config.get("classes") or run.config.get("class_names", []))
    if not classes:
        raise ProjectError(f"run {run_id} records no class names: it cannot be scored")
    mode = str(run.config.get("label_mode", project.label_mode.value))
    record = load_run_record(project, run) if kind == "training" else None
    labels = _recorded_labels(record, classes) if record else _current_labels(project)
    sha = {image.id: image.sha256 for image in project.images()}
    images = tuple(
        EvaluatedImage(
            row.image_id,
            sha[row.image_id],
            row.predicted_class,
            row.scores,
            labels.get(sha[row.image_id]),
        )
        for row in project.predictions(run_id)
        if row.image_id in sha
    )
    known = [i for i in images if i.labels is not None and set(i.labels) <= set(classes)]
    warnings = _data_warnings(project, run, images, known, classes, record)
    scores = None
    if known:
        probs = np.array([[i.scores.get(c, 0.0) for c in classes] for i in known])
        targets = _targets(known, classes, mode)
        scores = score_predictions(classes, mode, probs, targets, resamples=resamples, seed=seed)
        warnings += _score_warnings(scores, classes)
    unlabelled = sum(i.labels is None for i in images)
    return RunResults(run_id, kind, classes, mode, images, scores, unlabelled, tuple(warnings))


def load_run_record(project: Project, run: RunRecord) -> dict[str, Any] | None:
    """A training run's ``run.json`` (None when it has none, or it cannot be read)."""
    name = run.artifacts.get("run_record")
    path = project.run_dir(run.id) / str(name) if name else None
    if path is None or not path.is_file():
        return None
    try:
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record.get("data"), dict) else None


def _recorded_labels(record: dict[str, Any], classes: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """sha256 -> class names, from the test targets a training run was evaluated on."""
    labels: dict[str, tuple[str, ...]] = {}
    for image in record.get("data", {}).get("test", []):
        target = image["target"]
        if isinstance(target, list):
            labels[image["sha256"]] = tuple(
                c for c, flag in zip(classes, target, strict=True) if flag
            )
        else:
            labels[image["sha256"]] = (classes[int(target)],)
    return labels


def _current_labels(project: Project) -> dict[str, tuple[str, ...]]:
    names = {c.id: c.name for c in project.classes()}
    by_image: dict[int, list[str]] = {}
    for label in project.labels():
        by_image.setdefault(label.image_id, []).append(names[label.class_id])
    sha = {image.id: image.sha256 for image in project.images()}
    return {sha[i]: tuple(found) for i, found in by_image.items() if i in sha}


def _targets(images: Sequence[EvaluatedImage], classes: Sequence[str], mode: str) -> np.ndarray:
    index = {name: k for k, name in enumerate(classes)}
    if mode == LabelMode.MULTI.value:
        return np.array([[int(c in (i.labels or ())) for c in classes] for i in images])
    return np.array([index[(i.labels or ("",))[0]] for i in images])


def _data_warnings(
    project: Project,
    run: RunRecord,
    images: Sequence[EvaluatedImage],
    known: Sequence[EvaluatedImage],
    classes: Sequence[str],
    record: dict[str, Any] | None,
) -> list[str]:
    warnings: list[str] = []
    if not known:
        warnings.append(
            "no image of this run has both a prediction and a label: give some labelled images "
            "the test role and train again, or label the predicted images"
        )
    foreign = sum(1 for i in images if i.labels is not None and not set(i.labels) <= set(classes))
    if foreign:
        warnings.append(f"{foreign} images carry a class the model does not know: left out")
    if record is None and run_kind(run) == "inference":
        roles = {label.image_id: label.role for label in project.labels()}
        trained = sum(roles.get(i.image_id) is Role.TRAIN for i in known)
        if trained:
            warnings.append(
                f"{trained} evaluated images have the train role: if the model was trained on "
                "them, its scores are optimistic"
            )
    both = _patients_in_both(project, known, record)
    if both:
        warnings.append(
            f"patients appear in both train and test ({both} patients): the test is optimistic; "
            "keep each patient's images on one side"
        )
    return warnings


def _patients_in_both(
    project: Project, known: Sequence[EvaluatedImage], record: dict[str, Any] | None
) -> int:
    """Patients (salted hashes) of evaluated images that also have a training image."""
    patient = {image.sha256: image.patient_hash for image in project.images()}
    if record is not None:
        train = {str(i["sha256"]) for i in record.get("data", {}).get("train", [])}
    else:
        train_ids = {lab.image_id for lab in project.labels() if lab.role is Role.TRAIN}
        train = {image.sha256 for image in project.images() if image.id in train_ids}
    trained = {patient.get(sha) for sha in train} - {None}
    tested = {patient.get(i.sha256) for i in known if i.sha256 not in train} - {None}
    return len(trained & tested)


def _score_warnings(scores: Scores, classes: Sequence[str]) -> list[str]:
    warnings: list[str] = []
    if scores.evaluated < TINY_EVALUATION:
        warnings.append(
            f"evaluation set is tiny (n = {scores.evaluated} < {TINY_EVALUATION}): "
            "the intervals are wide"
        )
    if scores.label_mode == LabelMode.SINGLE.value:
        predicted = [c.name for c in scores.per_class if c.predicted]
        if len(predicted) == 1 and len(classes) > 1:
            warnings.append(
                f"the model predicts only one class ({predicted[0]}) for every evaluated image"
            )
    missing = [c.name for c in scores.per_class if c.support == 0]
    if missing:
        warnings.append(
            f"a class has no test image ({', '.join(missing)}): its recall cannot be measured"
        )
    return warnings
