"""The results of a run: its stored predictions against the labels, with intervals and warnings.

Every number is computed on images the model was **not** trained on, unless the view is the one
named for training images. The images a model learned from are the ``data.train`` hashes of its
training run's ``run.json`` (the held-out fifth included: it chose the epoch); when that record
cannot be read, the images that have the train role now stand in for them.

- A *training* run stored one prediction per test-role image when it finished; they are scored
  against the targets it was evaluated on (its ``run.json``), so relabelling later does not rewrite
  history. Without the run record, the images' current labels are used.
- An *inference* run is scored against the labels its images carry now. In the default
  :attr:`ResultsScope.TEST` view the images its model was trained on are counted and left out; the
  :attr:`ResultsScope.TRAINING` view scores only those, and says it is not a test. Images without a
  label, or with a class the model does not know, are counted and left out.

The test view also leaves out the images the model's scores were calibrated on (the run record's
``data.calibration``): they chose the temperature and the prediction-set thresholds.

The numbers come from :func:`~ept_studio.services.project.results_stats.score_predictions` (bootstrap
intervals, seeded). The stored scores of a calibrated model are calibrated; the view also scores
them as they were before temperature scaling (recovered exactly from them and ``T``), on the same
images, and each scored image's prediction set from its stored scores and the model's thresholds.
The warnings are the ones a few-shot user needs to read the numbers honestly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from enum import Enum
from pathlib import Path

import numpy as np

from ept_studio.common.calibration import ReliabilityBin
from ept_studio.common.errors import ProjectError, RunRecordError
from ept_studio.core.conformal import ConformalSets, prediction_set
from ept_studio.core.temperature import Calibration
from ept_studio.data.store import LabelMode, Project, Role, RunRecord
from ept_studio.services.model.run_record import RecordedImage, TrainingRecord, read_run_record
from ept_studio.services.project.results_stats import (
    DEFAULT_RESAMPLES,
    CalibrationCheck,
    ClassResult,
    Interval,
    Scores,
    SetResults,
    check_calibration,
    score_predictions,
    score_sets,
)

TINY_EVALUATION = 20

__all__ = [
    "TRAINING_VIEW_NAME",
    "CalibrationCheck",
    "ClassResult",
    "EvaluatedImage",
    "ImageSelection",
    "Interval",
    "ModelCalibration",
    "ReliabilityBin",
    "ResultsScope",
    "RunResults",
    "SetResults",
    "confusion_selection",
    "load_run_record",
    "model_calibration",
    "model_run_of",
    "prediction_words",
    "reliability_selection",
    "run_kind",
    "run_results",
    "scope_summary",
    "scores_of_run",
    "set_names",
    "set_text",
    "trained_hashes",
]


class ResultsScope(str, Enum):
    """Which of a run's predictions a results view scores."""

    TEST = "test"
    """Images the model was not trained on: the only numbers that say how it does on new images."""
    TRAINING = "training"
    """Images the model learned from: how well it fits them, never a test."""


TRAINING_VIEW_NAME = "Training images (not a test: the model learned from them)"
"""How the training-images view is named wherever it is offered."""


@dataclasses.dataclass(frozen=True)
class EvaluatedImage:
    """One predicted image: its id, content hash, the model's output, its label (None: no label)
    and whether the model was trained on it."""

    image_id: int
    sha256: str
    predicted_class: str
    scores: dict[str, float]
    labels: tuple[str, ...] | None
    trained_on: bool = False
    calibrated_on: bool = False
    """The model's scores were calibrated on it (and it was not trained on)."""
    prediction_set: tuple[str, ...] | None = None
    """The classes in its prediction set (None: the model has no prediction-set rule)."""


@dataclasses.dataclass(frozen=True)
class ModelCalibration:
    """What a model's run record says about its scores.

    ``calibration`` None: uncalibrated, ``reason`` says why. ``sets`` None: no prediction sets,
    ``sets_reason`` says why. ``images``: the sha256 of the calibration images.
    """

    calibration: Calibration | None
    reason: str
    sets: ConformalSets | None
    sets_reason: str
    images: frozenset[str] = frozenset()


