"""A series' prediction written as a DICOM SR from a real imported CT series, read back by pydicom,
and stored on a real Orthanc by STOW-RS and by C-STORE."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pydicom
import pytest
from labelled_projects import write_series
from orthanc_support import PASSWORD, USER, Orthanc
from PIL import Image

from ept_studio.services.project import Project, import_paths
from ept_studio.services.project.pacs import PacsError, PacsServer
from ept_studio.services.project.pacs_dimse import DimseServer
from ept_studio.services.project.pacs_store import store_to_pacs
from ept_studio.services.project.series import project_series
from ept_studio.services.project.series_predictions import SeriesPrediction
from ept_studio.services.project.series_report import (
    RESEARCH_NOTICE,
    ModelDescription,
    SeriesReportError,
    describe_model,
    write_series_report,
)

PATIENT = "H3SRPATIENT4711"
MODEL = ModelDescription("Embedded Prompt Tuning (EPT), 10 prompts in every block", "vit_s", 3)
SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage


def _prediction(project: Project) -> SeriesPrediction:
    (series,) = project_series(project)
    return SeriesPrediction(
        run_id=3,
        series_key=series.key,
        image_ids=series.image_ids,
        predicted_class="nodule",
        probabilities={"normal": 0.25, "nodule": 0.75},
        aggregation="mean",
        decisive_image_id=series.image_ids[2],
        calibrated=True,
    )


@pytest.fixture
def sources(tmp_path: Path, project: Project) -> list[Path]:
    """A real 4-slice CT series of one patient, imported into ``project``."""
    paths = sorted(write_series(tmp_path / "scans", 4, patient=PATIENT))
    import_paths(project, [tmp_path / "scans"], thumbnails=False)
    return paths


def _sha256(paths: list[Path]) -> list[str]:
    return [hashlib.sha256(path.read_bytes()).hexdigest() for path in paths]


def _items(report: pydicom.Dataset) -> dict[str, list[pydicom.Dataset]]:
    found: dict[str, list[pydicom.Dataset]] = {}
    for item in report.ContentSequence:
        found.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item)
    return found


def _write(project: Project, tmp_path: Path) -> Path:
    return write_series_report(
        project, _prediction(project), tmp_path / "out" / "sr.dcm", model_description=MODEL
    )


def test_the_report_reads_back_with_every_source_referenced(
    tmp_path: Path, project: Project, sources: list[Path], app_log: Path
) -> None:
    before = _sha256(sources)
    path = _write(project, tmp_path)
    report = pydicom.dcmread(path)
    originals = {
        ds.InstanceNumber: ds
        for ds in (pydicom.dcmread(p, stop_before_pixels=True) for p in sources)
    }
    in_order = [originals[number] for number in sorted(originals)]
    assert report.SOPClassUID == SR_CLASS
    assert report.SeriesDescription == RESEARCH_NOTICE
    assert report.PatientID == PATIENT
    assert report.StudyInstanceUID == in_order[0].StudyInstanceUID
    assert report.SeriesInstanceUID != in_order[0].SeriesInstanceUID
    assert report.SOPInstanceUID not in {ds.SOPInstanceUID for ds in in_order}
    items = _items(report)
    assert items["Comment"][0].TextValue == RESEARCH_NOTICE
    assert items["Predicted class"][0].TextValue == "nodule"
    scores = {
        name: float(items[f"Model score: {name}"][0].MeasuredValueSequence[0].NumericValue)
        for name in ("normal", "nodule")
    }
    assert scores == {"normal": 0.25, "nodule": 0.75}
    slices = items["Slices scored"][0].MeasuredValueSequence[0].NumericValue
    assert int(slices) == 4
    assert items["Aggregation over slices"][0].TextValue == "mean"
    assert items["Calibrated"][0].TextValue == "yes"
    assert items["Algorithm Name"][0].TextValue == MODEL.method
    assert items["Backbone"][0].TextValue == "vit_s"
    assert items["Run"][0].TextValue == "3"
    referenced = [
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for item in items["Source image"]
    ]
    assert referenced == [ds.SOPInstanceUID for ds in in_order]
    classes = {
        item.ReferencedSOPSequence[0].ReferencedSOPClassUID for item in items["Source image"]
    }
    assert classes == {in_order[0].SOPClassUID}
    decisive = items["Decisive slice"][0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    assert decisive == in_order[2].SOPInstanceUID
    evidence = report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert len(evidence.ReferencedSOPSequence) == 4
    assert _sha256(sources) == before
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p not in {path, *sources}]
    written = [p for p in written if "scans" not in p.parts]
    assert written, "the project folder holds files"
    holding = [p.name for p in written if PATIENT.encode() in p.read_bytes()]
    assert holding == []
    log = app_log.read_text(encoding="utf-8")
    assert in_order[0].StudyInstanceUID not in log
    assert in_order[0].SOPInstanceUID not in log


def test_a_changed_source_is_named_by_its_image_id_and_nothing_is_written(
    tmp_path: Path, project: Project, sources: list[Path]
) -> None:
    prediction = _prediction(project)
    changed = project.image(prediction.image_ids[1])
    assert changed.path is not None
    changed.path.write_bytes(changed.path.read_bytes() + b"\0\0")
    out = tmp_path / "out" / "sr.dcm"
    with pytest.raises(SeriesReportError, match=rf"^image {changed.id}: its file has changed"):
        write_series_report(project, prediction, out, model_description=MODEL)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_missing_source_is_named_by_its_image_id(
    tmp_path: Path, project: Project, sources: list[Path]
) -> None:
    prediction = _prediction(project)
    missing = project.image(prediction.image_ids[0])
    assert missing.path is not None
    missing.path.unlink()
    out = tmp_path / "out" / "sr.dcm"
    with pytest.raises(SeriesReportError, match=rf"^image {missing.id}: its file is missing"):
        write_series_report(project, prediction, out, model_description=MODEL)
    assert not out.exists()


def test_a_series_of_png_images_is_refused(tmp_path: Path, project: Project) -> None:
    (tmp_path / "photos").mkdir()
    Image.new("L", (16, 16), 40).save(tmp_path / "photos" / "fundus.png")
    import_paths(project, [tmp_path / "photos"], thumbnails=False)
    (image,) = project.images()
    prediction = SeriesPrediction(
        3, f"image:{image.id}", (image.id,), "normal", {"normal": 1.0}, "mean", image.id, False
    )
    out = tmp_path / "out" / "sr.dcm"
    with pytest.raises(SeriesReportError, match=rf"image {image.id} is not a DICOM file"):
        write_series_report(project, prediction, out, model_description=MODEL)
    assert not out.exists()


def _sop_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def _held(orthanc: Orthanc, sop_uid: str) -> int:
    found = orthanc.rest("POST", "/tools/lookup", data=sop_uid.encode()).json()
    return sum(1 for item in found if item["Type"] == "Instance")


def test_stored_by_stow_rs_and_found_again(
    tmp_path: Path, project: Project, sources: list[Path], own_orthanc: Orthanc
) -> None:
    path = _write(project, tmp_path)
    before = len(own_orthanc.rest("GET", "/instances").json())
    server = PacsServer(own_orthanc.dicomweb_url, "basic", USER, PASSWORD, timeout_s=10)
    assert store_to_pacs(server, [path]) == 1
    assert len(own_orthanc.rest("GET", "/instances").json()) == before + 1
    assert _held(own_orthanc, _sop_uid(path)) == 1
    report = pydicom.dcmread(path)
    found = own_orthanc.rest(
        "GET",
        f"/dicom-web/studies/{report.StudyInstanceUID}/series/{report.SeriesInstanceUID}/instances",
    ).json()
    assert [item["00080016"]["Value"][0] for item in found] == [SR_CLASS]


def test_stored_by_c_store_and_found_again(
    tmp_path: Path, project: Project, sources: list[Path], own_orthanc: Orthanc
) -> None:
    path = _write(project, tmp_path)
    before = len(own_orthanc.rest("GET", "/instances").json())
    server = DimseServer("EPTTEST", "127.0.0.1", own_orthanc.dicom_port, timeout_s=10)
    assert store_to_pacs(server, [path]) == 1
    assert len(own_orthanc.rest("GET", "/instances").json()) == before + 1
    assert _held(own_orthanc, _sop_uid(path)) == 1


def test_a_wrong_password_is_told_and_nothing_is_stored(
    tmp_path: Path, project: Project, sources: list[Path], own_orthanc: Orthanc
) -> None:
    path = _write(project, tmp_path)
    before = len(own_orthanc.rest("GET", "/instances").json())
    server = PacsServer(own_orthanc.dicomweb_url, "basic", USER, "not-the-password", timeout_s=10)
    with pytest.raises(PacsError, match=r"refused the credentials \(HTTP 401\)"):
        store_to_pacs(server, [path])
    assert len(own_orthanc.rest("GET", "/instances").json()) == before


def _closed_port() -> int:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        return int(closed.getsockname()[1])


def test_a_pacs_that_is_down_is_told(tmp_path: Path, project: Project, sources: list[Path]) -> None:
    path = _write(project, tmp_path)
    port = _closed_port()
    web = PacsServer(f"http://127.0.0.1:{port}/dicom-web", timeout_s=2)
    with pytest.raises(PacsError, match=rf"cannot reach the PACS at http://127\.0\.0\.1:{port}"):
        store_to_pacs(web, [path])
    dimse = DimseServer("NOBODY", "127.0.0.1", port, timeout_s=2)
    with pytest.raises(PacsError, match=rf"cannot reach the PACS at NOBODY@127\.0\.0\.1:{port}"):
        store_to_pacs(dimse, [path])


def _run(project: Project, config: dict[str, object]) -> int:
    return project.record_run(
        config=config, seed=0, versions={}, backbone="vit_small_patch14", backbone_sha256="ab" * 32
    )


def test_an_inference_run_is_described_by_its_training_run(project: Project) -> None:
    trained = _run(project, {"method": {"method": "ept", "length": 10, "blocks": None}})
    inferred = _run(project, {"kind": "inference", "method": "ept", "source_run": trained})
    outside = _run(project, {"kind": "inference", "method": "lora", "source_run": None})
    assert describe_model(project, inferred) == ModelDescription(
        "Embedded Prompt Tuning (EPT), 10 prompts in every block", "vit_small_patch14", inferred
    )
    assert describe_model(project, outside).run_id == outside
    assert describe_model(project, outside).method == "Low-rank adaptation (LoRA)"
