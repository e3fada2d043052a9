"""The project database's schema, its ordered migrations, and how a connection is opened.

The schema version is SQLite's ``PRAGMA user_version``: version N means the first N entries of
:data:`MIGRATIONS` have run. Each migration runs in one transaction together with the version bump,
so a crash mid-migration leaves the previous version intact. A database newer than this code knows
is refused (opening it could misread columns that a later version added).

Durability: WAL with ``synchronous=FULL`` and ``foreign_keys=ON``; a write that has returned is on
disk before the call returns, so it survives a killed process and a power cut.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sqlite_utils import Database

from ept_studio.common.errors import ProjectError

Migration = Callable[[Database], None]

BUSY_TIMEOUT_MS = 10_000
"""How long a write waits for another process's write on the same project (GUI + CLI at once)."""


@contextlib.contextmanager
def transaction(db: Database, conflict: str) -> Iterator[None]:
    """One write transaction; SQLite's errors become a :class:`ProjectError` saying what failed.

    ``conflict`` says what an integrity error means for this write ("a class named X already
    exists"); either way the message adds that nothing was changed.
    """
    try:
        with db.atomic():
            yield
    except sqlite3.IntegrityError as err:
        raise ProjectError(f"{conflict}; nothing was changed") from err
    except sqlite3.DatabaseError as err:
        raise ProjectError(
            f"the project database could not be written ({err}); nothing was changed"
        ) from err


_V1_TABLES = (
    """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        sha256 TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL CHECK (kind IN ('dicom', 'image')),
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        modality TEXT,
        rows INTEGER,
        columns INTEGER,
        frames INTEGER NOT NULL DEFAULT 1,
        photometric TEXT,
        rendering TEXT NOT NULL DEFAULT '{}',
        patient_hash TEXT,
        study_hash TEXT,
        burned_in_annotation INTEGER,
        status TEXT NOT NULL DEFAULT 'ok'
            CHECK (status IN ('ok', 'missing', 'changed', 'unreadable')),
        added TEXT NOT NULL
    )""",
    """CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        colour TEXT NOT NULL,
        position INTEGER NOT NULL,
        shortcut TEXT UNIQUE
    )""",
    """CREATE TABLE labels (
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        class_id INTEGER NOT NULL REFERENCES classes(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('train', 'test')),
        time TEXT NOT NULL,
        PRIMARY KEY (image_id, class_id)
    )""",
    """CREATE TABLE label_steps (
        id INTEGER PRIMARY KEY,
        parent INTEGER NOT NULL,
        action TEXT NOT NULL,
        time TEXT NOT NULL
    )""",
    """CREATE TABLE label_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        action TEXT NOT NULL,
        step INTEGER,
        image_id INTEGER NOT NULL,
        class_id INTEGER,
        role TEXT,
        previous TEXT NOT NULL,
        next TEXT NOT NULL
    )""",
    """CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        created TEXT NOT NULL,
        finished TEXT,
        status TEXT NOT NULL
            CHECK (status IN ('running', 'finished', 'failed', 'cancelled')),
        config TEXT NOT NULL,
        seed INTEGER NOT NULL,
        versions TEXT NOT NULL,
        device TEXT,
        backbone TEXT NOT NULL,
        backbone_sha256 TEXT NOT NULL,
        metrics TEXT NOT NULL DEFAULT '{}',
        artifacts TEXT NOT NULL DEFAULT '{}'
    )""",
    """CREATE TABLE exports (
        id INTEGER PRIMARY KEY,
        run_id INTEGER REFERENCES runs(id) ON DELETE SET NULL,
        kind TEXT NOT NULL,
        file_name TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created TEXT NOT NULL
    )""",
)

# The history is an audit trail: rows are appended, never changed.
_V1_TRIGGERS = (
    """CREATE TRIGGER label_history_no_update BEFORE UPDATE ON label_history
       BEGIN SELECT RAISE(ABORT, 'the label history is append-only'); END""",
    """CREATE TRIGGER label_history_no_delete BEFORE DELETE ON label_history
       BEGIN SELECT RAISE(ABORT, 'the label history is append-only'); END""",
)

_V2_INDEXES = (
    "CREATE INDEX labels_class ON labels(class_id)",
    "CREATE INDEX images_status ON images(status)",
    "CREATE INDEX images_patient ON images(patient_hash)",
    "CREATE INDEX label_history_step ON label_history(step)",
    "CREATE INDEX label_steps_parent ON label_steps(parent)",
    "CREATE INDEX exports_run ON exports(run_id)",
)