UNKNOWN_CALIBRATION = ModelCalibration(
    None,
    "scores are uncalibrated as far as is known: the model's run record cannot be read",
    None,
    "no prediction sets: the model's run record cannot be read",
)
NOT_RECORDED = ModelCalibration(
    None,
    "scores are uncalibrated: this model's run records no calibration",
    None,
    "no prediction sets: this model's run records none",
)


@dataclasses.dataclass(frozen=True)
class ImageSelection:
    """Images picked from a results view (a confusion-matrix cell, a reliability bar), with
    what they are in words, for the gallery's filter bar."""

    image_ids: tuple[int, ...]
    label: str


@dataclasses.dataclass(frozen=True)
class RunResults:
    """A run's results view. ``scores`` is None when no image in scope has a prediction and a label."""

    run_id: int
    kind: str
    """``training`` or ``inference``."""
    classes: tuple[str, ...]
    label_mode: str
    images: tuple[EvaluatedImage, ...]
    """Every prediction of the run, labelled or not, in scope or not, by image id."""
    scores: Scores | None
    unlabelled: int
    """Images in scope without a label."""
    warnings: tuple[str, ...]
    scope: ResultsScope = ResultsScope.TEST
    model_run: int | None = None
    """The training run whose model made the predictions (None: a model from elsewhere)."""
    trained_known: bool = True
    """Whether the trained-on images come from the model's run record (else: the train role now)."""
    scored: tuple[EvaluatedImage, ...] = ()
    """The images the numbers are computed on, in the order of the scores."""
    calibration: CalibrationCheck | None = None
    """Scores before and after temperature scaling on the scored images (or why uncalibrated)."""
    sets: SetResults | None = None
    """Prediction sets on the scored images (None: ``sets_reason`` says why)."""
    sets_reason: str = ""

    @property
    def evaluated(self) -> int:
        return self.scores.evaluated if self.scores is not None else 0

    @property
    def trained_on(self) -> int:
        """Predicted images the model was trained on."""
        return sum(image.trained_on for image in self.images)

    @property
    def calibrated_on(self) -> int:
        """Predicted images the scores were calibrated on (and the model was not trained on)."""
        return sum(image.calibrated_on and not image.trained_on for image in self.images)

    @property
    def in_scope(self) -> tuple[EvaluatedImage, ...]:
        """The predictions this view may score."""
        return tuple(image for image in self.images if _in_scope(image, self.scope))

    @property
    def not_scored(self) -> int:
        """Predictions outside this view (test view: trained-on images; training view: the rest)."""
        return len(self.images) - len(self.in_scope)


def run_kind(run: RunRecord) -> str:
    """``inference`` for a run that scored images with an exported model, else ``training``."""
    return "inference" if run.config.get("kind") == "inference" else "training"


def run_results(
    folder_or_project: Path | Project,
    run_id: int,
    *,
    scope: ResultsScope | str = ResultsScope.TEST,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    locations_dir: Path | None = None,
) -> RunResults:
    """The results of run ``run_id`` of a project (an open one, or its folder).

    ``scope`` ``test`` (the default) scores only images the model was not trained on;
    ``training`` scores only the images it learned from (never a test).
    """
    chosen = ResultsScope(scope)
    if isinstance(folder_or_project, Project):
        return _results(folder_or_project, run_id, chosen, resamples, seed)
    with Project.open(Path(folder_or_project), locations_dir=locations_dir) as project:
        return _results(project, run_id, chosen, resamples, seed)


def scope_summary(results: RunResults) -> str:
    """What the numbers are computed on, in words: ``on 6 test images; 16 training images not
    scored`` (test view) or ``on 16 training images: not a test, the model learned from them``."""
    if results.scope is ResultsScope.TRAINING:
        return f"on {results.evaluated} training images: not a test, the model learned from them"
    text = f"on {results.evaluated} test images (not trained on)"
    left_out = []
    if results.trained_on:
        left_out.append(f"{results.trained_on} training images")
    if results.calibrated_on:
        left_out.append(f"{results.calibrated_on} calibration images")
    if left_out:
        text += f"; {' and '.join(left_out)} not scored"
    return text


