"""The Results tab's "Save as DICOM reports…" and "Send to PACS…" in the real window (offscreen), on
a real project of one 4-slice CT series and two PNG images (``series_runs``): the reports pydicom
reads back, the note's counts, a run of PNG images only, a changed source, and a real Orthanc."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pytestqt.qtbot import QtBot
from recorded_runs import CLASSES, record_training_run
from series_runs import LOOSE_SCORES, inference_run, loose_ids, series_project, slice_ids

from ept_studio.data.store import PredictionRow
from ept_studio.evidence.orthanc import PASSWORD, USER, Orthanc, start_orthanc
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.series_results import (
    NO_DICOM_TOOLTIP,
    NO_REPORTS_TOOLTIP,
    SAVE_REPORTS_TOOLTIP,
    SeriesResultsView,
)
from ept_studio.services.project import (
    CredentialStore,
    PacsEntry,
    Project,
    open_project,
    save_pacs_entries,
)

pytestmark = pytest.mark.gui

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR Storage


def _locations(tmp_path: Path) -> Path:
    return tmp_path / "app-data" / "locations"  # the app's own (EPT_STUDIO_DATA)


def _open(qtbot: QtBot, window: MainWindow, folder: Path, run_id: int) -> SeriesResultsView:
    assert window.file_menu.open_project_at(folder)
    window.show_results()
    qtbot.waitUntil(lambda: window.results.view.results is not None, timeout=10_000)
    assert window.results.shown_run == run_id
    return window.results.series


def _series_window(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> SeriesResultsView:
    project = series_project(tmp_path, _locations(tmp_path))
    run_id = inference_run(project, calibrated=True)
    folder = project.folder
    project.close()
    return _open(qtbot, window, folder, run_id)


def _save(qtbot: QtBot, view: SeriesResultsView, out: Path) -> None:
    view.choose_folder = lambda: out
    with qtbot.waitSignal(view.tasks.finished, timeout=30_000):
        view.save_reports.click()


def _items(report: pydicom.Dataset) -> dict[str, list[pydicom.Dataset]]:
    found: dict[str, list[pydicom.Dataset]] = {}
    for item in report.ContentSequence:
        found.setdefault(item.ConceptNameCodeSequence[0].CodeMeaning, []).append(item)
    return found


def _referenced(items: Sequence[pydicom.Dataset]) -> list[str]:
    return [str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for item in items]


def _slice_uids(tmp_path: Path) -> list[str]:
    with open_project(tmp_path / "project", locations_dir=_locations(tmp_path)) as project:
        paths = [project.image(image_id).path for image_id in slice_ids(project)]
    return [
        str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        for path in paths
        if path is not None
    ]


def test_saving_writes_one_report_per_dicom_series(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    view = _series_window(qtbot, window, tmp_path)
    assert view.save_reports.isEnabled()
    assert view.save_reports.toolTip() == SAVE_REPORTS_TOOLTIP
    assert "research use only" in SAVE_REPORTS_TOOLTIP
    assert not view.send_reports.isEnabled()
    assert view.send_reports.toolTip() == NO_REPORTS_TOOLTIP
    with open_project(tmp_path / "project", locations_dir=_locations(tmp_path)) as project:
        first, _, third, _ = slice_ids(project)
    run_id = window.results.shown_run
    out = tmp_path / "reports"

    _save(qtbot, view, out)
    name = f"sr-run{run_id}-image{first}.dcm"
    assert sorted(path.name for path in out.iterdir()) == [name]
    assert view.note.text() == (
        f"Saved 1 DICOM report in {out}. 2 series have no report (not DICOM images). "
        "For research use only."
    )
    report = pydicom.dcmread(out / name)
    assert report.SOPClassUID == SR_CLASS
    items = _items(report)
    assert items["Predicted class"][0].TextValue == "Bone"
    assert items["Aggregation over slices"][0].TextValue == "mean"
    scores = [
        float(item.MeasuredValueSequence[0].NumericValue) for item in items["Model score: Bone"]
    ]
    assert scores == [pytest.approx(0.55)]
    uids = _slice_uids(tmp_path)
    assert _referenced(items["Source image"]) == uids
    assert _referenced(items["Decisive slice"]) == [uids[0]]
    assert view.send_reports.isEnabled()
    assert view.reports == (out / name,)

    view.set_aggregation("max")  # the shown aggregation is the one written
    _save(qtbot, view, out)
    items = _items(pydicom.dcmread(out / name))
    assert items["Predicted class"][0].TextValue == "Brain"
    assert items["Aggregation over slices"][0].TextValue == "max"
    assert _referenced(items["Decisive slice"]) == [uids[2]]
    key_slice = view.table.item(0, 2)
    assert key_slice is not None
    assert key_slice.text() == f"image {third}"
    assert sorted(path.name for path in out.iterdir()) == [name]


def test_a_changed_source_stops_the_save_and_leaves_nothing(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    view = _series_window(qtbot, window, tmp_path)
    with open_project(tmp_path / "project", locations_dir=_locations(tmp_path)) as project:
        second = project.image(slice_ids(project)[1])
    assert second.path is not None
    with second.path.open("ab") as source:
        source.write(b"\0\0")
    out = tmp_path / "reports"
    view.choose_folder = lambda: out
    with qtbot.waitSignal(view.tasks.failed, timeout=30_000):
        view.save_reports.click()
    assert list(out.iterdir()) == []  # nor the hidden folder the reports are first written in
    assert view.note.text() == (
        f"The DICOM reports were not saved (none were written): image {second.id}: its file has "
        "changed since it was imported; the report would not describe the images the model scored"
    )
    assert not view.send_reports.isEnabled()
    assert view.save_reports.isEnabled()


def _png_only_run(project: Project) -> int:
    """An inference run that scored only the two PNG images."""
    model = record_training_run(project, {}, {}, train=[], calibration=[], test=[])
    run_id = project.record_run(
        config={"kind": "inference", "class_names": list(CLASSES), "source_run": model},
        seed=0,
        versions={},
        backbone="tiny",
        backbone_sha256="ab" * 32,
    )
    heads = np.zeros((2, 16), dtype=np.float32)
    rows = [
        PredictionRow(
            image_id, CLASSES[int(np.argmax(s))], dict(zip(CLASSES, s, strict=True)), heads
        )
        for image_id, s in zip(loose_ids(project), LOOSE_SCORES, strict=True)
    ]
    project.record_predictions(run_id, rows)
    project.finish_run(run_id, "finished")
    return run_id


def test_a_run_of_png_images_only_has_the_button_off_saying_why(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    project = series_project(tmp_path, _locations(tmp_path))
    run_id = _png_only_run(project)
    folder = project.folder
    project.close()
    view = _open(qtbot, window, folder, run_id)
    assert view.table.rowCount() == 2
    assert view.reportable == 0
    assert not view.save_reports.isEnabled()
    assert view.save_reports.toolTip() == NO_DICOM_TOOLTIP
    assert not view.save_reports_to(tmp_path / "reports")
    assert not (tmp_path / "reports").exists()


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    server = start_orthanc(tmp_path / "orthanc")
    yield server
    server.stop()


def _held(orthanc: Orthanc, report: Path) -> int:
    sop_uid = str(pydicom.dcmread(report, stop_before_pixels=True).SOPInstanceUID)
    found = orthanc.rest("POST", "/tools/lookup", data=sop_uid.encode()).json()
    return sum(1 for item in found if item["Type"] == "Instance")


def test_send_to_pacs_asks_the_password_once_and_stores_the_reports(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, orthanc: Orthanc
) -> None:
    entry = PacsEntry("Test archive", "dicomweb", url=orthanc.dicomweb_url, auth="basic", user=USER)
    save_pacs_entries([entry])
    view = _series_window(qtbot, window, tmp_path)
    view.credentials = CredentialStore(use_keyring=False)  # this machine's keyring stays out
    _save(qtbot, view, tmp_path / "reports")
    (report,) = view.reports
    offered: list[list[str]] = []
    asked: list[str] = []
    answers = iter(["not the password", PASSWORD])

    def choose_server(entries: Sequence[PacsEntry]) -> PacsEntry:
        offered.append([e.name for e in entries])
        return entries[0]

    def ask_secret(chosen: PacsEntry) -> str:
        asked.append(chosen.name)
        return next(answers)

    view.choose_server, view.ask_secret = choose_server, ask_secret

    with qtbot.waitSignal(view.tasks.failed, timeout=30_000):
        view.send_reports.click()
    assert "The reports were not stored on the PACS:" in view.note.text()
    assert "refused the credentials" in view.note.text()
    assert view.credentials.get(entry) is None  # a refused password is asked for again
    assert _held(orthanc, report) == 0

    with qtbot.waitSignal(view.tasks.finished, timeout=30_000):
        view.send_reports.click()
    assert offered == [["Test archive"], ["Test archive"]]
    assert asked == ["Test archive", "Test archive"]
    assert view.note.text() == "1 DICOM report stored on Test archive. For research use only."
    assert _held(orthanc, report) == 1
    assert view.credentials.get(entry) == PASSWORD
