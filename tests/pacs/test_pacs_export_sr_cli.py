"""``ept-studio project export-sr``: a run's per-series results as DICOM SR files, from a project of
one 4-slice CT series and two loose PNG images (:mod:`series_runs`, scores chosen), and stored on a
real Orthanc through a saved PACS entry (STOW-RS with ``--password-env``, and C-STORE)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pydicom
import pytest
from orthanc_support import PASSWORD, USER, Orthanc
from series_runs import inference_run, series_project, slice_ids

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.cli import main
from ept_studio.services.project import PacsEntry, Project, save_pacs_entries
from ept_studio.services.project.series_report import RESEARCH_NOTICE

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage


@pytest.fixture
def user_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The test's user data folder (settings, saved PACS list, location indexes)."""
    folder = tmp_path / "user-data"
    monkeypatch.setenv("EPT_STUDIO_DATA", str(folder))
    return folder


class Scored(NamedTuple):
    """A project with an inference run over its series and loose images."""

    folder: Path
    run_id: int
    slices: list[int]
    """The series' image ids in slice order."""
    sop_uids: list[str]
    """The slices' SOP Instance UIDs in slice order."""
    identifiers: list[str]
    """Every value that identifies the patient or the scans: UIDs and the patient's name."""


@pytest.fixture
def scored(tmp_path: Path, user_data: Path) -> Scored:
    project = series_project(tmp_path, locations=user_data / "locations")
    try:
        run_id = inference_run(project, calibrated=True)
        slices = slice_ids(project)
        sources = [pydicom.dcmread(_path(project, i), stop_before_pixels=True) for i in slices]
    finally:
        project.close()
    sop_uids = [str(source.SOPInstanceUID) for source in sources]
    first = sources[0]
    identifiers = [*sop_uids, str(first.SeriesInstanceUID), str(first.StudyInstanceUID)]
    identifiers.append(str(first.PatientName))
    return Scored(tmp_path / "project", run_id, slices, sop_uids, identifiers)


def _path(project: Project, image_id: int) -> Path:
    path = project.image(image_id).path
    assert path is not None
    return path


def _export(folder: Path, run_id: int, out: Path, *extra: str) -> int:
    return main(
        ["project", "export-sr", str(folder), "--run", str(run_id), "--out", str(out), *extra]
    )


def _items(report: pydicom.Dataset) -> dict[str, list[pydicom.Dataset]]:
    found: dict[str, list[pydicom.Dataset]] = {}
    for item in report.ContentSequence:
        found.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item)
    return found


def _scores(report: pydicom.Dataset) -> dict[str, float]:
    items = _items(report)
    return {
        name: round(
            float(items[f"Model score: {name}"][0].MeasuredValueSequence[0].NumericValue), 6
        )
        for name in ("Brain", "Bone")
    }