def _in_scope(image: EvaluatedImage, scope: ResultsScope) -> bool:
    if scope is ResultsScope.TRAINING:
        return image.trained_on
    return not image.trained_on and not image.calibrated_on


def model_calibration(project: Project, run: RunRecord) -> ModelCalibration:
    """The calibration and prediction-set rule of the model that made ``run``'s predictions."""
    model = model_run_of(project, run)
    record = load_run_record(project, model) if model is not None else None
    return _record_calibration(record)


def scores_of_run(project: Project, run_id: int) -> tuple[tuple[str, ...], ModelCalibration]:
    """The classes run ``run_id`` scored, in its order, and what its model says of its scores
    (calibrated or not, its prediction-set rule): what a caption needs beside a stored row."""
    run = project.run(run_id)
    try:
        classes = _run_classes(project, run)[0]
    except ProjectError:
        classes = ()
    return classes, model_calibration(project, run)


def prediction_words(
    scores: Mapping[str, float], classes: Sequence[str], model: ModelCalibration
) -> str:
    """What a caption adds to a stored prediction: its set (``set: Brain, Bone at 90 %``),
    ``uncalibrated`` when the model's scores are known to be, both, or nothing."""
    words = []
    if model.calibration is None and model is not UNKNOWN_CALIBRATION:
        words.append("uncalibrated")
    if model.sets is not None and classes:
        words.append(set_text(set_names(scores, classes, model.sets), model.sets.coverage))
    return "; ".join(words)


def _record_calibration(record: TrainingRecord | None) -> ModelCalibration:
    if record is None:
        return UNKNOWN_CALIBRATION
    calibration, sets = record.calibration, record.conformal
    if calibration is None and sets is None:
        return NOT_RECORDED
    fitted = calibration if isinstance(calibration, Calibration) else None
    fitted_sets = sets if isinstance(sets, ConformalSets) else None
    return ModelCalibration(
        fitted,
        "" if fitted else getattr(calibration, "reason", NOT_RECORDED.reason),
        fitted_sets,
        "" if fitted_sets else getattr(sets, "reason", NOT_RECORDED.sets_reason),
        frozenset(image.sha256 for image in record.data.calibration),
    )


def set_names(
    scores: Mapping[str, float], classes: Sequence[str], sets: ConformalSets
) -> tuple[str, ...]:
    """The classes in one image's prediction set, from its stored (calibrated) scores."""
    probabilities = np.array([scores.get(name, 0.0) for name in classes])
    return tuple(classes[c] for c in prediction_set(probabilities, sets.thresholds))


def set_text(names: Sequence[str], coverage: float) -> str:
    """``set: Brain, Bone at 90 %`` (``set: no class at 90 %`` when none is typical)."""
    return f"set: {', '.join(names) or 'no class'} at {coverage * 100:g} %"


def confusion_selection(
    results: RunResults, true_class: int, predicted_class: int
) -> ImageSelection:
    """The scored images whose label is class ``true_class`` and whose top score is
    ``predicted_class`` (single-label views: a confusion-matrix cell)."""
    names = results.classes
    ids = tuple(
        image.image_id
        for image in results.scored
        if image.labels
        and image.labels[0] == names[true_class]
        and _top_class(image, names) == predicted_class
    )
    what = _view_words(results)
    label = f"{what}: true {names[true_class]}, predicted {names[predicted_class]}"
    return ImageSelection(ids, label)


def reliability_selection(
    results: RunResults, bin_index: int, *, calibrated: bool = True
) -> ImageSelection:
    """The scored images with a model score in reliability bin ``bin_index``, after calibration
    (``calibrated``) or before it."""
    check = results.calibration
    if check is None:
        return ImageSelection((), _view_words(results))
    members = check.members_after if calibrated else check.members_before
    bins = check.reliability_after if calibrated else check.reliability_before
    ids = tuple(results.scored[k].image_id for k in members[bin_index])
    low, high = bins[bin_index].low, bins[bin_index].high
    when = ""
    if check.calibrated:
        when = " after calibration" if calibrated else " before calibration"
    label = f"{_view_words(results)}: model score {low:.0%}-{high:.0%}{when}"
    return ImageSelection(ids, label)


