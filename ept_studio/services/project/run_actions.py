"""What the app does with a finished training run: predict with it, export it.

Before export, predictions run the tuned torch model rebuilt from the run's prompt file (checksum
verified). ONNX export writes ``runs/<id>/model.onnx`` inside the project first (parity-checked
against torch), then copies it to where the user asked; from then on the run predicts through ONNX
Runtime, the way the exported model will run elsewhere. An int8 or fp16 export converts that fp32
model and writes the copy where the user asked only if it passed its check against the fp32 model
on the same images; a refused copy is an event with the check's figures, not an error, so the app
can show them and offer the fp32 export instead.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ept_studio.common.errors import EptStudioError, ExportError, ProjectError
from ept_studio.common.files import file_sha256
from ept_studio.data.store import Project, RunRecord
from ept_studio.services.model.export import (
    OnnxExportResult,
    check_images,
    export_handle_to_onnx,
    reference_check_files,
)
from ept_studio.services.model.metric_names import metric_tooltip, plain_metric_name
from ept_studio.services.model.onnx_inference import open_onnx_model, open_torch_model
from ept_studio.services.model.stages import StageStarted
from ept_studio.services.project.inference import predict_project
from ept_studio.services.project.results import TRAINING_VIEW_NAME, ResultsScope

if TYPE_CHECKING:
    import numpy as np

    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model_io import PrecisionRecord, Runner
    from ept_studio.core.onnx_precision import Precision, PrecisionThresholds
    from ept_studio.services.model.inference import TunedHandle

ONNX_NAME = "model.onnx"


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A finished training run as the run list shows it."""

    run_id: int
    label: str
    method: str
    metrics: dict[str, float]
    has_onnx: bool
    tooltip: str = ""
    """What the label's metric means, with its technical key."""


@dataclasses.dataclass(frozen=True)
class ExportCancelled:
    """The user cancelled an export; nothing was written where they asked."""

    run_id: int


@dataclasses.dataclass(frozen=True)
class SmallerModelRefused:
    """The int8 or fp16 copy fell short of the fp32 model on the check images; nothing was written
    where the user asked (the fp32 model stays in the run folder)."""

    run_id: int
    precision: str
    record: PrecisionRecord
    """The check's figures and the thresholds they missed."""
    check_source: str


def is_training_run(run: RunRecord) -> bool:
    return run.config.get("kind", "training") == "training" and "prompt_file" in run.artifacts


def trained_runs(project: Project) -> list[TrainedRun]:
    """Finished training runs, newest first."""
    runs = []
    for run in reversed(project.runs()):
        if run.status != "finished" or not is_training_run(run):
            continue
        method = str(run.config.get("method", {}).get("method", "?"))
        accuracy = run.metrics.get("accuracy")
        shown = ""
        if accuracy is not None:
            shown = f", {plain_metric_name('accuracy').lower()} on test images {accuracy:.2f}"
        detail = run.config.get("detail_size")
        checked = " + fine detail" if detail else ""
        label = f"Run {run.id}: {method.upper()}{checked}{shown}"
        tooltip = _metrics_tooltip(run.metrics)
        if detail:
            tooltip += (
                f"\nScores: the tuned model averaged with the untrained class centres of the "
                f"training images seen at {detail} px (Also check fine detail)"
            )
        runs.append(
            TrainedRun(
                run.id,
                label,
                method,
                dict(run.metrics),
                onnx_file(project, run.id) is not None,
                tooltip,
            )
        )
    return runs


