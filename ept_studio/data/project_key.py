"""The project's patient key: the secret behind its patient and study hashes, kept off the project.

Patient and study IDs are stored only as HMACs (:mod:`ept_studio.data.phi`). Whoever holds the
secret can confirm a guessed ID against a stored hash, and record numbers are few enough to try
them all, so the secret never goes into the shareable project folder. It lives in this machine's
private folder for projects (beside the location index, in the user data folder), one file per
project named by the project id (a random UUID, not secret), readable by the user only.

A copy of the project opened elsewhere keeps the hashes already stored, so the images imported so
far stay grouped by patient. Without the key it cannot hash a new ID to match them, and says so;
the key travels only on purpose, as a separate file (export, then import on the other machine).
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from ept_studio.common.errors import ProjectError

KEY_BYTES = 32
KEY_SUFFIX = ".key"
KEY_FORMAT = "ept-studio patient key"
OWNER_ONLY = 0o600
_OLD_SALT = "salt"
"""The meta row where earlier versions kept the secret inside project.db."""


class ProjectKeyError(ProjectError):
    """A patient key file cannot be read, written, or does not fit this project."""


class ProjectKeyMissingError(ProjectKeyError):
    """The project's patient key is not on this machine, so a new ID cannot be hashed."""


@dataclasses.dataclass(frozen=True)
class ProjectKey:
    """The secret of one project; ``repr`` hides it so that it never reaches a log."""

    project_id: str
    secret: str = dataclasses.field(repr=False)
    """Hexadecimal text of :data:`KEY_BYTES` random bytes."""


def new_project_key(project_id: str) -> ProjectKey:
    return ProjectKey(project_id, secrets.token_hex(KEY_BYTES))


def missing_key_message(project_id: str) -> str:
    """What the user reads when a new patient ID cannot be hashed here."""
    return (
        f"this project's patient key (project {project_id[:8]}) is not on this machine, so new "
        "DICOM images cannot be matched to the patients already in the project. On the machine "
        "where the project was created run `ept-studio project export-key PROJECT FILE` (or "
        "File > Export patient key), then `ept-studio project import-key PROJECT FILE` here"
    )


@dataclasses.dataclass(frozen=True)
class KeyStore:
    """The folder of this machine's patient keys, one file per project id."""

    folder: Path

    def path(self, project_id: str) -> Path:
        return self.folder / f"{project_id}{KEY_SUFFIX}"

    def load(self, project_id: str) -> ProjectKey | None:
        """The project's key, or None when this machine does not hold it."""
        path = self.path(project_id)
        if not path.is_file():
            return None
        return read_key_file(path, project_id)

    def save(self, key: ProjectKey) -> None:
        """Keep ``key`` here; a different key already kept for the project is refused."""
        held = self.load(key.project_id)
        if held is not None and held.secret != key.secret:
            raise ProjectKeyError(
                f"this machine already has a different patient key for project "
                f"{key.project_id[:8]}; keep it (the images hashed with it would lose their "
                f"patients) or remove {self.path(key.project_id)} first"
            )
        if held is None:
            write_key_file(self.path(key.project_id), key)


def write_key_file(path: Path, key: ProjectKey) -> None:
    """Write ``key`` to ``path``, owner-only from the first byte, replaced in one step."""
    text = json.dumps(
        {"format": KEY_FORMAT, "version": 1, "project_id": key.project_id, "key": key.secret},
        indent=2,
        sort_keys=True,
    )
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.chmod(partial, OWNER_ONLY)  # the umask may have narrowed it; never widened
        partial.replace(path)
    except OSError as err:
        raise ProjectKeyError(f"{path}: the patient key cannot be written ({err})") from err


def read_key_file(path: Path, project_id: str | None = None) -> ProjectKey:
    """The key in ``path``; with ``project_id``, refused unless it is that project's key."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
        key = ProjectKey(str(found["project_id"]), str(found["key"]))
        if found.get("format") != KEY_FORMAT or len(bytes.fromhex(key.secret)) != KEY_BYTES:
            raise ValueError("not a patient key")
    except OSError as err:
        raise ProjectKeyError(f"{path}: the patient key cannot be read ({err})") from err
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ProjectKeyError(
            f"{path} is not an EPT Studio patient key file; choose the file made by "
            "`ept-studio project export-key`"
        ) from err
    if project_id is not None and key.project_id != project_id:
        raise ProjectKeyError(
            f"{path} belongs to another project ({key.project_id[:8]}, not {project_id[:8]}); "
            "export the key of this project"
        )
    return key


def move_old_salt_out(db: Database, store: KeyStore, project_id: str) -> None:
    """A project that kept its secret in project.db: keep it in ``store``, then erase it there.

    The key is saved first, so a crash in between loses nothing. The row is deleted with
    ``secure_delete`` and the file rebuilt (VACUUM, then a WAL checkpoint) so that no free page
    and no WAL frame still holds the old bytes.
    """
    row = db.execute("SELECT value FROM meta WHERE key = ?", [_OLD_SALT]).fetchone()
    if row is None:
        return
    store.save(ProjectKey(project_id, str(row[0])))
    try:
        db.execute("PRAGMA secure_delete = ON")
        with db.atomic():
            db.execute("DELETE FROM meta WHERE key = ?", [_OLD_SALT])
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.DatabaseError as err:
        raise ProjectKeyError(
            f"the patient key was saved on this machine but could not be erased from the "
            f"project database ({err}); close other programs using the project and open it again"
        ) from err