def _view_words(results: RunResults) -> str:
    kind = "training images" if results.scope is ResultsScope.TRAINING else "test images"
    return f"Run {results.run_id} {kind}"


def _top_class(image: EvaluatedImage, classes: Sequence[str]) -> int:
    return int(np.argmax([image.scores.get(name, 0.0) for name in classes]))


def model_run_of(project: Project, run: RunRecord) -> RunRecord | None:
    """The training run whose model made ``run``'s predictions (``run`` itself for a training run).

    None for an inference run whose model came from outside this project.
    """
    if run_kind(run) == "training":
        return run
    source = run.config.get("source_run")
    if source is None:
        return None
    try:
        return project.run(int(source))
    except ProjectError:
        return None


def trained_hashes(project: Project, run: RunRecord) -> frozenset[str] | None:
    """sha256 of every image the model of ``run`` was trained on (its held-out fifth included).

    None when the model's run record cannot be read.
    """
    model = model_run_of(project, run)
    return _recorded_train(load_run_record(project, model) if model is not None else None)


def _recorded_train(record: TrainingRecord | None) -> frozenset[str] | None:
    if record is None:
        return None
    return frozenset(image.sha256 for image in record.data.train)


def _results(
    project: Project, run_id: int, scope: ResultsScope, resamples: int, seed: int
) -> RunResults:
    run = project.run(run_id)
    kind = run_kind(run)
    classes, mode = _run_classes(project, run)
    model = model_run_of(project, run)
    record = load_run_record(project, model) if model is not None else None
    recorded = _recorded_train(record)
    trained = recorded if recorded is not None else _train_role_hashes(project)
    labels = _labels(project, kind, scope, record, classes)
    model_scores = _record_calibration(record) if model is not None else UNKNOWN_CALIBRATION
    images = _evaluated_images(project, run_id, labels, trained, model_scores, classes)
    in_scope = [i for i in images if _in_scope(i, scope)]
    known = [i for i in in_scope if i.labels is not None and set(i.labels) <= set(classes)]
    warnings = _data_warnings(project, scope, in_scope, known, classes, trained)
    scores = calibration = sets = None
    if known:
        probs = np.array([[i.scores.get(c, 0.0) for c in classes] for i in known])
        targets = _targets(known, classes, mode)
        scores = score_predictions(classes, mode, probs, targets, resamples=resamples, seed=seed)
        warnings += _score_warnings(scores, classes)
        fitted = model_scores.calibration
        calibration = check_calibration(
            probs,
            targets,
            mode,
            temperature=fitted.temperature if fitted is not None else None,
            reason=None if fitted is not None else model_scores.reason,
            fitted_on=fitted.images if fitted is not None else 0,
            source=fitted.source if fitted is not None else "",
        )
        if model_scores.sets is not None:
            index = {name: k for k, name in enumerate(classes)}
            chosen = [[index[name] for name in i.prediction_set or ()] for i in known]
            sets = score_sets(chosen, targets, model_scores.sets)
    if recorded is None and any(i.trained_on for i in images):
        warnings.append(
            "the model's run record cannot be read: the images with the train role now are "
            "taken as the ones it was trained on"
        )
    return RunResults(
        run_id=run_id,
        kind=kind,
        classes=classes,
        label_mode=mode,
        images=tuple(images),
        scores=scores,
        unlabelled=sum(i.labels is None for i in in_scope),
        warnings=tuple(warnings),
        scope=scope,
        model_run=model.id if model is not None else None,
        trained_known=recorded is not None,
        scored=tuple(known),
        calibration=calibration,
        sets=sets,
        sets_reason=model_scores.sets_reason if model_scores.sets is None else "",
    )


def _run_classes(project: Project, run: RunRecord) -> tuple[tuple[str, ...], str]:
    """The class names the run scored, in its order, and its label mode."""
    config = run.config
    classes = tuple(str(c) for c in config.get("classes") or config.get("class_names", []))
    if not classes:
        raise ProjectError(f"run {run.id} records no class names: it cannot be scored")
    return classes, str(config.get("label_mode", project.label_mode.value))


