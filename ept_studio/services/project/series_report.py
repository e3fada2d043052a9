"""A series' prediction as a DICOM Structured Report (Comprehensive 3D SR, built with highdicom).

The report belongs to the study of its series: it carries that study's patient and study module,
read from the source files at export time, and references every slice scored by its SOP Class and
SOP Instance UID. That is the only place the patient's identifiers go: the project keeps none of
them, and nothing here logs them or puts a UID or a path in a message (an image is named by its id
in the project). The sources are read, never written; a source that is missing or has changed
since import stops the export before anything is written.

Content tree (the codes of scheme ``99EPTSTUDIO`` are this app's own)::

    CONTAINER  Series classification result (99EPTSTUDIO)
      TEXT     Comment (DCM 121106)             "Research use only: not for diagnosis"
      TEXT     Predicted class                  the class name
      NUM      Model score: <class>             one per class, 0-1, unit "no units" (UCUM 1)
      TEXT     Aggregation over slices          "mean" or "max"
      NUM      Slices scored                    count, unit "no units"
      TEXT     Calibrated                       "yes" or "no"
      TEXT     Algorithm Name (DCM 111001)      the tuning method
      TEXT     Backbone                         the backbone's name
      TEXT     Run                              the run id
      IMAGE    Decisive slice                   the slice with the top score for the class
      IMAGE    Source image                     one per slice scored, in slice order
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ept_studio.common.errors import ExportError, ProjectError
from ept_studio.common.files import atomic_write_bytes, display_path
from ept_studio.data.store import Project
from ept_studio.data.store_records import ImageRecord
from ept_studio.services.project.model_card import _method_name, method_description
from ept_studio.services.project.series_predictions import SeriesPrediction, series_predictions

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

RESEARCH_NOTICE = "Research use only: not for diagnosis"
SCHEME = "99EPTSTUDIO"
SERIES_NUMBER = 9900
MANUFACTURER = "EPT Studio"


class SeriesReportError(ExportError):
    """A series' report cannot be written; the message says why and names no patient data."""


@dataclasses.dataclass(frozen=True)
class SeriesReportsWritten:
    """What one export of a run's reports wrote: a file per DICOM series, in series order, and
    how many series had none (some slice of theirs is not a DICOM file)."""

    paths: tuple[Path, ...]
    skipped: int


def report_file_name(run_id: int, prediction: SeriesPrediction) -> str:
    """The report's file name: the run and the series' first image, never a UID or a name."""
    return f"sr-run{run_id}-image{prediction.image_ids[0]}.dcm"


def write_series_reports(
    project: Project,
    run_id: int,
    aggregation: str,
    folder: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> SeriesReportsWritten:
    """Write run ``run_id``'s per-series results (``aggregation``: ``mean`` or ``max``) as one
    report per DICOM series into ``folder``, all of them or none.

    The reports are written into a hidden folder inside ``folder`` first and moved in once every
    one is whole, so a source that stops the export leaves no report of this export behind.
    ``progress(done, total)`` is called after each report.
    """
    predictions = series_predictions(project, run_id, aggregation)
    dicom = reportable_series(project, predictions)
    skipped = len(predictions) - len(dicom)
    if not dicom:
        return SeriesReportsWritten((), skipped)
    model = describe_model(project, run_id)
    staging = _staging_folder(Path(folder))
    try:
        staged = []
        for done, prediction in enumerate(dicom, start=1):
            out = staging / report_file_name(run_id, prediction)
            staged.append(write_series_report(project, prediction, out, model_description=model))
            if progress is not None:
                progress(done, len(dicom))
        paths = tuple(_move_in(path, Path(folder)) for path in staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return SeriesReportsWritten(paths, skipped)


def reportable_series(
    project: Project, predictions: Sequence[SeriesPrediction]
) -> list[SeriesPrediction]:
    """The predictions a report can be written for: series whose slices are all DICOM files."""
    return [p for p in predictions if p.image_ids and _all_dicom(project, p.image_ids)]


def _all_dicom(project: Project, image_ids: tuple[int, ...]) -> bool:
    return all(project.image(i).kind == "dicom" for i in image_ids)


def _staging_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".sr-partial-", dir=folder))
    except OSError as err:
        raise SeriesReportError(
            f"{display_path(folder)}: the reports cannot be written there ({err.strerror or err})"
        ) from err


def _move_in(staged: Path, folder: Path) -> Path:
    target = folder / staged.name
    try:
        os.replace(staged, target)
    except OSError as err:
        raise SeriesReportError(
            f"{display_path(target)}: the report cannot be written ({err.strerror or err})"
        ) from err
    return target


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """What made the prediction: the tuning method in words, the backbone and the run."""

    method: str
    backbone: str
    run_id: int


def describe_model(project: Project, run_id: int) -> ModelDescription:
    """The method, backbone and id of one of ``project``'s runs.

    An inference run made with a model trained in this project is described by that training
    run's method (its full settings); otherwise by the method the model file names.
    """
    run = project.run(run_id)
    method: Any = run.config.get("method", {})
    source = run.config.get("source_run")
    if isinstance(source, int) and source != run_id:
        with contextlib.suppress(ProjectError):  # deleted: keep the model file's method
            method = project.run(source).config.get("method", method)
    if not isinstance(method, Mapping):
        method = {"method": str(method)}
        return ModelDescription(_method_name(method), run.backbone, run_id)
    return ModelDescription(method_description(method), run.backbone, run_id)


