"""Search and import by DIMSE (C-FIND, C-GET) against the same real Orthanc as the DICOMweb tests:
what is found, what is imported, and that a PACS that fails (down, silent, a study deleted before
or while it is retrieved) says so in one line and leaves the project as it was."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
from orthanc_support import PASSWORD, USER, Orthanc, cached_copies, dimse_import
from phi_support import MARK, MARKERS, every_file, leaks

from ept_studio.services.project import (
    DimseServer,
    ImportFinished,
    PacsError,
    PacsRetrieved,
    Project,
    image_count,
    pacs_cache_dir,
    search_dimse_studies,
    search_studies,
)
from ept_studio.services.project import PacsServer as WebServer

CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


def _server(orthanc: Orthanc, timeout_s: float = 10) -> DimseServer:
    return DimseServer("EPTTEST", "127.0.0.1", orthanc.dicom_port, timeout_s=timeout_s)


def test_search_finds_what_dicomweb_finds(orthanc: Orthanc) -> None:
    server = _server(orthanc)
    web = WebServer(orthanc.dicomweb_url, "basic", USER, PASSWORD, timeout_s=10)
    everything = search_dimse_studies(server)
    assert {s.study_uid for s in everything} == set(orthanc.study_uids())
    assert everything == sorted(everything, key=lambda s: (s.date, s.study_uid))
    for modality in ("CT", "MR", "US"):
        found = search_dimse_studies(server, modality=modality)
        assert found, modality
        assert [s.study_uid for s in found] == [
            s.study_uid for s in search_studies(web, modality=modality)
        ]
    ct = next(study for study in everything if study.study_uid == CT_SMALL_STUDY)
    assert (ct.date, ct.modalities, ct.instances) == ("20040119", ("CT",), 1)
    marked = search_dimse_studies(server, patient=MARK[:7].lower(), description="chest")
    assert len(marked) == 2
    assert all(study.patient_name.startswith(MARK) for study in marked)
    assert [s.instances for s in marked] == [4, 4]
    assert MARK not in repr(marked)
    assert search_dimse_studies(server, date_range="20040101-20041231", modality="CT") == [ct]


def test_importing_a_study_by_c_get_adds_its_instances_once(
    orthanc: Orthanc, project: Project
) -> None:
    server = _server(orthanc)
    marked = search_dimse_studies(server, patient=MARK)
    uids = [CT_SMALL_STUDY, marked[0].study_uid]
    held = sum(orthanc.instance_count(uid) for uid in uids)
    assert held == 5
    events = dimse_import(project, server, uids)
    retrieved = [e for e in events if isinstance(e, PacsRetrieved)]
    assert [(e.done, e.total) for e in retrieved] == [(i, held) for i in range(1, held + 1)]
    finished = events[-1]
    assert isinstance(finished, ImportFinished)
    assert (len(finished.report.added), finished.report.skipped) == (held, [])
    assert image_count(project) == held
    assert len(cached_copies(project)) == held
    assert {image.patient_hash for image in project.images()} != {None}
    again = dimse_import(project, server, uids)[-1]
    assert isinstance(again, ImportFinished)
    assert (len(again.report.added), len(again.report.duplicates)) == (0, held)
    assert image_count(project) == held
    assert sum(orthanc.instance_count(uid) for uid in uids) == held  # the PACS is only read


def test_a_pacs_that_is_down_is_told_and_changes_nothing(project: Project) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    server = DimseServer("NOBODY", "127.0.0.1", port, timeout_s=2)
    expected = rf"cannot reach the PACS at NOBODY@127\.0\.0\.1:{port}: is the server running"
    with pytest.raises(PacsError, match=expected):
        search_dimse_studies(server)
    with pytest.raises(PacsError, match=expected):
        dimse_import(project, server, [CT_SMALL_STUDY])
    assert image_count(project) == 0
    assert cached_copies(project) == []


def test_a_pacs_that_does_not_answer_times_out(project: Project) -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        server = DimseServer("SILENT", "127.0.0.1", port, timeout_s=0.5)
        with pytest.raises(
            PacsError, match=r"SILENT@127\.0\.0\.1:\d+ did not answer within 0\.5 s"
        ):
            search_dimse_studies(server)
        with pytest.raises(PacsError, match=r"did not answer within 0\.5 s"):
            dimse_import(project, server, [CT_SMALL_STUDY])
    assert image_count(project) == 0
    assert cached_copies(project) == []


def test_a_study_deleted_after_the_search_is_told(own_orthanc: Orthanc, project: Project) -> None:
    server = _server(own_orthanc)
    uids = [study.study_uid for study in search_dimse_studies(server)]
    assert CT_SMALL_STUDY in uids
    own_orthanc.rest("DELETE", f"/studies/{own_orthanc.study_id(CT_SMALL_STUDY)}")
    with pytest.raises(PacsError, match=r"a study asked for is not on the PACS .*deleted"):
        dimse_import(project, server, uids)
    assert image_count(project) == 0
    assert cached_copies(project) == []


def test_a_study_deleted_while_it_is_retrieved_is_told(
    own_orthanc: Orthanc, project: Project
) -> None:
    server = _server(own_orthanc)
    study = search_dimse_studies(server, patient=MARK)[0]
    assert study.instances == 4
    asked = []

    def delete_after_the_first() -> bool:  # asked between instances: delete the study there
        asked.append(1)
        if len(asked) == 2:
            own_orthanc.rest("DELETE", f"/studies/{own_orthanc.study_id(study.study_uid)}")
        return False

    with pytest.raises(PacsError, match=r"an image asked for is not on the PACS .*deleted"):
        dimse_import(project, server, [study.study_uid], cancel=delete_after_the_first)
    assert len(asked) == 2
    assert image_count(project) == 0
    assert cached_copies(project) == []


def test_cancel_while_retrieving_keeps_nothing(orthanc: Orthanc, project: Project) -> None:
    study = search_dimse_studies(_server(orthanc), patient=MARK)[0]
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 2

    events = dimse_import(project, _server(orthanc), [study.study_uid], cancel=cancel)
    assert len([e for e in events if isinstance(e, PacsRetrieved)]) == 2
    finished = events[-1]
    assert isinstance(finished, ImportFinished)
    assert finished.report.files_seen == 0
    assert image_count(project) == 0
    assert cached_copies(project) == []


def test_no_patient_detail_reaches_the_log_or_the_database(
    orthanc: Orthanc, project: Project, app_log: Path
) -> None:
    server = _server(orthanc)
    marked = search_dimse_studies(server, patient=MARK, patient_id=f"{MARK}-0")
    assert len(marked) == 1
    events = dimse_import(project, server, [marked[0].study_uid])
    assert len([e for e in events if isinstance(e, PacsRetrieved)]) == 4
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "PACS search (DIMSE): 1 studies" in app_log.read_text(encoding="utf-8")
    assert leaks([app_log]) == []
    own = [p for p in every_file(project.folder) if not p.is_relative_to(pacs_cache_dir(project))]
    assert leaks(own) == []
    assert all(marker not in str(p) for p in every_file(project.folder) for marker in MARKERS)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("ORTHANC@pacs.example.org:4242", ("ORTHANC", "pacs.example.org", 4242)),
        ("PACS 1@[::1]:104", ("PACS 1", "::1", 104)),
    ],
)
def test_an_address_is_read_as_ae_title_host_and_port(
    address: str, expected: tuple[str, str, int]
) -> None:
    server = DimseServer.parse(address, "MYWORKSTATION")
    assert (server.ae_title, server.host, server.port) == expected
    assert server.calling_ae_title == "MYWORKSTATION"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("pacs.example.org:4242", "not a DIMSE address"),
        ("ORTHANC@pacs.example.org", "not a DIMSE address"),
        ("A_TITLE_LONGER_THAN_16@host:104", "AE title .* is not valid"),
        ("BACK\\SLASH@host:104", "AE title .* is not valid"),
        ("ORTHANC@host:70000", "not between 1 and 65535"),
    ],
)
def test_a_wrong_address_is_told(address: str, message: str) -> None:
    with pytest.raises(PacsError, match=message):
        DimseServer.parse(address)


def test_the_calling_ae_title_is_checked() -> None:
    with pytest.raises(PacsError, match="calling AE title '' is not valid"):
        DimseServer("ORTHANC", "127.0.0.1", 4242, calling_ae_title="")
