"""The one training pipeline every route shares: fit, evaluate, save the prompt file and run record.

``train_on_folder`` (a folder of class sub-folders) and ``train_on_project`` (a project's labels)
each gather their images their own way, then call :func:`fit` (the engine's training loop, its
events passed on), :func:`calibrate` on images the model was not trained on (the held-out part
of the support set, or a project's calibration half of its test images), :func:`evaluate_samples`
on the images held out of training and :func:`save_run`, which writes the prompt file (with the
calibration and prediction-set blocks) and the run record
(:mod:`~ept_studio.services.model.run_record`) the same way for both.
"""

from __future__ import annotations

import dataclasses
import datetime
import platform
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common.errors import TrainingError
from ept_studio.core.conformal import (
    DEFAULT_COVERAGE,
    ConformalSets,
    NoPredictionSets,
    fit_conformal,
    fit_multilabel_sets,
)
from ept_studio.core.temperature import Calibration, Uncalibrated, fit_calibration
from ept_studio.services.model.run_record import (
    Evaluation,
    RecordedBackbone,
    RecordedData,
    RecordedFile,
    RunSource,
    Target,
    TrainingRecord,
    TrainingSummary,
    write_run_record,
)

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model import TunedModel
    from ept_studio.core.training import TrainRecipe

Sample = tuple["torch.Tensor", Target]
_Block = TypeVar("_Block", Calibration, ConformalSets)


def fit(
    model: TunedModel,
    samples: Sequence[Sample],
    recipe: TrainRecipe,
    loaded: LoadedBackbone,
    label_mode: str,
    cancel: Callable[[], bool] | None,
    *,
    val_set: Sequence[Sample] | None = None,
) -> Generator[object, None, TrainingSummary]:
    """Run the engine's training loop, passing its events on; returns how training ended.

    ``val_set`` (held-out training images) chooses the epoch kept and may stop the run early.
    A failed run raises :class:`TrainingError`; a cancelled one ``TrainingCancelled``.
    """
    from ept_studio.core.model import LabelMode as EngineLabelMode
    from ept_studio.core.training import RunFailed, RunFinished, RunStarted, train

    device, bf16 = "unknown", None
    finished: RunFinished | None = None
    for event in train(
        model,
        list(samples),
        recipe,
        input_size=loaded.spec.input_size,
        mean=loaded.spec.mean,
        std=loaded.spec.std,
        label_mode=EngineLabelMode(label_mode),
        val_set=list(val_set) if val_set else None,
        cancel=cancel,
    ):
        yield event
        if isinstance(event, RunFailed):
            raise TrainingError(event.message)
        if isinstance(event, RunStarted):
            device, bf16 = event.device, event.bf16
        if isinstance(event, RunFinished):
            finished = event
    if finished is None:
        raise TrainingError("training ended without finishing a run")
    return TrainingSummary(
        device=device,
        epochs_run=finished.epochs_run,
        best_epoch=finished.best_epoch,
        metrics=finished.metrics,
        stopped_early=finished.stopped_early,
        elapsed_s=finished.elapsed_s,
        lr_scale=finished.lr_scale,
        warnings=tuple(finished.warnings),
        validation_size=len(val_set) if val_set else 0,
        bf16=bf16,
    )


@dataclasses.dataclass(frozen=True)
class Calibrated:
    """What :func:`calibrate` fitted: the temperature (or why none) and the prediction sets (or
    why none)."""

    calibration: Calibration | Uncalibrated
    conformal: ConformalSets | NoPredictionSets

    @property
    def temperature(self) -> float:
        """The fitted temperature; 1.0 (scores as they are) when none was fitted."""
        return self.calibration.temperature if isinstance(self.calibration, Calibration) else 1.0


UNCALIBRATED_SETS = "no prediction sets, as the scores could not be calibrated: {reason}"


