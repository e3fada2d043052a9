"""Import by C-MOVE against the real Orthanc, which connects back to this computer's storage server:
the same images as by C-GET, and a PACS that does not know this computer, a port in use, a PACS
that sends elsewhere or one that breaks off told in one line, the project left as it was."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from orthanc_support import (
    PYDICOM_FILES,
    Orthanc,
    _free_ports,
    cached_copies,
    dimse_import,
    move_destination,
)
from phi_support import MARK

from ept_studio.cli import main
from ept_studio.data.store_records import ImageRecord
from ept_studio.services.project import (
    DimseServer,
    ImportFinished,
    PacsError,
    PacsRetrieved,
    Project,
    image_count,
    search_dimse_studies,
)

CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
RECEIVER = "EPTSTUDIO"


@pytest.fixture
def receiving_port(orthanc: Orthanc) -> Iterator[int]:
    """A free port the session's Orthanc knows as this computer's (AE title EPTSTUDIO)."""
    (port,) = _free_ports(1)
    with move_destination(orthanc, RECEIVER, port):
        yield port


def _server(orthanc: Orthanc, port: int, move_ae_title: str = RECEIVER) -> DimseServer:
    return DimseServer(
        "EPTTEST",
        "127.0.0.1",
        orthanc.dicom_port,
        timeout_s=10,
        retrieve="move",
        move_ae_title=move_ae_title,
        move_port=port,
    )


def _unchanged(project: Project) -> bool:
    return image_count(project) == 0 and cached_copies(project) == []


def _port_is_free(port: int) -> bool:
    """Nothing listens on the port any more (the storage server is stopped)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_study_by_c_move_gives_the_images_c_get_gives(
    orthanc: Orthanc, project: Project, receiving_port: int, tmp_path: Path
) -> None:
    server = _server(orthanc, receiving_port)
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
    assert _port_is_free(receiving_port)  # the storage server is stopped
    by_get = DimseServer("EPTTEST", "127.0.0.1", orthanc.dicom_port, timeout_s=10)
    with Project.create(tmp_path / "by-get", "single") as other:
        assert isinstance(dimse_import(other, by_get, uids)[-1], ImportFinished)
        moved = [_record(image) for image in project.images()]
        got = [_record(image) for image in other.images()]
        assert len(moved) == held
        assert sorted(moved) == sorted(got)
        assert [p.name for p in cached_copies(project)] == [p.name for p in cached_copies(other)]
        for mine, theirs in zip(cached_copies(project), cached_copies(other), strict=True):
            assert np.array_equal(_pixels(mine), _pixels(theirs))
    again = dimse_import(project, server, uids)[-1]
    assert isinstance(again, ImportFinished)
    assert (len(again.report.added), len(again.report.duplicates)) == (0, held)
    assert image_count(project) == held


def _record(image: ImageRecord) -> tuple[object, ...]:
    """What the import recorded of an image (the patient, study and series hashes are keyed per
    project: only that they are there)."""
    hashes = (image.patient_hash, image.study_hash, image.series_hash)
    sizes = (image.rows, image.columns, image.frames, image.size)
    return (image.sha256, image.modality, *sizes, image.photometric, None not in hashes)


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(pydicom.dcmread(path).pixel_array)


def test_cancel_while_moving_keeps_nothing_and_frees_the_port(
    orthanc: Orthanc, project: Project, receiving_port: int
) -> None:
    server = _server(orthanc, receiving_port)
    study = search_dimse_studies(server, patient=MARK)[0]
    asked = []

    def cancel() -> bool:
        asked.append(1)
        return len(asked) > 2

    events = dimse_import(project, server, [study.study_uid], cancel=cancel)
    assert len([e for e in events if isinstance(e, PacsRetrieved)]) == 2
    finished = events[-1]
    assert isinstance(finished, ImportFinished)
    assert finished.report.files_seen == 0
    assert _unchanged(project)
    assert _port_is_free(receiving_port)


def test_an_image_not_asked_for_is_refused(
    orthanc: Orthanc, project: Project, receiving_port: int
) -> None:
    server = _server(orthanc, receiving_port)
    study = search_dimse_studies(server, patient=MARK)[0]
    intruder = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    answers: list[int] = []

    def push_between_instances() -> bool:  # the storage server is listening meanwhile
        if not answers:
            answers.append(_store(intruder, receiving_port))
        return False

    events = dimse_import(project, server, [study.study_uid], cancel=push_between_instances)
    finished = events[-1]
    assert isinstance(finished, ImportFinished)
    assert answers == [0xA900]
    assert len(finished.report.added) == study.instances == 4
    assert len(cached_copies(project)) == 4
    kept = {str(pydicom.dcmread(path).SOPInstanceUID) for path in cached_copies(project)}
    assert str(intruder.SOPInstanceUID) not in kept


def _store(dataset: pydicom.Dataset, port: int) -> int:
    """C-STORE ``dataset`` to this computer's storage server: its answer's status."""
    from pynetdicom import AE

    ae = AE(ae_title="INTRUDER")
    ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port)
    assert assoc.is_established
    try:
        return int(assoc.send_c_store(dataset).Status)
    finally:
        assoc.release()