def _metrics_tooltip(metrics: dict[str, float]) -> str:
    """One line per recorded test metric: plain name, value, and what it means."""
    lines = []
    for key, value in metrics.items():
        if isinstance(value, int | float):
            lines.append(f"{plain_metric_name(key)}: {value:.3f}. {metric_tooltip(key)}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ResultsChoice:
    """A results view: a run whose predictions are scored, and which of them (``scope``)."""

    run_id: int
    label: str
    scope: ResultsScope = ResultsScope.TEST


def result_runs(project: Project, model_run: int) -> list[ResultsChoice]:
    """The results views of the model of ``model_run``.

    Each of its inference runs (newest first) scored on the images it was not trained on; the
    newest one also on the training images, in a view named for what it is; then the model's own
    test-set evaluation.
    """
    choices = []
    for run in reversed(project.runs()):
        if run.config.get("source_run") == model_run and run.status == "finished":
            count = int(run.metrics.get("images", 0))
            label = f"Predictions, run {run.id} ({count} images): test images"
            choices.append(ResultsChoice(run.id, label))
            if not any(c.scope is ResultsScope.TRAINING for c in choices):
                training = f"Predictions, run {run.id}: {TRAINING_VIEW_NAME}"
                choices.append(ResultsChoice(run.id, training, ResultsScope.TRAINING))
    if project.predictions(model_run):
        choices.append(ResultsChoice(model_run, f"Test images of run {model_run}"))
    return choices


def prompt_file(project: Project, run_id: int) -> Path:
    """The run's prompt file, checked against the sha256 recorded when it was saved."""
    run = project.run(run_id)
    if run.status != "finished" or "prompt_file" not in run.artifacts:
        raise ProjectError(f"run {run_id} has no saved model ({run.status})")
    path = project.run_dir(run_id) / str(run.artifacts["prompt_file"])
    if not path.is_file() or file_sha256(path) != run.artifacts["prompt_sha256"]:
        raise ProjectError(f"{path}: the run's prompt file is missing or changed; train again")
    return path


def onnx_file(project: Project, run_id: int) -> Path | None:
    """The run's exported ONNX model inside the project, when it exists and is unchanged."""
    run = project.run(run_id)
    sha = run.artifacts.get("onnx_sha256")
    path = project.run_dir(run_id) / ONNX_NAME
    if sha is None or not path.is_file():
        return None
    return path if file_sha256(path) == sha else None


def load_run_model(
    project: Project, run_id: int, backbone: LoadedBackbone | None = None
) -> TunedHandle:
    """The run's tuned torch model (the backbone's checksum must match the one it was tuned on)."""
    from ept_studio.services.model.inference import load_tuned_model

    return load_tuned_model(prompt_file(project, run_id), backbone=backbone)


def open_run_model(project: Project, run_id: int, backbone: LoadedBackbone | None = None) -> Runner:
    """The runner the app predicts with: the run's exported ONNX model when it has one (the way
    it will run elsewhere), else its tuned torch model."""
    exported = onnx_file(project, run_id)
    if exported is not None:
        return open_onnx_model(exported)
    return open_torch_model(load_run_model(project, run_id, backbone))


def predict_with_run(
    folder: Path,
    run_id: int,
    *,
    image_ids: Sequence[int] | None = None,
    backbone: LoadedBackbone | None = None,
    cancel: Callable[[], bool] | None = None,
    locations_dir: Path | None = None,
) -> Iterator[object]:
    """Predict the project's images (or ``image_ids``) with the run; stored as an inference run."""
    with Project.open(folder, locations_dir=locations_dir) as project:
        exported = onnx_file(project, run_id) is not None
        if exported:
            yield StageStarted("Opening the exported ONNX model")
        else:
            yield StageStarted("Loading the tuned model")
        runner = open_run_model(project, run_id, backbone)
        name = f"run {run_id} {ONNX_NAME}" if exported else f"run {run_id} prompt file"
    yield from predict_project(
        folder,
        runner,
        model_name=name,
        image_ids=image_ids,
        source_run=run_id,
        cancel=cancel,
        locations_dir=locations_dir,
    )


def export_run_onnx(
    folder: Path,
    run_id: int,
    destination: Path,
    *,
    precision: str = "fp32",
    min_agreement: float | None = None,
    min_correlation: float | None = None,
    backbone: LoadedBackbone | None = None,
    check_files: Sequence[Path] = (),
    cancel: Callable[[], bool] | None = None,
    locations_dir: Path | None = None,
) -> Iterator[object]:
    """Export the run to ONNX (parity-checked), keep it in the run folder, copy it out.

    ``precision`` int8 or fp16 writes, instead of the copy, a converted model that passed its check
    against the fp32 one (top-1 agreement at least ``min_agreement``, map correlations at least
    ``min_correlation``; None: the defaults of :mod:`ept_studio.core.onnx_precision`), or ends with
    :class:`SmallerModelRefused`. ``cancel`` is asked between the steps; a cancelled export yields
    :class:`ExportCancelled` and leaves nothing at ``destination``.
    """
    from ept_studio.core.onnx_precision import Precision, PrecisionThresholds, precision_choice

    chosen, stop = precision_choice(precision), cancel or (lambda: False)
    defaults = PrecisionThresholds()
    thresholds = PrecisionThresholds(
        defaults.min_agreement if min_agreement is None else min_agreement,
        defaults.min_correlation if min_correlation is None else min_correlation,
    )
    with Project.open(folder, locations_dir=locations_dir) as project:
        yield StageStarted("Loading the tuned model")
        handle = load_run_model(project, run_id, backbone)
        if stop():
            yield ExportCancelled(run_id)
            return
        yield StageStarted("Exporting to ONNX and checking it against PyTorch")
        inside = project.run_dir(run_id) / ONNX_NAME
        result = export_handle_to_onnx(handle, inside, check_files=check_files)
        project.set_run_artifacts(run_id, {"onnx_file": ONNX_NAME, "onnx_sha256": result.sha256})
        if stop():
            yield ExportCancelled(run_id)
            return
        if chosen is Precision.FP32:
            _copy(inside, Path(destination))
            project.record_export(run_id, "onnx", Path(destination).name, result.sha256)
            yield dataclasses.replace(result, onnx_path=Path(destination))
            return
        yield StageStarted(f"Making the {chosen.value} model and checking it against fp32")
        pixels = _check_pixels(handle, check_files)
        outcome = _reduced_copy(inside, Path(destination), chosen, pixels, thresholds, result)
        if isinstance(outcome, OnnxExportResult):
            project.record_export(
                run_id, f"onnx-{chosen.value}", Path(destination).name, outcome.sha256
            )
            yield outcome
        else:
            yield SmallerModelRefused(run_id, chosen.value, outcome, result.check_source)


def _check_pixels(
    handle: TunedHandle, check_files: Sequence[Path]
) -> tuple[np.ndarray, np.ndarray | None]:
    """The fp32 export's check images, preprocessed as the model reads them: its pixels and, for
    a model with a detail view, its detail pixels (else None)."""
    from ept_studio.core.model_io import preprocess_inputs
    from ept_studio.core.onnx_export import model_info

    files = list(check_files) or reference_check_files()
    images = check_images(files, dict(handle.metadata.rendering))
    return preprocess_inputs(images, model_info(handle.model, handle.metadata, ""))


def _reduced_copy(
    fp32: Path,
    destination: Path,
    precision: Precision,
    pixels: tuple[np.ndarray, np.ndarray | None],
    thresholds: PrecisionThresholds,
    result: OnnxExportResult,
) -> OnnxExportResult | PrecisionRecord:
    """The int8 or fp16 model written at ``destination``, or the figures it fell short with;
    ``pixels`` are the check images' pixels and detail pixels (:func:`_check_pixels`)."""
    from ept_studio.core.onnx_precision import export_precision

    plain, detail = pixels
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        reduced = export_precision(
            fp32, destination, precision, plain, thresholds=thresholds, detail_pixels=detail
        )
    except OSError as err:
        raise ExportError(f"{destination}: the ONNX model cannot be written ({err})") from err
    except ExportError:
        record = _shortfall(fp32, precision, pixels, thresholds)
        if record is None:
            raise
        return record
    return dataclasses.replace(
        result,
        onnx_path=reduced.path,
        sha256=file_sha256(reduced.path),
        size_bytes=reduced.size_bytes,
        seconds=result.seconds + reduced.seconds,
        precision=precision.value,
        precision_check=reduced.record,
        notes=reduced.notes,
    )


def _shortfall(
    fp32: Path,
    precision: Precision,
    pixels: tuple[np.ndarray, np.ndarray | None],
    thresholds: PrecisionThresholds,
) -> PrecisionRecord | None:
    """The check's figures when the reduced model fell short; None when the export failed for
    another reason (then its error stands). The refusal's message holds the figures as text only,
    so the converted model is made and compared once more, beside the fp32 one."""
    from ept_studio.core.onnx_precision import compare, convert, shortfalls
    from ept_studio.core.onnx_runtime import OnnxRunner

    candidate = fp32.with_name(f".{precision.value}.check.onnx")
    try:
        convert(fp32, candidate, precision)
        device = "auto" if precision.value == "fp16" else "cpu"
        reference = OnnxRunner(fp32, device="cpu", spinning=False).run(*pixels)
        reduced = OnnxRunner(candidate, device=device, spinning=False).run(*pixels)
    except EptStudioError:
        return None
    finally:
        candidate.unlink(missing_ok=True)
    record = compare(reference, reduced, precision, thresholds)
    return record if shortfalls(record) else None


def _copy(source: Path, destination: Path) -> None:
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial = destination.with_name(destination.name + ".partial")
        shutil.copyfile(source, partial)
        partial.replace(destination)
    except OSError as err:
        raise ExportError(f"{destination}: the ONNX model cannot be written ({err})") from err


__all__ = [
    "ONNX_NAME",
    "ExportCancelled",
    "OnnxExportResult",
    "ResultsChoice",
    "SmallerModelRefused",
    "TrainedRun",
    "export_run_onnx",
    "load_run_model",
    "onnx_file",
    "open_run_model",
    "predict_with_run",
    "prompt_file",
    "result_runs",
    "trained_runs",
]
