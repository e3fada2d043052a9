"""The run record: what a training run wrote beside its prompt file, in one schema for every route.

A folder run (``train_on_folder``) writes ``NAME.run.json`` beside its prompt file, a project run
(``train_on_project``) ``runs/<id>/run.json``; both write a :class:`TrainingRecord` of format
:data:`RUN_RECORD_FORMAT` through :func:`write_run_record`. ``source`` says which route wrote it;
the fields only one route has are optional (None for the other).

:func:`read_run_record` is the one reader: it reads this format, migrates an
``ept-studio-run/1`` record of either route in memory (the file is never rewritten) and refuses
any other format with :class:`~ept_studio.common.errors.RunRecordError`. The fields, their meaning
and the migration are described in ``resources/docs/formats.md``. Torch-free.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, cast

from ept_studio.common.errors import RunRecordError
from ept_studio.common.files import atomic_write_text
from ept_studio.core.conformal import ConformalSets, NoPredictionSets
from ept_studio.core.temperature import Calibration, Uncalibrated

RUN_RECORD_FORMAT = "ept-studio-run/2"
"""The format every run record is written in."""
V1_FORMAT = "ept-studio-run/1"
READABLE_FORMATS = (V1_FORMAT, RUN_RECORD_FORMAT)
"""The formats :func:`read_run_record` reads (older ones are migrated in memory)."""

RunSource = Literal["folder", "project"]
Target = int | tuple[int, ...]
"""A class index (single-label) or a multi-hot tuple over the classes (multi-label)."""


@dataclasses.dataclass(frozen=True)
class RecordedImage:
    """One image of the run, by content hash only (never a path): its target and, for a project
    run, the rendering spec it was rendered with."""

    sha256: str
    target: Target
    rendering: dict[str, Any] | None = None
    """Project runs only."""


@dataclasses.dataclass(frozen=True)
class RecordedData:
    """The classes and the images: ``train`` the model learned from (a held-out fifth included:
    it chose the epoch), ``test`` it was evaluated on (a folder run's query set)."""

    classes: tuple[str, ...]
    label_mode: str
    """``single`` or ``multi``."""
    train: tuple[RecordedImage, ...]
    test: tuple[RecordedImage, ...]
    shots: int | None = None
    """Folder runs only: training images per class asked for."""
    skipped_files: int | None = None
    """Folder runs only: files that could not be decoded."""
    copies_left_out: int | None = None
    """Folder runs only: files left out as the same image as another."""
    calibration: tuple[RecordedImage, ...] = ()
    """The images the temperature and the prediction sets were fitted on when they are not
    training images (project runs calibrated on test images); neither trained on nor scored."""
    slices_per_series: int | None = None
    """Project runs only: at most this many training slices were taken from one series, evenly
    spaced over its slice order (0: every slice; None: not recorded)."""
    slices_not_taken: int | None = None
    """Project runs only: training slices of longer series left out by that limit."""


@dataclasses.dataclass(frozen=True)
class TrainingSummary:
    """How training ended: the engine's ``RunFinished`` with the device and the held-out count."""

    device: str
    epochs_run: int
    best_epoch: int
    metrics: dict[str, float] | None
    """Validation metrics of the epoch kept (None without held-out images)."""
    stopped_early: bool
    elapsed_s: float
    lr_scale: float = 1.0
    warnings: tuple[str, ...] = ()
    validation_size: int = 0
    """Training images held out of the updates to choose the epoch."""
    bf16: bool | None = None
    """Whether the steps ran under bfloat16 autocast (None: not recorded)."""


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Metrics on the test images; the confusion matrix (rows: label) for single-label runs."""

    metrics: dict[str, float]
    confusion_matrix: list[list[int]] | None
    test_size: int


@dataclasses.dataclass(frozen=True)
class RecordedBackbone:
    name: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class RecordedFile:
    """The prompt file: its name (beside the record) and sha256."""

    name: str
    sha256: str


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """A run record (format :data:`RUN_RECORD_FORMAT`): everything needed to re-run exactly."""

    source: RunSource
    created: str
    notice: str
    versions: dict[str, str]
    machine: dict[str, str]
    seed: int
    method: dict[str, Any]
    recipe: dict[str, Any]
    trainable_parameters: int
    backbone: RecordedBackbone
    data: RecordedData
    training: TrainingSummary
    evaluation: Evaluation
    prompt_file: RecordedFile
    run_id: int | None = None
    """Project runs only: the run's id in the project."""
    calibration: Calibration | Uncalibrated | None = None
    """The temperature fitted on images not trained on, or why none was (None: not recorded, as
    in records written before calibration existed; the scores are uncalibrated)."""
    conformal: ConformalSets | NoPredictionSets | None = None
    """The prediction-set thresholds and their coverage, or why there are none."""
    format: str = RUN_RECORD_FORMAT

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (tuples as lists). A calibration or conformal block is
        the prompt file's block, or ``{"reason": ...}`` when none could be fitted."""
        document = dataclasses.asdict(self)
        document["calibration"] = calibration_block(self.calibration)
        document["conformal"] = conformal_block(self.conformal)
        return cast(dict[str, Any], json.loads(json.dumps(document)))


def calibration_block(value: Calibration | Uncalibrated | None) -> dict[str, Any] | None:
    """The run record's ``calibration`` JSON: the prompt file's block, or the reason and the
    number of images there were."""
    if isinstance(value, Uncalibrated):
        return {"reason": value.reason, "images": value.images}
    return None if value is None else value.to_dict()


def conformal_block(value: ConformalSets | NoPredictionSets | None) -> dict[str, Any] | None:
    """The run record's ``conformal`` JSON: the prompt file's block, or the reason."""
    if isinstance(value, NoPredictionSets):
        return {"reason": value.reason}
    return None if value is None else value.to_dict()


def _calibration(block: object) -> Calibration | Uncalibrated | None:
    if block is None:
        return None
    if isinstance(block, Mapping) and "reason" in block:
        return Uncalibrated(str(block["reason"]), int(block.get("images", 0) or 0))
    return Calibration.from_dict(block)


def _conformal(block: object) -> ConformalSets | NoPredictionSets | None:
    if block is None:
        return None
    if isinstance(block, Mapping) and "reason" in block:
        return NoPredictionSets(str(block["reason"]))
    return ConformalSets.from_dict(block)


def write_run_record(path: Path, record: TrainingRecord) -> Path:
    """Write ``record`` to ``path`` (JSON, ``indent=2, sort_keys=True``), whole or not at all."""
    text = json.dumps(record.to_json(), indent=2, sort_keys=True) + "\n"
    return atomic_write_text(path, text, "run record")


def read_run_record(path: Path) -> TrainingRecord:
    """The run record at ``path``, in the current schema whatever format it was written in.

    Raises :class:`RunRecordError` when the file cannot be read, is not JSON, lacks a field, or
    is of a format not in :data:`READABLE_FORMATS` (the message names both).
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise RunRecordError(f"{path.name}: the run record cannot be read ({err})") from err
    except ValueError as err:
        raise RunRecordError(f"{path.name}: the run record is not valid JSON ({err})") from err
    return run_record_from_json(document, path.name)


def run_record_from_json(document: object, where: str = "run record") -> TrainingRecord:
    """A run record from its parsed JSON (see :func:`read_run_record`); ``where`` names it in
    messages."""
    if not isinstance(document, dict):
        raise RunRecordError(f"{where}: a run record is a JSON object")
    found = document.get("format")
    if found not in READABLE_FORMATS:
        named = repr(found) if found is not None else "no format"
        raise RunRecordError(
            f"{where}: the run record has {named}; this version of EPT Studio reads "
            f"{' and '.join(READABLE_FORMATS)}"
        )
    try:
        current = _from_v1(document) if found == V1_FORMAT else document
        return _parse(current)
    except KeyError as err:
        raise RunRecordError(f"{where}: the run record ({found}) lacks {err.args[0]!r}") from err
    except (TypeError, ValueError, AttributeError) as err:
        raise RunRecordError(f"{where}: the run record ({found}) is malformed ({err})") from err


def _from_v1(document: Mapping[str, Any]) -> dict[str, Any]:
    """An ``ept-studio-run/1`` record as the current schema's JSON. A folder run's /1 record had
    ``support`` / ``query`` images named by class and a ``query_size``; a project run's had the
    current ``train`` / ``test`` images, ``test_size`` and ``run_id``."""
    upgraded = {**document, "format": RUN_RECORD_FORMAT}
    data = dict(document["data"])
    if "support" in data or "query" in data:
        classes = list(data["classes"])

        def images(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"sha256": i["sha256"], "target": classes.index(i["class"])} for i in items]

        upgraded["source"] = "folder"
        upgraded["data"] = {
            "classes": classes,
            "label_mode": "single",
            "train": images(data["support"]),
            "test": images(data["query"]),
            "shots": data.get("shots"),
            "skipped_files": data.get("skipped_files"),
            "copies_left_out": data.get("copies_left_out"),
        }
        evaluation = dict(document["evaluation"])
        evaluation["test_size"] = evaluation.pop("query_size", len(data["query"]))
        upgraded["evaluation"] = evaluation
        upgraded.pop("run_id", None)
    else:
        upgraded["source"] = "project"
    return upgraded


def _parse(document: Mapping[str, Any]) -> TrainingRecord:
    source = document["source"]
    if source not in ("folder", "project"):
        raise ValueError(f"source {source!r} is neither 'folder' nor 'project'")
    data, training, evaluation = document["data"], document["training"], document["evaluation"]
    run_id = document.get("run_id")
    return TrainingRecord(
        source=cast(RunSource, source),
        created=str(document["created"]),
        notice=str(document["notice"]),
        versions={str(k): str(v) for k, v in dict(document["versions"]).items()},
        machine={str(k): str(v) for k, v in dict(document["machine"]).items()},
        seed=int(document["seed"]),
        method=dict(document["method"]),
        recipe=dict(document["recipe"]),
        trainable_parameters=int(document["trainable_parameters"]),
        backbone=RecordedBackbone(
            str(document["backbone"]["name"]), str(document["backbone"]["sha256"])
        ),
        data=RecordedData(
            classes=tuple(str(c) for c in data["classes"]),
            label_mode=str(data["label_mode"]),
            train=tuple(_image(i) for i in data["train"]),
            test=tuple(_image(i) for i in data["test"]),
            shots=_optional_int(data.get("shots")),
            skipped_files=_optional_int(data.get("skipped_files")),
            copies_left_out=_optional_int(data.get("copies_left_out")),
            calibration=tuple(_image(i) for i in data.get("calibration") or ()),
            slices_per_series=_optional_int(data.get("slices_per_series")),
            slices_not_taken=_optional_int(data.get("slices_not_taken")),
        ),
        training=_training(training),
        evaluation=Evaluation(
            metrics={str(k): float(v) for k, v in dict(evaluation["metrics"]).items()},
            confusion_matrix=(
                None
                if evaluation.get("confusion_matrix") is None
                else [[int(v) for v in row] for row in evaluation["confusion_matrix"]]
            ),
            test_size=int(evaluation["test_size"]),
        ),
        prompt_file=RecordedFile(
            str(document["prompt_file"]["name"]), str(document["prompt_file"]["sha256"])
        ),
        run_id=_optional_int(run_id),
        calibration=_calibration(document.get("calibration")),
        conformal=_conformal(document.get("conformal")),
    )


def _image(image: Mapping[str, Any]) -> RecordedImage:
    target = image["target"]
    parsed: Target = tuple(int(v) for v in target) if isinstance(target, list) else int(target)
    rendering = image.get("rendering")
    return RecordedImage(
        str(image["sha256"]), parsed, dict(rendering) if rendering is not None else None
    )


def _training(training: Mapping[str, Any]) -> TrainingSummary:
    metrics = training.get("metrics")
    return TrainingSummary(
        device=str(training["device"]),
        epochs_run=int(training["epochs_run"]),
        best_epoch=int(training["best_epoch"]),
        metrics=None if metrics is None else {str(k): float(v) for k, v in metrics.items()},
        stopped_early=bool(training["stopped_early"]),
        elapsed_s=float(training["elapsed_s"]),
        lr_scale=float(training.get("lr_scale", 1.0)),
        warnings=tuple(str(w) for w in training.get("warnings", ())),
        validation_size=int(training.get("validation_size", 0) or 0),
        bf16=_optional_bool(training.get("bf16")),
    )


def _optional_bool(value: object) -> bool | None:
    return None if value is None else bool(value)


def _optional_int(value: object) -> int | None:
    return None if value is None else int(cast(Any, value))


__all__ = [
    "READABLE_FORMATS",
    "RUN_RECORD_FORMAT",
    "Evaluation",
    "RecordedBackbone",
    "RecordedData",
    "RecordedFile",
    "RecordedImage",
    "RunSource",
    "Target",
    "TrainingRecord",
    "TrainingSummary",
    "calibration_block",
    "conformal_block",
    "read_run_record",
    "run_record_from_json",
    "write_run_record",
]
