"""Search and import by DICOMweb against a real Orthanc (see orthanc_support.py): what is found, what is
imported, and that a PACS that fails (wrong password, down, too slow, a study deleted meanwhile)
says so in one line and leaves the project as it was."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from orthanc_support import PASSWORD, USER, Orthanc
from phi_support import MARK, MARKERS, every_file, leaks

from ept_studio.services.project import (
    ImportFinished,
    PacsError,
    PacsRetrieved,
    PacsServer,
    Project,
    image_count,
    iter_pacs_import,
    pacs_cache_dir,
    pacs_import,
    search_studies,
)

CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def _server(orthanc: Orthanc, password: str = PASSWORD) -> PacsServer:
    return PacsServer(orthanc.dicomweb_url, "basic", USER, password, timeout_s=10)


def _studies_with_modality(orthanc: Orthanc, modality: str) -> set[str]:
    """What Orthanc itself says: the studies holding a series of that modality."""
    series = orthanc.rest("GET", "/series?expand").json()
    studies = {s["ParentStudy"] for s in series if s["MainDicomTags"].get("Modality") == modality}
    return {
        orthanc.rest("GET", f"/studies/{sid}").json()["MainDicomTags"]["StudyInstanceUID"]
        for sid in studies
    }


def _cached(project: Project) -> list[Path]:
    folder = pacs_cache_dir(project)
    return sorted(folder.iterdir()) if folder.exists() else []


def test_search_finds_the_studies_by_modality(orthanc: Orthanc) -> None:
    server = _server(orthanc)
    everything = search_studies(server)
    assert {study.study_uid for study in everything} == set(orthanc.study_uids())
    for modality in ("CT", "MR", "US"):
        found = search_studies(server, modality=modality)
        assert found, modality
        assert {study.study_uid for study in found} == _studies_with_modality(orthanc, modality)
        assert all(modality in study.modalities for study in found)
    ct = next(study for study in everything if study.study_uid == CT_SMALL_STUDY)
    assert (ct.date, ct.instances) == ("20040119", 1)
    marked = search_studies(server, patient=MARK[:7], description="chest")
    assert len(marked) == 2
    assert all(study.patient_name.startswith(MARK) for study in marked)
    assert MARK not in repr(marked)  # the patient stays out of any printed record


def test_importing_two_studies_adds_their_instances_once(
    orthanc: Orthanc, project: Project
) -> None:
    server = _server(orthanc)
    marked = search_studies(server, patient=MARK)
    uids = [CT_SMALL_STUDY, marked[0].study_uid]
    held = sum(orthanc.instance_count(uid) for uid in uids)
    assert held == 5
    events = list(iter_pacs_import(project, server, uids))
    retrieved = [e for e in events if isinstance(e, PacsRetrieved)]
    assert [(e.done, e.total) for e in retrieved] == [(i, held) for i in range(1, held + 1)]
    report = events[-1].report if isinstance(events[-1], ImportFinished) else None
    assert report is not None
    assert len(report.added) == held
    assert not report.skipped
    assert image_count(project) == held
    assert len(_cached(project)) == held
    assert {image.patient_hash for image in project.images()} != {None}
    again = pacs_import(project, server, uids)
    assert (len(again.added), len(again.duplicates)) == (0, held)
    assert image_count(project) == held
    assert sum(orthanc.instance_count(uid) for uid in uids) == held  # the PACS is only read


def test_a_wrong_password_is_told_and_changes_nothing(orthanc: Orthanc, project: Project) -> None:
    server = _server(orthanc, password="not-the-password")
    with pytest.raises(PacsError, match="refused the credentials \\(HTTP 401\\)"):
        search_studies(server)
    with pytest.raises(PacsError, match="refused the credentials"):
        pacs_import(project, server, [CT_SMALL_STUDY])
    assert image_count(project) == 0
    assert _cached(project) == []


def test_a_stopped_pacs_is_told_and_changes_nothing(
    orthanc_factory: Callable[[], Orthanc], project: Project
) -> None:
    stopped = orthanc_factory()
    stopped.stop()
    server = _server(stopped)
    with pytest.raises(
        PacsError, match=r"cannot reach the PACS at http://127\.0\.0\.1:\d+: is the"
    ):
        search_studies(server)
    with pytest.raises(PacsError, match="cannot reach the PACS"):
        pacs_import(project, server, [CT_SMALL_STUDY])
    assert image_count(project) == 0
    assert _cached(project) == []


def test_a_pacs_that_does_not_answer_times_out(project: Project) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        server = PacsServer(f"http://127.0.0.1:{port}/dicom-web", timeout_s=0.5)
        with pytest.raises(PacsError, match=r"did not answer within 0\.5 s"):
            search_studies(server)
        with pytest.raises(PacsError, match=r"did not answer within 0\.5 s"):
            pacs_import(project, server, [CT_SMALL_STUDY])
    assert image_count(project) == 0
    assert _cached(project) == []


def test_a_study_deleted_after_the_search_is_told(own_orthanc: Orthanc, project: Project) -> None:
    server = _server(own_orthanc)
    uids = [study.study_uid for study in search_studies(server, modality="CT")]
    assert CT_SMALL_STUDY in uids
    own_orthanc.rest("DELETE", f"/studies/{own_orthanc.study_id(CT_SMALL_STUDY)}")
    with pytest.raises(PacsError, match=r"not on the PACS .*deleted"):
        pacs_import(project, server, uids)
    assert image_count(project) == 0
    assert _cached(project) == []


def test_a_study_deleted_while_it_is_retrieved_is_told(
    own_orthanc: Orthanc, project: Project
) -> None:
    server = _server(own_orthanc)
    study = search_studies(server, patient=MARK)[0]
    assert study.instances == 4
    asked = []

    def delete_after_the_first() -> bool:  # asked between instances: delete the study there
        asked.append(1)
        if len(asked) == 2:
            own_orthanc.rest("DELETE", f"/studies/{own_orthanc.study_id(study.study_uid)}")
        return False

    events = iter_pacs_import(project, server, [study.study_uid], cancel=delete_after_the_first)
    with pytest.raises(PacsError, match="HTTP 404"):
        for _event in events:
            pass
    assert image_count(project) == 0
    assert _cached(project) == []


def test_cancel_while_retrieving_keeps_nothing(orthanc: Orthanc, project: Project) -> None:
    server = _server(orthanc)
    study = search_studies(server, patient=MARK)[0]
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 2

    report = pacs_import(project, server, [study.study_uid], cancel=cancel)
    assert report.files_seen == 0
    assert image_count(project) == 0
    assert _cached(project) == []


def test_no_patient_detail_reaches_the_log_or_the_database(
    orthanc: Orthanc, project: Project, app_log: Path
) -> None:
    server = _server(orthanc)
    marked = search_studies(server, patient=MARK, patient_id=f"{MARK}-0")
    assert len(marked) == 1
    report = pacs_import(project, server, [study.study_uid for study in marked])
    assert len(report.added) + len(report.duplicates) == 4
    with pytest.raises(PacsError):
        pacs_import(project, _server(orthanc, "wrong"), [marked[0].study_uid])
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "PACS search" in app_log.read_text(encoding="utf-8")
    assert leaks([app_log]) == []
    own = [p for p in every_file(project.folder) if not p.is_relative_to(pacs_cache_dir(project))]
    assert leaks(own) == []
    assert all(marker not in str(p) for p in every_file(project.folder) for marker in MARKERS)


def test_without_orthanc_the_fixture_fails_naming_the_setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import orthanc_support

    monkeypatch.setattr("orthanc_support.shutil.which", lambda name: None)
    monkeypatch.setattr(orthanc_support, "ORTHANC_PLACES", (str(tmp_path / "Orthanc"),))
    with pytest.raises(pytest.fail.Exception, match=r"bash packaging/dev\.sh setup"):
        orthanc_support.start_orthanc(tmp_path)


def test_credentials_stay_out_of_the_server_record() -> None:
    server = PacsServer("https://pacs.example.org/dicom-web", "bearer", secret="t0ken-secret")
    assert "t0ken-secret" not in repr(server)
    assert server.verify_tls is True
    with pytest.raises(PacsError, match="needs a token"):
        PacsServer("https://pacs.example.org/dicom-web", "bearer")
    with pytest.raises(PacsError, match="needs a user name and a password"):
        PacsServer("https://pacs.example.org/dicom-web", "basic", "someone")
    with pytest.raises(PacsError, match="http:// or https://"):
        PacsServer("pacs.example.org/dicom-web")