def calibrate(
    model: TunedModel,
    samples: Sequence[Sample],
    loaded: LoadedBackbone,
    label_mode: str,
    *,
    source: str,
    coverage: float = DEFAULT_COVERAGE,
    detail: DetailFit | None = None,
) -> Calibrated:
    """Temperature scaling, then split-conformal prediction sets on the calibrated scores, fitted
    on ``samples`` (images the model was not trained on; ``source`` says which, in a short plain
    phrase). Too few images: the reasons instead. Sets are fitted only on calibrated scores, so a
    model has sets only when it also has a temperature. With ``detail`` the scores are the tuned
    model's combined with the detail view's, as the saved model gives them."""
    import numpy as np

    from ept_studio.core.temperature import apply_temperature

    logits = _logits(model, samples, loaded, label_mode, detail)
    targets = _targets([target for _, target in samples], model.num_classes, label_mode)
    calibration = fit_calibration(logits, targets, source=source, label_mode=label_mode)
    if isinstance(calibration, Uncalibrated):
        reason = calibration.reason.removeprefix("scores are uncalibrated: ")
        return Calibrated(calibration, NoPredictionSets(UNCALIBRATED_SETS.format(reason=reason)))
    probabilities = apply_temperature(logits, calibration.temperature, label_mode)
    if label_mode == "multi":
        conformal = fit_multilabel_sets(probabilities, targets, coverage=coverage)
    else:
        conformal = fit_conformal(probabilities, np.asarray(targets), coverage=coverage)
    return Calibrated(calibration, conformal)


def _logits(
    model: TunedModel,
    samples: Sequence[Sample],
    loaded: LoadedBackbone,
    label_mode: str,
    detail: DetailFit | None = None,
) -> np.ndarray:
    from ept_studio.core.detail import scored_logits
    from ept_studio.core.model import LabelMode as EngineLabelMode

    spec = loaded.spec
    return scored_logits(
        model,
        None if detail is None else detail.view,
        [pixels for pixels, _ in samples],
        input_size=spec.input_size,
        detail_size=None if detail is None else detail.input_size,
        mean=spec.mean,
        std=spec.std,
        label_mode=EngineLabelMode(label_mode),
    )


@dataclasses.dataclass(frozen=True)
class DetailFit:
    """The detail view (:mod:`ept_studio.core.detail`) fitted on a run's training images, and the
    backbone built for its size."""

    view: TunedModel
    loaded: LoadedBackbone

    @property
    def input_size(self) -> int:
        return int(self.loaded.spec.input_size)


def fit_detail(
    model: TunedModel,
    samples: Sequence[Sample],
    loaded: LoadedBackbone,
    size: int,
    scale: float,
) -> DetailFit:
    """The nearest-centroid prototype of ``samples`` (the images the tuned model trained on, class
    indices) on ``loaded``'s weights built for ``size`` px, on the tuned model's device."""
    from ept_studio.core.backbones import backbone_at_size
    from ept_studio.core.detail import fit_detail_view

    device = str(next(model.head.parameters()).device)
    resized = backbone_at_size(loaded, size)
    view = fit_detail_view(
        resized,
        [pixels for pixels, _ in samples],
        [int(target) for _, target in samples],  # type: ignore[arg-type]
        model.num_classes,
        scale,
        device=device,
    )
    return DetailFit(view, resized)


def _targets(targets: Sequence[Target], classes: int, label_mode: str) -> np.ndarray:
    """Class indices ``[n]`` or multi-hot ``[n, C]`` as numpy."""
    import numpy as np

    if label_mode == "multi":
        return np.asarray(list(targets), dtype=np.int64).reshape(-1, classes)
    return np.asarray(targets, dtype=np.int64).reshape(-1)


