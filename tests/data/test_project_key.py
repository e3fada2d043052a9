"""The patient key (the HMAC secret behind the patient and study hashes) stays on this machine.

The project folder is meant to be shared; whoever holds it must not be able to confirm a guessed
PatientID. These tests search every byte of the folder for the key, open the folder as another
machine would (another private folder), and migrate a project that kept its salt in project.db.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import stat
import sys
from pathlib import Path

import pytest

from ept_studio.data import store_schema
from ept_studio.data.phi import salted_hash
from ept_studio.data.project_key import KeyStore, ProjectKeyError, ProjectKeyMissingError
from ept_studio.data.store import DB_NAME, NewImage, Project

GUESSED_ID = "12345678"
"""An 8-digit medical record number: a space small enough to try every value."""


def _add_patient_image(project: Project, patient_id: str, n: int = 0) -> int:
    return project.add_image(
        NewImage(
            sha256=f"{n:064x}",
            path=Path(f"/data/scan{n}.dcm"),
            size=100,
            mtime_ns=n,
            kind="dicom",
            patient_hash=project.hash_identifier(patient_id),
        )
    )


def _bytes_under(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def _holds_secret(data: bytes, secret: str) -> bool:
    return secret.encode() in data or bytes.fromhex(secret) in data


def test_a_new_project_folder_holds_no_key_material(tmp_path: Path) -> None:
    folder, here = tmp_path / "project", tmp_path / "machine-a"
    with Project.create(folder, locations_dir=here) as project:
        _add_patient_image(project, GUESSED_ID)
        key = KeyStore(here).load(project.project_id)
        assert key is not None
        assert len(bytes.fromhex(key.secret)) == 32
        assert key.secret not in repr(key)  # never in a log line
        # While open the WAL holds the latest pages: it is searched too.
        assert (folder / "project.db-wal").is_file()
        assert not _holds_secret(_bytes_under(folder), key.secret)
    assert not _holds_secret(_bytes_under(folder), key.secret)
    assert _holds_secret(KeyStore(here).path(key.project_id).read_bytes(), key.secret)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")
def test_the_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    with Project.create(tmp_path / "project", locations_dir=tmp_path / "here") as project:
        path = KeyStore(tmp_path / "here").path(project.project_id)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_without_the_key_a_guessed_patient_id_cannot_be_confirmed(tmp_path: Path) -> None:
    folder = tmp_path / "project"
    with Project.create(folder, locations_dir=tmp_path / "machine-a") as project:
        image_id = _add_patient_image(project, GUESSED_ID)
        stored = project.image(image_id).patient_hash
    assert stored is not None
    with Project.open(folder, locations_dir=tmp_path / "machine-b") as elsewhere:
        assert not elsewhere.has_key
        assert elsewhere.image(image_id).patient_hash == stored  # old grouping kept
        with pytest.raises(ProjectKeyMissingError, match=r"patient key .* not on this machine"):
            elsewhere.hash_identifier(GUESSED_ID)
        assert elsewhere.hash_identifier("  ") is None  # a blank ID needs no key
    # Emptying this machine's key store leaves the same folder just as mute.
    KeyStore(tmp_path / "machine-a").path(elsewhere.project_id).unlink()
    with (
        Project.open(folder, locations_dir=tmp_path / "machine-a") as emptied,
        pytest.raises(ProjectKeyMissingError),
    ):
        emptied.hash_identifier(GUESSED_ID)


def test_the_same_patient_hashes_the_same_when_reopened_on_this_machine(tmp_path: Path) -> None:
    folder, here = tmp_path / "project", tmp_path / "here"
    with Project.create(folder, locations_dir=here) as project:
        first = project.hash_identifier(GUESSED_ID)
    with Project.open(folder, locations_dir=here) as reopened:
        assert reopened.has_key
        assert reopened.hash_identifier(GUESSED_ID) == first
        assert reopened.hash_identifier("12345679") != first
    assert first is not None
    assert len(first) == 32


def _old_format_project(folder: Path, salt: str) -> str:
    """A project as versions that kept the salt in project.db wrote it; returns the patient hash."""
    folder.mkdir()
    db = store_schema.connect(folder / DB_NAME)
    store_schema.migrate(db, folder / DB_NAME, store_schema.MIGRATIONS[:3])
    meta = {
        "project_id": "1" * 32,
        "label_mode": "single",
        "salt": salt,
        "created": "2024-01-01T00:00:00+00:00",
        "app_version": "0.0.1",
        "history_cursor": "0",
    }
    for key, value in meta.items():
        db.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
    patient_hash = salted_hash(GUESSED_ID, salt)
    db.execute(
        "INSERT INTO images (sha256, kind, size, mtime_ns, patient_hash, added) "
        "VALUES (?, 'dicom', 1, 1, ?, 'x')",
        ["f" * 64, patient_hash],
    )
    db.conn.commit()
    db.close()
    assert patient_hash is not None
    return patient_hash


def test_an_old_project_salt_moves_out_of_project_db(tmp_path: Path) -> None:
    folder, here = tmp_path / "old", tmp_path / "here"
    salt = secrets.token_hex(32)
    stored = _old_format_project(folder, salt)
    assert _holds_secret(_bytes_under(folder), salt)
    with Project.open(folder, locations_dir=here) as project:
        assert project.hash_identifier(GUESSED_ID) == stored
        assert project.images()[0].patient_hash == stored
        meta = dict(project.db.execute("SELECT key, value FROM meta").fetchall())
        assert "salt" not in meta
        assert not _holds_secret(_bytes_under(folder), salt)
    assert not _holds_secret(_bytes_under(folder), salt)
    key = KeyStore(here).load("1" * 32)
    assert key is not None
    assert key.secret == salt
    with Project.open(folder, locations_dir=here) as again:
        assert again.hash_identifier(GUESSED_ID) == stored


def test_a_key_file_of_another_project_is_refused(tmp_path: Path) -> None:
    here = tmp_path / "here"
    with Project.create(tmp_path / "a", locations_dir=here) as first:
        first_key = first.key
    with Project.create(tmp_path / "b", locations_dir=here) as second:
        assert first_key is not None
        assert second.key is not None
        assert first_key.secret != second.key.secret
        with pytest.raises(ProjectKeyError, match="belongs to another project"):
            second.adopt_key(first_key)
        with pytest.raises(ProjectKeyError, match="already has a different patient key"):
            second.adopt_key(dataclasses.replace(second.key, secret=secrets.token_hex(32)))
