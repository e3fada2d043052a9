"""The whole clinical flow against a real Orthanc: three CT studies uploaded, two imported by
DICOMweb and one by DIMSE (C-GET) into one project, labelled by series, a tiny EPT trained and run,
one prediction per series, a structured report per series read back and stored on the same PACS
(STOW-RS or C-STORE, the way its study came), and the project's PACS copies left untouched.

What is asserted is what does not depend on the tiny model's accuracy: counts, references, sums.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from labelled_projects import CT_SMALL
from orthanc_support import PASSWORD, USER, Orthanc
from pydicom.uid import generate_uid
from support import tiny_backbone

from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import (
    DimseServer,
    ImportFinished,
    PacsServer,
    Project,
    ProjectPredicted,
    ProjectTrainingSaved,
    Role,
    describe_model,
    iter_dimse_import,
    label_series,
    pacs_cache_dir,
    pacs_import,
    predict_with_run,
    project_series,
    store_to_pacs,
    tune_project,
    write_series_report,
)
from ept_studio.services.project import series_predictions as per_series
from ept_studio.services.project.series_report import RESEARCH_NOTICE

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage
CLASSES = ("clear", "lesion")
SLICES = 3
PATIENTS = ("E2E-PATIENT-1", "E2E-PATIENT-2", "E2E-PATIENT-3")

UploadedSeries = dict[str, list[str]]
"""SeriesInstanceUID -> its SOP Instance UIDs in slice order."""


def _write_study(folder: Path, patient: str, serial: int) -> dict[str, tuple[str, list[Path]]]:
    """One study of ``patient``: a 3-slice CT series of each class; class -> (series UID, files).

    A "lesion" slice carries a bright square in its middle; every slice differs in one row, so no
    file is another's duplicate."""
    study = generate_uid()
    written: dict[str, tuple[str, list[Path]]] = {}
    for class_index, name in enumerate(CLASSES):
        series = generate_uid()
        paths = []
        for index in range(SLICES):
            dataset = pydicom.dcmread(CT_SMALL)
            dataset.PatientID = patient
            dataset.PatientName = patient
            dataset.StudyInstanceUID = study
            dataset.SeriesInstanceUID = series
            dataset.SeriesNumber = class_index + 1
            dataset.SOPInstanceUID = generate_uid()
            dataset.InstanceNumber = index + 1
            pixels = dataset.pixel_array.copy()
            if name == "lesion":
                pixels[40:88, 40:88] = pixels.max()
            pixels[1, : 1 + index + SLICES * (class_index + 2 * serial)] += 11
            dataset.PixelData = pixels.tobytes()
            path = folder / f"study{serial}" / name / f"slice{index:02d}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            dataset.save_as(path)
            paths.append(path)
        written[name] = (series, paths)
    return written


def _sop_uids(paths: list[Path]) -> list[str]:
    return [str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) for path in paths]


def _sha256(folder: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _series_uid_of(project: Project, image_id: int) -> str:
    path = project.image(image_id).path
    assert path is not None
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _items(report: pydicom.Dataset) -> dict[str, list[pydicom.Dataset]]:
    found: dict[str, list[pydicom.Dataset]] = {}
    for item in report.ContentSequence:
        found.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item)
    return found


def _held_instance(orthanc: Orthanc, sop_uid: str) -> dict[str, object]:
    """Orthanc's record of the one instance with ``sop_uid``."""
    found = orthanc.rest("POST", "/tools/lookup", data=sop_uid.encode()).json()
    (instance,) = [item for item in found if item["Type"] == "Instance"]
    record: dict[str, object] = orthanc.rest("GET", f"/instances/{instance['ID']}").json()
    return record


def _study_uid_held(orthanc: Orthanc, instance: dict[str, object]) -> str:
    series = orthanc.rest("GET", f"/series/{instance['ParentSeries']}").json()
    study = orthanc.rest("GET", f"/studies/{series['ParentStudy']}").json()
    return str(study["MainDicomTags"]["StudyInstanceUID"])