def evaluate_samples(
    model: TunedModel,
    samples: Sequence[Sample],
    loaded: LoadedBackbone,
    label_mode: str,
    *,
    temperature: float = 1.0,
    detail: DetailFit | None = None,
) -> tuple[Evaluation, np.ndarray | None]:
    """(metrics and, single-label, the confusion matrix; the ``[n, C]`` model scores, divided by
    ``temperature`` before the softmax or sigmoid) on images the model did not learn from. No
    images: no metric and None."""
    from ept_studio.core.metrics import classification_metrics, confusion_matrix
    from ept_studio.core.model import LabelMode as EngineLabelMode
    from ept_studio.core.temperature import apply_temperature

    if not samples:
        return Evaluation(metrics={}, confusion_matrix=None, test_size=0), None
    targets = _targets([target for _, target in samples], model.num_classes, label_mode)
    logits = _logits(model, samples, loaded, label_mode, detail)
    probabilities = apply_temperature(logits, temperature, label_mode)
    metrics = classification_metrics(probabilities, targets, EngineLabelMode(label_mode))
    matrix = None
    if label_mode == "single":
        predictions = probabilities.argmax(axis=1)
        matrix = confusion_matrix(targets, predictions, model.num_classes).tolist()
    evaluation = Evaluation(
        metrics={k: float(v) for k, v in metrics.items()},
        confusion_matrix=matrix,
        test_size=len(samples),
    )
    return evaluation, probabilities


def library_versions() -> dict[str, str]:
    """The versions a run depends on: EPT Studio, torch, timm, numpy, pydicom, Python."""
    import numpy
    import pydicom
    import timm
    import torch

    return {
        "ept_studio": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "pydicom": pydicom.__version__,
        "python": platform.python_version(),
    }


@dataclasses.dataclass(frozen=True)
class FittedRun:
    """A run fitted and evaluated, about to be saved; ``rendering`` goes into the prompt file."""

    source: RunSource
    model: TunedModel
    loaded: LoadedBackbone
    recipe: dict[str, Any]
    data: RecordedData
    training: TrainingSummary
    evaluation: Evaluation
    rendering: dict[str, Any]
    calibrated: Calibrated
    run_id: int | None = None
    detail: DetailFit | None = None


@dataclasses.dataclass(frozen=True)
class SavedFiles:
    prompt_sha256: str
    record: TrainingRecord
    compact_file: Path | None


def save_run(
    run: FittedRun, prompt_path: Path, record_path: Path, *, compact_path: Path | None = None
) -> SavedFiles:
    """Write the prompt file (and, asked for, its compact form), then the run record."""
    from ept_studio.core.detail import detail_tensors
    from ept_studio.core.prompt_file import (
        PromptFileMetadata,
        backbone_fields,
        save_prompt_file,
        to_compact,
    )

    method = run.model.method_config.to_dict()
    seed = int(run.recipe["seed"])
    metadata = PromptFileMetadata(
        method=method,
        **backbone_fields(run.loaded),
        label_mode=run.data.label_mode,
        class_names=run.data.classes,
        rendering=run.rendering,
        metrics=run.evaluation.metrics,
        seed=seed,
        calibration=_fitted(run.calibrated.calibration, Calibration),
        conformal=_fitted(run.calibrated.conformal, ConformalSets),
        detail_input_size=None if run.detail is None else run.detail.input_size,
    )
    prompt_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.cpu() for k, v in run.model.trainable_state().items()}
    if run.detail is not None:
        tensors.update(detail_tensors(run.detail.view))
    sha = save_prompt_file(prompt_path, tensors, metadata)
    if compact_path is not None:
        save_prompt_file(compact_path, *to_compact(tensors, metadata))
    record = TrainingRecord(
        source=run.source,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        notice=RESEARCH_USE_NOTICE,
        versions=library_versions(),
        machine={"platform": platform.platform(), "processor": platform.machine()},
        seed=seed,
        method=method,
        recipe=run.recipe,
        trainable_parameters=run.model.trainable_parameter_count(),
        backbone=RecordedBackbone(run.loaded.spec.name, run.loaded.weights_sha256),
        data=run.data,
        training=run.training,
        evaluation=run.evaluation,
        prompt_file=RecordedFile(prompt_path.name, sha),
        run_id=run.run_id,
        calibration=run.calibrated.calibration,
        conformal=run.calibrated.conformal,
    )
    write_run_record(record_path, record)
    return SavedFiles(sha, record, compact_path)


def _fitted(value: object, kind: type[_Block]) -> _Block | None:
    return value if isinstance(value, kind) else None