def _labels(
    project: Project,
    kind: str,
    scope: ResultsScope,
    record: TrainingRecord | None,
    classes: Sequence[str],
) -> dict[str, tuple[str, ...]]:
    """sha256 -> class names to score against: what the run was evaluated (or trained) on where
    the record says so, else the labels the images carry now."""
    if record is None:
        return _current_labels(project)
    if scope is ResultsScope.TRAINING:
        return _recorded_labels(record.data.train, classes)
    if kind == "training":
        return _recorded_labels(record.data.test, classes)
    return _current_labels(project)


def _evaluated_images(
    project: Project,
    run_id: int,
    labels: dict[str, tuple[str, ...]],
    trained: frozenset[str],
    model_scores: ModelCalibration,
    classes: Sequence[str],
) -> list[EvaluatedImage]:
    sha = {image.id: image.sha256 for image in project.images()}
    rule = model_scores.sets
    return [
        EvaluatedImage(
            row.image_id,
            sha[row.image_id],
            row.predicted_class,
            row.scores,
            labels.get(sha[row.image_id]),
            sha[row.image_id] in trained,
            sha[row.image_id] in model_scores.images and sha[row.image_id] not in trained,
            set_names(row.scores, classes, rule) if rule is not None else None,
        )
        for row in project.predictions(run_id)
        if row.image_id in sha
    ]


def _train_role_hashes(project: Project) -> frozenset[str]:
    train_ids = {label.image_id for label in project.labels.all() if label.role is Role.TRAIN}
    return frozenset(image.sha256 for image in project.images() if image.id in train_ids)


def load_run_record(project: Project, run: RunRecord) -> TrainingRecord | None:
    """A training run's ``run.json`` through :func:`read_run_record` (None when it has none, or
    it cannot be read)."""
    name = run.artifacts.get("run_record")
    path = project.run_dir(run.id) / str(name) if name else None
    if path is None or not path.is_file():
        return None
    try:
        return read_run_record(path)
    except RunRecordError:
        return None


def _recorded_labels(
    images: Sequence[RecordedImage], classes: Sequence[str]
) -> dict[str, tuple[str, ...]]:
    """sha256 -> class names, from the targets of the run record's ``train`` or ``test`` images."""
    labels: dict[str, tuple[str, ...]] = {}
    for image in images:
        if isinstance(image.target, tuple):
            labels[image.sha256] = tuple(
                c for c, flag in zip(classes, image.target, strict=True) if flag
            )
        else:
            labels[image.sha256] = (classes[image.target],)
    return labels


def _current_labels(project: Project) -> dict[str, tuple[str, ...]]:
    names = {c.id: c.name for c in project.labels.classes()}
    by_image: dict[int, list[str]] = {}
    for label in project.labels.all():
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
    scope: ResultsScope,
    images: Sequence[EvaluatedImage],
    known: Sequence[EvaluatedImage],
    classes: Sequence[str],
    trained: frozenset[str],
) -> list[str]:
    warnings: list[str] = []
    if scope is ResultsScope.TRAINING:
        warnings.append(
            "these are the images the model learned from: the numbers say how well it fits "
            "them, not how it does on new images"
        )
    if not known and scope is ResultsScope.TEST:
        warnings.append(
            "no image the model was not trained on has both a prediction and a label: give "
            "some labelled images the test role and train again, or label new images and "
            "predict them"
        )
    elif not known:
        warnings.append("no image the model was trained on has a prediction in this run")
    foreign = sum(1 for i in images if i.labels is not None and not set(i.labels) <= set(classes))
    if foreign:
        warnings.append(f"{foreign} images carry a class the model does not know: left out")
    both = _patients_in_both(project, known, trained) if scope is ResultsScope.TEST else 0
    if both:
        warnings.append(
            f"patients appear in both train and test ({both} patients): the test is optimistic; "
            "keep each patient's images on one side"
        )
    return warnings


def _patients_in_both(
    project: Project, known: Sequence[EvaluatedImage], trained: frozenset[str]
) -> int:
    """Patients (salted hashes) of evaluated images that also have a training image."""
    patient = {image.sha256: image.patient_hash for image in project.images()}
    in_training = {patient.get(sha) for sha in trained} - {None}
    tested = {patient.get(i.sha256) for i in known if i.sha256 not in trained} - {None}
    return len(in_training & tested)


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
