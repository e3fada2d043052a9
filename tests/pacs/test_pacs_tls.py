"""Encrypted PACS connections against a real Orthanc with TLS on: DICOMweb over https and DIMSE
over DICOM TLS, checked with the test's own certificate authority; a certificate this computer does
not trust, or a TLS setting that does not match the port, is told in one line and changes nothing."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from orthanc_support import PASSWORD, USER, Orthanc, start_orthanc, upload_files
from pytestqt.qtbot import QtBot

from ept_studio.cli import main
from ept_studio.gui.pacs_server_dialog import PacsServerDialog
from ept_studio.services.project import (
    DimseServer,
    ImportFinished,
    PacsEntry,
    PacsError,
    PacsServer,
    Project,
    image_count,
    iter_import_from_pacs,
    load_pacs_entries,
    save_pacs_entries,
    search_pacs,
    store_to_pacs,
)

CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
HELD = 2  # CT_small and MR_small: one instance each


@pytest.fixture(scope="module")
def secure_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """An Orthanc that speaks only HTTPS and DICOM TLS, holding a CT and an MR image."""
    server = start_orthanc(tmp_path_factory.mktemp("orthanc-tls"), tls=True)
    try:
        for path in upload_files()[:HELD]:
            server.rest("POST", "/instances", data=path.read_bytes())
        yield server
    finally:
        server.stop()


def _ca(orthanc: Orthanc) -> str:
    assert orthanc.ca_file is not None
    return str(orthanc.ca_file)


def _web(orthanc: Orthanc, verify: bool | str) -> PacsServer:
    return PacsServer(orthanc.dicomweb_url, "basic", USER, PASSWORD, verify, timeout_s=10)


def _dimse(port: int, *, tls: bool, ca_file: str | None = None) -> DimseServer:
    return DimseServer("EPTTEST", "127.0.0.1", port, timeout_s=10, tls=tls, ca_file=ca_file)


def _import(project: Project, server: PacsServer | DimseServer, uids: list[str]) -> int:
    """How many images the import added."""
    events = list(iter_import_from_pacs(project, server, uids))
    finished = events[-1]
    assert isinstance(finished, ImportFinished)
    return len(finished.report.added)


@pytest.mark.parametrize("protocol", ["dicomweb", "dimse"])
def test_search_and_import_over_tls_with_the_ca_file(
    secure_orthanc: Orthanc, project: Project, protocol: str
) -> None:
    ca = _ca(secure_orthanc)
    server = (
        _web(secure_orthanc, ca)
        if protocol == "dicomweb"
        else _dimse(secure_orthanc.dicom_port, tls=True, ca_file=ca)
    )
    assert secure_orthanc.url.startswith("https://")
    found = search_pacs(server)
    assert sorted(study.study_uid for study in found) == secure_orthanc.study_uids()
    assert len(found) == HELD
    assert [s.modalities for s in search_pacs(server, modality="CT")] == [("CT",)]
    assert _import(project, server, [CT_SMALL_STUDY]) == 1
    assert _import(project, server, [study.study_uid for study in found]) == HELD - 1
    assert image_count(project) == HELD


def test_https_without_the_ca_file_is_told_and_changes_nothing(
    secure_orthanc: Orthanc, project: Project
) -> None:
    server = _web(secure_orthanc, True)  # this computer's trusted authorities only
    with pytest.raises(PacsError, match="failed the TLS certificate check"):
        search_pacs(server)
    with pytest.raises(PacsError, match="failed the TLS certificate check"):
        _import(project, server, [CT_SMALL_STUDY])
    assert image_count(project) == 0


def test_dicom_tls_without_the_ca_file_is_told_and_changes_nothing(
    secure_orthanc: Orthanc, project: Project
) -> None:
    server = _dimse(secure_orthanc.dicom_port, tls=True)
    where = f"EPTTEST@127.0.0.1:{secure_orthanc.dicom_port}"
    with pytest.raises(PacsError, match=f"the PACS at {where} .* does not trust its certificate"):
        search_pacs(server)
    with pytest.raises(PacsError, match="does not trust its certificate"):
        _import(project, server, [CT_SMALL_STUDY])
    assert image_count(project) == 0


def test_tls_to_a_port_without_it_is_told_and_changes_nothing(
    orthanc: Orthanc, secure_orthanc: Orthanc, project: Project
) -> None:
    encrypted = _dimse(orthanc.dicom_port, tls=True, ca_file=_ca(secure_orthanc))
    with pytest.raises(PacsError, match="did not accept an encrypted connection \\(TLS\\)"):
        search_pacs(encrypted)
    with pytest.raises(PacsError, match="did not accept an encrypted connection"):
        _import(project, encrypted, [CT_SMALL_STUDY])
    assert image_count(project) == 0


def test_no_tls_to_a_port_that_needs_it_is_told_and_changes_nothing(
    secure_orthanc: Orthanc, project: Project
) -> None:
    plain = _dimse(secure_orthanc.dicom_port, tls=False)
    with pytest.raises(PacsError, match="only takes encrypted connections: turn on TLS"):
        search_pacs(plain)
    with pytest.raises(PacsError, match="only takes encrypted connections"):
        _import(project, plain, [CT_SMALL_STUDY])
    assert image_count(project) == 0


def test_c_store_over_tls_stores_the_file(secure_orthanc: Orthanc) -> None:
    path = upload_files()[HELD]  # one the PACS does not hold yet
    server = _dimse(secure_orthanc.dicom_port, tls=True, ca_file=_ca(secure_orthanc))
    before = secure_orthanc.study_uids()
    assert store_to_pacs(server, [path]) == 1
    new = sorted(set(secure_orthanc.study_uids()) - set(before))
    assert len(new) == 1
    assert secure_orthanc.instance_count(new[0]) == 1
    secure_orthanc.rest("DELETE", f"/studies/{secure_orthanc.study_id(new[0])}")
    assert secure_orthanc.study_uids() == before


def test_a_tls_entry_round_trips_through_the_saved_list(tmp_path: Path) -> None:
    dimse = PacsEntry(
        "Secure archive",
        "dimse",
        ae_title="EPTTEST",
        host="127.0.0.1",
        port=11112,
        tls=True,
        ca_file="/etc/hospital/ca.pem",
    )
    web = PacsEntry("Secure web", url="https://pacs.example.org/dicom-web", ca_file="/ca.pem")
    path = save_pacs_entries([dimse, web], tmp_path / "pacs-servers.json")
    assert load_pacs_entries(path) == [dimse, web]
    saved = json.loads(path.read_text(encoding="utf-8"))["servers"]
    assert [(s["tls"], s["ca_file"]) for s in saved] == [
        (True, "/etc/hospital/ca.pem"),
        (False, "/ca.pem"),
    ]
    server = dimse.server()
    assert isinstance(server, DimseServer)
    assert (server.tls, server.ca_file) == (True, "/etc/hospital/ca.pem")
    web_server = web.server()
    assert isinstance(web_server, PacsServer)
    assert web_server.verify_tls == "/ca.pem"


def test_an_older_entry_without_the_tls_keys_reads_as_plain(tmp_path: Path) -> None:
    older = {"name": "Old", "protocol": "dimse", "ae_title": "PACS", "host": "h", "port": 104}
    path = tmp_path / "pacs-servers.json"
    path.write_text(json.dumps({"version": 1, "servers": [older]}), encoding="utf-8")
    (entry,) = load_pacs_entries(path)
    assert (entry.tls, entry.ca_file) == (False, "")
    server = entry.server()
    assert isinstance(server, DimseServer)
    assert (server.tls, server.ca_file) == (False, None)


def test_a_ca_file_without_tls_is_refused() -> None:
    with pytest.raises(PacsError, match="only used with TLS"):
        PacsEntry("No TLS", "dimse", ae_title="P", host="h", port=104, ca_file="/ca.pem")


@pytest.mark.gui
def test_the_dialog_builds_a_tls_entry(qtbot: QtBot, secure_orthanc: Orthanc) -> None:
    form = PacsServerDialog()
    qtbot.addWidget(form)
    form.name.setText("Secure archive")
    form.kind.setCurrentIndex(form.kind.findData("dimse"))
    form.ae_title.setText("EPTTEST")
    form.host.setText("127.0.0.1")
    form.port.setValue(secure_orthanc.dicom_port)
    assert not form.use_tls.isChecked()
    form.use_tls.setChecked(True)
    form.ca_file.setText(_ca(secure_orthanc))
    form.accept()
    assert form.result() == PacsServerDialog.DialogCode.Accepted
    entry = form.entry()
    assert (entry.protocol, entry.tls, entry.ca_file) == ("dimse", True, _ca(secure_orthanc))
    assert len(search_pacs(entry.server())) == len(secure_orthanc.study_uids())
    again = PacsServerDialog(entry)
    qtbot.addWidget(again)
    assert again.use_tls.isChecked()
    assert again.entry() == entry
    form.kind.setCurrentIndex(form.kind.findData("dicomweb"))
    assert not form.use_tls.isVisibleTo(form)
    form.url.setText(secure_orthanc.dicomweb_url)
    web = form.entry()
    assert (web.protocol, web.tls, web.ca_file) == ("dicomweb", False, _ca(secure_orthanc))
    assert _web_verify(web) == _ca(secure_orthanc)
    assert _web_verify(dataclasses.replace(web, ca_file="")) is True


def _web_verify(entry: PacsEntry) -> bool | str:
    server = entry.server()
    assert isinstance(server, PacsServer)
    return server.verify_tls


def test_the_command_line_searches_and_imports_over_dicom_tls(
    secure_orthanc: Orthanc,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    folder = str(tmp_path / "cli-project")
    assert main(["project", "new", folder]) == 0
    server = [
        "--dimse",
        f"EPTTEST@127.0.0.1:{secure_orthanc.dicom_port}",
        "--tls",
        "--ca-file",
        _ca(secure_orthanc),
    ]
    capsys.readouterr()
    assert main(["project", "search-pacs", folder, *server]) == 0
    captured = capsys.readouterr()
    uids = [line.split("\t")[0] for line in captured.out.splitlines()]
    assert sorted(uids) == secure_orthanc.study_uids()
    assert main(["project", "import-pacs", folder, *server, *uids]) == 0
    assert f"added {HELD}, duplicates 0" in capsys.readouterr().out
    web = ["--url", secure_orthanc.dicomweb_url, "--user", USER, "--password-env", "PW"]
    monkeypatch.setenv("PW", PASSWORD)
    assert main(["project", "search-pacs", folder, *web, "--ca-file", _ca(secure_orthanc)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == HELD
    assert main(["project", "search-pacs", folder, *web]) != 0
    assert "certificate check" in capsys.readouterr().err
    with Project.open(Path(folder)) as project:
        assert image_count(project) == HELD


def test_a_missing_ca_file_is_told(secure_orthanc: Orthanc, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    server = _dimse(secure_orthanc.dicom_port, tls=True, ca_file=missing)
    with pytest.raises(
        PacsError, match=r"certificate authority file .*no-such-ca.pem .* not there"
    ):
        search_pacs(server)
    with pytest.raises(
        PacsError, match=r"certificate authority file .*no-such-ca.pem .* not there"
    ):
        search_pacs(_web(secure_orthanc, missing))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--url", "https://pacs.example.org/dicom-web", "--tls"], "--tls is for --dimse"),
        (["--dimse", "P@h:104", "--ca-file", "ca.pem"], "--ca-file with --dimse needs --tls"),
        (["--dimse", "P@h:104", "--tls", "--no-verify-tls"], "--no-verify-tls is for --url"),
    ],
)
def test_tls_options_that_do_not_fit_are_told(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    folder = str(tmp_path / "cli-project")
    assert main(["project", "new", folder]) == 0
    capsys.readouterr()
    assert main(["project", "search-pacs", folder, *options]) != 0
    assert message in capsys.readouterr().err