def test_one_report_per_dicom_series_and_a_note_for_the_rest(
    tmp_path: Path,
    scored: Scored,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, run_id, slices, sop_uids, identifiers = scored
    out = tmp_path / "reports"
    capsys.readouterr()
    assert _export(folder, run_id, out) == 0
    captured = capsys.readouterr()
    name = f"sr-run{run_id}-image{slices[0]}.dcm"
    assert sorted(path.name for path in out.iterdir()) == [name]
    report = pydicom.dcmread(out / name)
    assert report.SOPClassUID == SR_CLASS
    assert report.SeriesDescription == RESEARCH_NOTICE
    items = _items(report)
    assert items["Predicted class"][0].TextValue == "Bone"
    assert _scores(report) == {"Brain": 0.45, "Bone": 0.55}
    assert items["Aggregation over slices"][0].TextValue == "mean"
    assert items["Calibrated"][0].TextValue == "yes"
    assert items["Run"][0].TextValue == str(run_id)
    referenced = [
        i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items["Source image"]
    ]
    assert referenced == sop_uids
    assert f"reports           1 in {out}" in captured.out
    assert "2 series of non-DICOM images have no report" in captured.err
    assert RESEARCH_USE_NOTICE in captured.err
    console = captured.out + captured.err
    for value in identifiers:
        assert value not in console
    assert "slice00" not in console


def test_the_highest_slice_score_picks_the_other_class(tmp_path: Path, scored: Scored) -> None:
    folder, run_id, slices, _, _ = scored
    out = tmp_path / "reports-max"
    assert _export(folder, run_id, out, "--aggregate", "max") == 0
    report = pydicom.dcmread(out / f"sr-run{run_id}-image{slices[0]}.dcm")
    assert _items(report)["Predicted class"][0].TextValue == "Brain"
    assert _scores(report) == {"Brain": round(0.9 / 1.7, 6), "Bone": round(0.8 / 1.7, 6)}
    decisive = _items(report)["Decisive slice"][0].ReferencedSOPSequence[0]
    sources = _items(report)["Source image"]
    assert (
        decisive.ReferencedSOPInstanceUID
        == sources[2].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    )


def _held(orthanc: Orthanc, sop_uid: str) -> int:
    found = orthanc.rest("POST", "/tools/lookup", data=sop_uid.encode()).json()
    return sum(1 for item in found if item["Type"] == "Instance")


def test_stored_on_a_saved_pacs_by_name(
    tmp_path: Path,
    scored: Scored,
    orthanc_factory: Callable[[], Orthanc],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, run_id, slices, _, _ = scored
    orthanc = orthanc_factory()
    web = PacsEntry("Research PACS", url=orthanc.dicomweb_url, auth="basic", user=USER)
    port = orthanc.dicom_port
    dimse = PacsEntry("Research DIMSE", "dimse", ae_title="EPTTEST", host="127.0.0.1", port=port)
    save_pacs_entries([web, dimse])
    monkeypatch.setenv("PACS_PASSWORD", PASSWORD)
    out = tmp_path / "reports"
    capsys.readouterr()
    by_name = ["--store-to", "Research PACS", "--password-env", "PACS_PASSWORD"]
    assert _export(folder, run_id, out, *by_name) == 0
    assert "stored on PACS    1 on Research PACS" in capsys.readouterr().out
    path = out / f"sr-run{run_id}-image{slices[0]}.dcm"
    sop_uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
    assert _held(orthanc, sop_uid) == 1
    assert len(orthanc.rest("GET", "/instances").json()) == 1

    again = tmp_path / "reports-dimse"
    assert _export(folder, run_id, again, "--store-to", "Research DIMSE") == 0
    assert "stored on PACS    1 on Research DIMSE" in capsys.readouterr().out
    second = str(pydicom.dcmread(next(again.iterdir()), stop_before_pixels=True).SOPInstanceUID)
    assert second != sop_uid
    assert _held(orthanc, second) == 1
    assert len(orthanc.rest("GET", "/instances").json()) == 2


def test_an_unknown_pacs_name_or_unset_password_is_told_before_anything_is_written(
    tmp_path: Path,
    scored: Scored,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, run_id, _, _, _ = scored
    out = tmp_path / "reports"
    capsys.readouterr()
    assert _export(folder, run_id, out, "--store-to", "Nowhere") == 2
    err = capsys.readouterr().err
    assert "no saved PACS is named 'Nowhere' (saved: none saved yet)" in err
    save_pacs_entries(
        [PacsEntry("Research PACS", url="http://127.0.0.1:9/dicom-web", auth="basic", user=USER)]
    )
    assert _export(folder, run_id, out, "--store-to", "Nowhere") == 2
    assert "no saved PACS is named 'Nowhere' (saved: Research PACS)" in capsys.readouterr().err
    monkeypatch.delenv("NO_SUCH_PACS_PASSWORD", raising=False)
    args = ["--store-to", "Research PACS", "--password-env", "NO_SUCH_PACS_PASSWORD"]
    assert _export(folder, run_id, out, *args) == 2
    assert "NO_SUCH_PACS_PASSWORD is not set" in capsys.readouterr().err
    assert not out.exists()