def write_series_report(
    project: Project,
    prediction: SeriesPrediction,
    out_path: Path,
    *,
    model_description: ModelDescription,
) -> Path:
    """Write ``prediction`` as an SR at ``out_path`` (whole or not at all); the path written.

    Raises :class:`SeriesReportError` when the series has no DICOM sources, or a source is missing
    or changed since import (named by its image id); nothing is written then.
    """
    images = [project.image(image_id) for image_id in prediction.image_ids]
    if not images:
        raise SeriesReportError("the series has no scored slices: there is nothing to report")
    not_dicom = [image.id for image in images if image.kind != "dicom"]
    if not_dicom:
        raise SeriesReportError(
            f"image {not_dicom[0]} is not a DICOM file: a structured report can only be written "
            "for a DICOM series"
        )
    sources = [_source_header(image) for image in images]
    _check_one_study(sources)
    report = _build_report(prediction, model_description, sources)
    buffer = io.BytesIO()
    report.save_as(buffer, enforce_file_format=True)
    return atomic_write_bytes(Path(out_path), buffer.getvalue(), "structured report")


def _source_header(image: ImageRecord) -> Dataset:
    """The source file's header, after checking it is the file the project imported."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if image.path is None:
        raise SeriesReportError(
            f"image {image.id}: its file is not known on this computer; locate it "
            "(`project check`) and export again"
        )
    try:
        data = image.path.read_bytes()
    except OSError:
        raise SeriesReportError(
            f"image {image.id}: its file is missing or cannot be read; locate it "
            "(`project check`) and export again"
        ) from None
    if hashlib.sha256(data).hexdigest() != image.sha256:
        raise SeriesReportError(
            f"image {image.id}: its file has changed since it was imported; the report would not "
            "describe the images the model scored"
        )
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, ValueError, EOFError) as err:
        raise SeriesReportError(
            f"image {image.id}: its file cannot be read as DICOM ({type(err).__name__})"
        ) from None


def _check_one_study(sources: Sequence[Dataset]) -> None:
    studies = {str(source.get("StudyInstanceUID", "")) for source in sources}
    if len(studies) != 1 or "" in studies:
        raise SeriesReportError(
            "the series' images do not all belong to one study: a report belongs to one study"
        )
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if any(not source.get(keyword) for source in sources):
            raise SeriesReportError(f"a source image has no {keyword}: it cannot be referenced")


def _build_report(
    prediction: SeriesPrediction, model: ModelDescription, sources: Sequence[Dataset]
) -> Any:
    import highdicom as hd

    root = hd.sr.ContainerContentItem(
        name=_code("EPT-RESULT", "Series classification result"), template_id=None
    )
    root.ContentSequence = hd.sr.ContentSequence(
        [*_result_items(prediction, model), *_image_items(prediction, sources)]
    )
    report = hd.sr.Comprehensive3DSR(
        evidence=list(sources),
        content=root,
        series_instance_uid=hd.UID(),
        series_number=SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=RESEARCH_NOTICE,
    )
    return report


def _result_items(prediction: SeriesPrediction, model: ModelDescription) -> list[Any]:
    from pydicom.sr.codedict import codes

    items = [
        _text(codes.DCM.Comment, RESEARCH_NOTICE),
        _text(_code("EPT-CLASS", "Predicted class"), prediction.predicted_class),
    ]
    for index, (name, probability) in enumerate(prediction.probabilities.items()):
        items.append(_number(_code(f"EPT-SCORE-{index}", f"Model score: {name}"), probability))
    items += [
        _text(_code("EPT-AGGREGATION", "Aggregation over slices"), prediction.aggregation),
        _number(_code("EPT-SLICES", "Slices scored"), float(len(prediction.image_ids))),
        _text(_code("EPT-CALIBRATED", "Calibrated"), "yes" if prediction.calibrated else "no"),
        _text(codes.DCM.AlgorithmName, model.method),
        _text(_code("EPT-BACKBONE", "Backbone"), model.backbone),
        _text(_code("EPT-RUN", "Run"), str(model.run_id)),
    ]
    return items


def _image_items(prediction: SeriesPrediction, sources: Sequence[Dataset]) -> list[Any]:
    by_id = dict(zip(prediction.image_ids, sources, strict=True))
    decisive = by_id.get(prediction.decisive_image_id)
    items = []
    if decisive is not None:
        items.append(_image(_code("EPT-DECISIVE", "Decisive slice"), decisive))
    items += [_image(_code("EPT-SOURCE", "Source image"), source) for source in sources]
    return items


def _code(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=SCHEME, meaning=meaning)


def _text(name: Any, value: str) -> Any:
    import highdicom as hd

    return hd.sr.TextContentItem(
        name=name, value=value, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )


def _number(name: Any, value: float) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.NumContentItem(
        name=name,
        value=value,
        unit=codes.UCUM.NoUnits,
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )


def _image(name: Any, source: Dataset) -> Any:
    import highdicom as hd

    return hd.sr.ImageContentItem(
        name=name,
        referenced_sop_class_uid=str(source.SOPClassUID),
        referenced_sop_instance_uid=str(source.SOPInstanceUID),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