def test_a_pacs_that_does_not_know_the_destination_is_told(
    orthanc: Orthanc, project: Project, receiving_port: int
) -> None:
    (port,) = _free_ports(1)
    server = _server(orthanc, port, move_ae_title="ELSEWHERE")  # the PACS knows only EPTSTUDIO
    expected = (
        r"^the PACS at EPTTEST@127\.0\.0\.1:\d+ does not know this computer as ELSEWHERE .*; "
        rf"add ELSEWHERE on the PACS with address 127\.0\.0\.1 and port {port} \(status 0x"
    )
    with pytest.raises(PacsError, match=expected):
        dimse_import(project, server, [CT_SMALL_STUDY])
    assert _unchanged(project)
    assert _port_is_free(port)


def test_a_port_in_use_is_told(orthanc: Orthanc, project: Project, receiving_port: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", receiving_port))
        taken.listen(1)
        with pytest.raises(
            PacsError, match=rf"^port {receiving_port} of this computer is already in use"
        ):
            dimse_import(project, _server(orthanc, receiving_port), [CT_SMALL_STUDY])
    assert _unchanged(project)


def test_images_sent_elsewhere_are_told(
    orthanc: Orthanc, project: Project, receiving_port: int
) -> None:
    with move_destination(orthanc, "ITSELF", orthanc.dicom_port):  # it stores them to itself
        server = _server(orthanc, receiving_port, move_ae_title="ITSELF")
        with pytest.raises(PacsError, match=r"says it sent an image, but none reached this"):
            dimse_import(project, server, [CT_SMALL_STUDY])
    assert _unchanged(project)


def test_a_caller_not_allowed_to_move_is_told(orthanc: Orthanc, project: Project) -> None:
    (port,) = _free_ports(1)  # the PACS knows no modality: it lets nobody ask for C-MOVE
    with pytest.raises(PacsError, match=r"broke off .* may not allow Move for .*\(EPTSTUDIO\)"):
        dimse_import(project, _server(orthanc, port), [CT_SMALL_STUDY])
    assert _unchanged(project)
    assert _port_is_free(port)


def test_a_pacs_that_does_not_answer_times_out(project: Project) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        server = DimseServer(
            "SILENT", "127.0.0.1", silent.getsockname()[1], timeout_s=0.5, retrieve="move"
        )
        with pytest.raises(PacsError, match=r"did not answer within 0\.5 s"):
            dimse_import(project, server, [CT_SMALL_STUDY])
    assert _unchanged(project)


def test_a_study_deleted_while_it_is_moved_is_told(own_orthanc: Orthanc, project: Project) -> None:
    (port,) = _free_ports(1)
    server = _server(own_orthanc, port)
    study = search_dimse_studies(server, patient=MARK)[0]
    asked = []

    def delete_after_the_first() -> bool:
        asked.append(1)
        if len(asked) == 2:
            own_orthanc.rest("DELETE", f"/studies/{own_orthanc.study_id(study.study_uid)}")
        return False

    with (
        move_destination(own_orthanc, RECEIVER, port),
        pytest.raises(PacsError, match=r"an image asked for is not on the PACS .*deleted"),
    ):
        dimse_import(project, server, [study.study_uid], cancel=delete_after_the_first)
    assert len(asked) == 2
    assert _unchanged(project)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"move_port": 0}, "port to receive images on, 0, is not between 1 and 65535"),
        ({"move_ae_title": "BACK\\SLASH"}, "receiving AE title .* is not valid"),
        ({"tls": True}, "Move cannot be encrypted"),
    ],
)
def test_wrong_move_settings_are_told(settings: dict[str, object], message: str) -> None:
    with pytest.raises(PacsError, match=message):
        DimseServer("ORTHANC", "127.0.0.1", 4242, retrieve="move", **settings)  # type: ignore[arg-type]


def test_import_by_c_move_from_the_command_line(
    orthanc: Orthanc,
    receiving_port: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    folder = str(tmp_path / "project")
    assert main(["project", "new", folder]) == 0
    server = ["--dimse", f"EPTTEST@127.0.0.1:{orthanc.dicom_port}", "--retrieve", "move"]
    capsys.readouterr()
    unknown = [*server, "--move-ae", "ELSEWHERE", "--move-port", str(receiving_port)]
    assert main(["project", "import-pacs", folder, *unknown, CT_SMALL_STUDY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the PACS at EPTTEST@127.0.0.1:")
    assert "does not know this computer as ELSEWHERE" in err
    assert len(err.splitlines()) == 1
    moved = [*server, "--move-ae", RECEIVER, "--move-port", str(receiving_port)]
    assert main(["project", "import-pacs", folder, *moved, CT_SMALL_STUDY]) == 0
    assert "added 1, duplicates 0" in capsys.readouterr().out
    with Project.open(Path(folder)) as project:
        assert image_count(project) == 1
    url = ["--url", orthanc.dicomweb_url, "--retrieve", "move"]
    assert main(["project", "import-pacs", folder, *url, CT_SMALL_STUDY]) == 2
    assert "--retrieve move is for --dimse" in capsys.readouterr().err
    no_move = ["--dimse", f"EPTTEST@127.0.0.1:{orthanc.dicom_port}", "--move-port", "11113"]
    assert main(["project", "import-pacs", folder, *no_move, CT_SMALL_STUDY]) == 2
    assert "--move-ae and --move-port go with --retrieve move" in capsys.readouterr().err
