"""The saved PACS list and the credential store: secrets in the OS keyring when there is a usable
one, else in memory for the run; never in the saved list, the project or the log."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backends.fail
import keyring.backends.null
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import KeyringError, PasswordDeleteError
from orthanc_support import PASSWORD, USER, Orthanc
from phi_support import every_file

from ept_studio.services.project import (
    CredentialStore,
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
    servers_file,
)

CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


class DictKeyring(KeyringBackend):
    """A keyring backend that keeps its secrets in a dict: a stand-in for the OS's that outlives
    one CredentialStore, as the OS keyring outlives one run of the app."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.secrets.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.secrets[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.secrets.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


class LockedKeyring(DictKeyring):
    """A keyring that refuses every request, as a locked Secret Service does."""

    def get_password(self, service: str, username: str) -> str | None:
        raise KeyringError("locked")

    def set_password(self, service: str, username: str, password: str) -> None:
        raise KeyringError("locked")


@pytest.fixture
def system_keyring() -> Iterator[None]:
    """Restore the process's keyring backend after a test that sets one."""
    before = keyring.get_keyring()
    yield
    keyring.set_keyring(before)


def _web_entry(orthanc: Orthanc) -> PacsEntry:
    return PacsEntry("Test PACS", url=orthanc.dicomweb_url, auth="basic", user=USER, timeout_s=10)


def test_entries_are_saved_and_read_back_without_secrets(tmp_path: Path) -> None:
    entries = [
        PacsEntry("Web", url="https://pacs.example.org/dicom-web", auth="bearer"),
        PacsEntry("Old", "dimse", ae_title="ORTHANC", host="10.0.0.5", port=4242),
    ]
    path = save_pacs_entries(entries, tmp_path / "pacs-servers.json")
    assert load_pacs_entries(path) == entries
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["version"] == 1
    assert {"secret", "password", "token"}.isdisjoint(saved["servers"][0])
    assert entries[0].needs_secret
    assert not entries[1].needs_secret
    assert isinstance(entries[1].server(), DimseServer)
    assert entries[1].where == "ORTHANC@10.0.0.5:4242"
    bearer = entries[0].server("t0ken")
    assert isinstance(bearer, PacsServer)
    assert bearer.secret == "t0ken"


def test_a_damaged_list_or_a_wrong_entry_is_told(tmp_path: Path) -> None:
    path = tmp_path / "pacs-servers.json"
    path.write_text('{"version": 1, "servers": [{"name": "x", "protocol": "smtp"}]}', "utf-8")
    with pytest.raises(
        PacsError, match=r"cannot read the list of PACS servers .*pacs-servers\.json"
    ):
        load_pacs_entries(path)
    path.write_text("not json", encoding="utf-8")
    with pytest.raises(PacsError, match="cannot read the list of PACS servers"):
        load_pacs_entries(path)
    assert load_pacs_entries(tmp_path / "absent.json") == []
    with pytest.raises(PacsError, match="not between 1 and 65535"):
        PacsEntry("Old", "dimse", ae_title="ORTHANC", host="pacs", port=0)
    with pytest.raises(PacsError, match="http:// or https://"):
        PacsEntry("Web", url="pacs.example.org")
    with pytest.raises(PacsError, match="give the PACS a name"):
        PacsEntry(" ", url="https://pacs.example.org")


def test_without_a_usable_keyring_secrets_last_for_the_run(system_keyring: None) -> None:
    entry = PacsEntry("Web", url="https://pacs.example.org/dicom-web", auth="basic", user="me")
    for unusable in (keyring.backends.fail.Keyring(), keyring.backends.null.Keyring()):
        keyring.set_keyring(unusable)
        store = CredentialStore()
        assert not store.persistent
        assert "in memory" in store.kept_where
        assert store.get(entry) is None
        store.put(entry, "s3cret")
        assert store.get(entry) == "s3cret"
        assert CredentialStore().get(entry) is None  # the next run asks again
        store.forget(entry)
        assert store.get(entry) is None


def test_a_usable_keyring_keeps_secrets_between_runs(system_keyring: None) -> None:
    backend = DictKeyring()
    keyring.set_keyring(backend)
    entry = PacsEntry("Web", url="https://pacs.example.org/dicom-web", auth="basic", user="me")
    store = CredentialStore()
    assert store.persistent
    store.put(entry, "s3cret")
    assert list(backend.secrets.values()) == ["s3cret"]
    assert CredentialStore().get(entry) == "s3cret"
    other_user = PacsEntry("Web", url=entry.url, auth="basic", user="someone else")
    assert CredentialStore().get(other_user) is None
    CredentialStore().forget(entry)
    assert backend.secrets == {}


def test_a_keyring_that_fails_falls_back_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    entry = PacsEntry("Web", url="https://pacs.example.org/dicom-web", auth="basic", user="me")
    store = CredentialStore(LockedKeyring())
    assert store.persistent
    with caplog.at_level(logging.DEBUG):
        store.put(entry, "s3cret")
    assert not store.persistent
    assert store.get(entry) == "s3cret"
    assert "KeyringError" in caplog.text
    assert "s3cret" not in caplog.text


def test_a_password_entered_once_reaches_no_file(
    orthanc: Orthanc, project: Project, app_log: Path
) -> None:
    entry = _web_entry(orthanc)
    dimse = PacsEntry(
        "Same, by DIMSE", "dimse", ae_title="EPTTEST", host="127.0.0.1", port=orthanc.dicom_port
    )
    saved = save_pacs_entries([entry, dimse])
    assert saved == servers_file()  # EPT_STUDIO_DATA points into the test's folder
    store = CredentialStore(use_keyring=False)
    store.put(entry, PASSWORD)
    server = load_pacs_entries()[0].server(store.get(load_pacs_entries()[0]))
    found = search_pacs(server, modality="CT")
    assert CT_SMALL_STUDY in {study.study_uid for study in found}
    assert {s.study_uid for s in search_pacs(dimse.server(), modality="CT")} == {
        s.study_uid for s in found
    }
    events = list(iter_import_from_pacs(project, server, [CT_SMALL_STUDY]))
    assert isinstance(events[-1], ImportFinished)
    assert image_count(project) == 1
    for handler in logging.getLogger().handlers:
        handler.flush()
    written = [saved, app_log, *every_file(project.folder)]
    assert [p for p in written if PASSWORD.encode() in p.read_bytes()] == []


def test_a_wrong_password_from_the_store_is_told(orthanc: Orthanc, project: Project) -> None:
    entry = _web_entry(orthanc)
    store = CredentialStore(use_keyring=False)
    store.put(entry, "not-the-password")
    with pytest.raises(PacsError, match=r"refused the credentials \(HTTP 401\)"):
        search_pacs(entry.server(store.get(entry)))
    with pytest.raises(PacsError, match="refused the credentials"):
        list(iter_import_from_pacs(project, entry.server(store.get(entry)), [CT_SMALL_STUDY]))
    assert image_count(project) == 0