def _v1_tables(db: Database) -> None:
    for statement in (*_V1_TABLES, *_V1_TRIGGERS):
        db.execute(statement)


def _v2_indexes(db: Database) -> None:
    """The lookups a large project makes on every click and every re-import."""
    for statement in _V2_INDEXES:
        db.execute(statement)


_V3_PREDICTIONS = (
    """CREATE TABLE predictions (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        predicted_class TEXT NOT NULL,
        scores TEXT NOT NULL,
        attention BLOB NOT NULL,
        attention_shape TEXT NOT NULL,
        created TEXT NOT NULL,
        PRIMARY KEY (run_id, image_id)
    )""",
    "CREATE INDEX predictions_image ON predictions(image_id)",
)


def _v3_predictions(db: Database) -> None:
    """A run's model scores and attention per image (inference runs and evaluations)."""
    for statement in _V3_PREDICTIONS:
        db.execute(statement)


_V4_PIXEL_HASHES = (
    """CREATE TABLE pixel_hashes (
        image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
        frame INTEGER NOT NULL,
        pixel_sha256 TEXT NOT NULL
    )""",
    "CREATE INDEX pixel_hashes_value ON pixel_hashes(pixel_sha256)",
)


def _v4_pixel_hashes(db: Database) -> None:
    """The hash of each image's decoded pixels (of one frame), to find the same image saved in
    another encoding without decoding every file again. Older projects start with none; they are
    filled in when first needed."""
    for statement in _V4_PIXEL_HASHES:
        db.execute(statement)


_V5_SERIES = (
    "ALTER TABLE images ADD COLUMN series_hash TEXT",
    "ALTER TABLE images ADD COLUMN instance_number INTEGER",
    "CREATE INDEX images_series ON images(series_hash)",
)


def _v5_series(db: Database) -> None:
    """Each DICOM image's series (its SeriesInstanceUID salted and hashed, like the patient and
    the study) and its InstanceNumber, the slice order within the series. Images imported before
    have none: each is a series of its own until it is imported again."""
    for statement in _V5_SERIES:
        db.execute(statement)


MIGRATIONS: tuple[Migration, ...] = (
    _v1_tables,
    _v2_indexes,
    _v3_predictions,
    _v4_pixel_hashes,
    _v5_series,
)
"""In order; never edit or remove one that has shipped, only append."""

SCHEMA_VERSION = len(MIGRATIONS)


def connect(path: Path) -> Database:
    """A connection with the project's pragmas: WAL, synchronous FULL, foreign keys, busy wait."""
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000)
        db = Database(conn)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.enable_wal()
        db.execute("PRAGMA synchronous = FULL")
        db.execute("PRAGMA foreign_keys = ON")
    except sqlite3.DatabaseError as err:
        raise ProjectError(f"{path}: not a readable project database ({err})") from err
    return db


def schema_version(db: Database) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def migrate(db: Database, path: Path, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Run the pending ``migrations`` in order; returns the version reached."""
    version = schema_version(db)
    if version > len(migrations):
        raise ProjectError(
            f"{path} was saved by a newer EPT Studio (project format {version}; this version "
            f"reads up to {len(migrations)}). Update EPT Studio to open it."
        )
    for number in range(version + 1, len(migrations) + 1):
        try:
            with db.atomic():
                migrations[number - 1](db)
                db.execute(f"PRAGMA user_version = {number}")
        except sqlite3.DatabaseError as err:
            raise ProjectError(
                f"{path}: updating the project to format {number} failed ({err}); the project "
                f"is unchanged at format {number - 1}"
            ) from err
    return len(migrations)


LOCATIONS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS loc.locations (
        sha256 TEXT PRIMARY KEY,
        path TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS loc.locations_path ON locations(path)",
)
"""Where each image's file is, kept outside the project folder (paths often carry PHI)."""


def attach_locations(db: Database, path: Path) -> None:
    """Attach a project's location index as schema ``loc`` (created on first use)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db.execute("ATTACH DATABASE ? AS loc", [str(path)])
        db.execute("PRAGMA loc.journal_mode = WAL").fetchall()
        with db.atomic():
            for statement in LOCATIONS_SCHEMA:
                db.execute(statement)
    except (OSError, sqlite3.DatabaseError) as err:
        raise ProjectError(
            f"{path}: the index of where this project's image files are cannot be opened ({err})"
        ) from err