def test_pacs_to_reports_on_the_pacs(
    tmp_path: Path,
    orthanc_factory: Callable[[], Orthanc],
    monkeypatch: pytest.MonkeyPatch,
    app_log: Path,
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    orthanc = orthanc_factory()
    studies = [_write_study(tmp_path / "scans", patient, n) for n, patient in enumerate(PATIENTS)]
    uploaded: UploadedSeries = {}
    class_of_series: dict[str, str] = {}
    study_uids: list[str] = []
    for study in studies:
        for name, (series_uid, paths) in study.items():
            for path in paths:
                orthanc.rest("POST", "/instances", data=path.read_bytes())
            uploaded[series_uid] = _sop_uids(paths)
            class_of_series[series_uid] = name
        first = next(iter(study.values()))[1][0]
        study_uids.append(str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID))
    assert sorted(orthanc.study_uids()) == sorted(study_uids)
    web = PacsServer(orthanc.dicomweb_url, "basic", USER, PASSWORD, timeout_s=10)
    dimse = DimseServer("EPTTEST", "127.0.0.1", orthanc.dicom_port, timeout_s=10)

    # Import: the first two studies by DICOMweb, the third by C-GET.
    folder = tmp_path / "project"
    with Project.create(folder, "single") as project:
        report = pacs_import(project, web, study_uids[:2], thumbnails=False)
        assert len(report.added) == 4 * SLICES
        finished = list(iter_dimse_import(project, dimse, study_uids[2:], thumbnails=False))[-1]
        assert isinstance(finished, ImportFinished)
        assert len(finished.report.added) == 2 * SLICES
        series = project_series(project)
        assert sorted(one.slice_count for one in series) == [SLICES] * 6
        uid_of_key = {one.key: _series_uid_of(project, one.images[0].id) for one in series}
        assert set(uid_of_key.values()) == set(uploaded)

        # Label by series: the first two patients train, the third is the test patient.
        class_ids = {name: project.labels.add_class(name).id for name in CLASSES}
        test_uids = {uid for uid, _ in studies[2].values()}
        for key, uid in uid_of_key.items():
            role = Role.TEST if uid in test_uids else Role.TRAIN
            changed = label_series(project, [key], class_ids[class_of_series[uid]], role)
            assert len(changed) == SLICES
        assert [(c.train, c.test) for c in project.labels.counts_per_class()] == [
            (2 * SLICES, SLICES),
            (2 * SLICES, SLICES),
        ]
        cache = pacs_cache_dir(project)
    copies_before = _sha256(cache)
    assert len(copies_before) == 6 * SLICES

    # Train a tiny EPT, then score every slice with it.
    backbone = tiny_backbone()
    options = TrainingOptions(method="ept", length=4, epochs=1, batch_size=8, device="cpu")
    saved = list(tune_project(folder, options, backbone=backbone))[-1]
    assert isinstance(saved, ProjectTrainingSaved), saved
    predicted = list(predict_with_run(folder, saved.run_id, backbone=backbone))[-1]
    assert isinstance(predicted, ProjectPredicted)
    assert (predicted.predicted, predicted.failed) == (6 * SLICES, 0)

    out = tmp_path / "reports"
    written: dict[str, Path] = {}
    with Project.open(folder) as project:
        by_key = {one.key: one for one in project_series(project)}
        for aggregation in ("mean", "max"):
            predictions = per_series(project, predicted.run_id, aggregation)
            assert len(predictions) == 6
            assert {p.series_key for p in predictions} == set(by_key)
            for prediction in predictions:
                assert prediction.slice_count == SLICES
                assert prediction.image_ids == by_key[prediction.series_key].image_ids
                assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
                assert list(prediction.probabilities) == list(CLASSES)
                assert prediction.decisive_image_id in prediction.image_ids
                assert prediction.predicted_class == max(
                    prediction.probabilities, key=lambda c: prediction.probabilities[c]
                )
        model = describe_model(project, predicted.run_id)
        assert model.method.startswith("Embedded Prompt Tuning (EPT)")
        mean = per_series(project, predicted.run_id, "mean")
        for prediction in mean:
            uid = _series_uid_of(project, prediction.image_ids[0])
            path = out / f"sr-{prediction.image_ids[0]}.dcm"
            written[uid] = write_series_report(project, prediction, path, model_description=model)
        scores = {p.series_key: p for p in mean}

    # Each report reads back, references exactly its uploaded slices, says its class and the notice.
    reports = {uid: pydicom.dcmread(path) for uid, path in written.items()}
    key_of_uid = {uid: key for key, uid in uid_of_key.items()}
    for series_uid, sr in reports.items():
        assert sr.SOPClassUID == SR_CLASS
        assert sr.SeriesDescription == RESEARCH_NOTICE
        items = _items(sr)
        referenced = [
            item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in items["Source image"]
        ]
        assert referenced == uploaded[series_uid]
        assert (
            items["Predicted class"][0].TextValue == scores[key_of_uid[series_uid]].predicted_class
        )
        assert items["Comment"][0].TextValue == RESEARCH_NOTICE
        assert int(items["Slices scored"][0].MeasuredValueSequence[0].NumericValue) == SLICES
        assert sr.StudyInstanceUID in study_uids
        assert sr.SOPInstanceUID not in {u for uids in uploaded.values() for u in uids}

    # Stored back the way each study came: STOW-RS for the first two, C-STORE for the third.
    by_web = [written[uid] for uid in written if uid not in test_uids]
    by_dimse = [written[uid] for uid in written if uid in test_uids]
    assert (len(by_web), len(by_dimse)) == (4, 2)
    held_before = len(orthanc.rest("GET", "/instances").json())
    assert held_before == 6 * SLICES
    assert store_to_pacs(web, by_web) == 4
    assert store_to_pacs(dimse, by_dimse) == 2
    assert len(orthanc.rest("GET", "/instances").json()) == held_before + 6
    assert sorted(orthanc.study_uids()) == sorted(study_uids)  # each report joined its study
    for sr in reports.values():
        held = _held_instance(orthanc, str(sr.SOPInstanceUID))
        tags = orthanc.rest("GET", f"/instances/{held['ID']}/simplified-tags").json()
        assert tags["SOPClassUID"] == SR_CLASS
        assert _study_uid_held(orthanc, held) == sr.StudyInstanceUID

    # The project's PACS copies were read, never written; no report went beside them.
    assert _sha256(cache) == copies_before
    assert not any(cache.rglob("sr-*"))
    assert all(path.parent == out for path in written.values())
    # The app's log (DEBUG) names no patient and no study, series or instance.
    log = app_log.read_text(encoding="utf-8")
    assert "PACS import" in log
    named = [*PATIENTS, *study_uids, *uploaded, *(u for uids in uploaded.values() for u in uids)]
    assert [value for value in named if value in log] == []
