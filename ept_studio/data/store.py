"""The project store: one folder with ``project.db`` (SQLite through sqlite-utils) and its caches.

    my-project/
      project.db          images (by sha256), classes, labels, label history, runs, exports
      runs/<id>/          prompt file and run record of each training run
      cache/thumbnails/   regenerated from the sources whenever needed

Source images are referenced, never copied and never written. Where each one lies on disk is kept
in a small *location index* outside the project folder (file and folder names often carry patient
names), attached to the same connection: the project folder itself holds no patient identifier and
can be shared. On another machine the paths are unknown until the images are imported again, which
relinks them by content hash. The patient key behind the patient hashes lies beside the location
index, for the same reason (:mod:`ept_studio.data.project_key`).

Every change is one transaction, committed (``synchronous=FULL``) before the method returns. A
:class:`Project` belongs to the thread that opened it; another thread opens its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import platformdirs
from sqlite_utils import Database

from ept_studio import __version__
from ept_studio.common.errors import ProjectError
from ept_studio.data import store_schema
from ept_studio.data.phi import normalised_identifier, salted_hash
from ept_studio.data.project_key import (
    KeyStore,
    ProjectKey,
    ProjectKeyError,
    ProjectKeyMissingError,
    missing_key_message,
    move_old_salt_out,
    new_project_key,
)
from ept_studio.data.store_labels import LabelBook
from ept_studio.data.store_pixels import select_pixel_hashes, upsert_pixel_hashes
from ept_studio.data.store_predictions import (
    PredictionRow,
    insert_predictions,
    select_predictions,
)
from ept_studio.data.store_records import (
    ClassCount,
    ClassInfo,
    ExportRecord,
    ImageFilter,
    ImageRecord,
    ImageStatus,
    Label,
    LabelMode,
    NewImage,
    Role,
    RunRecord,
    utc_now,
)
from ept_studio.data.store_schema import transaction

DB_NAME = "project.db"
LOCATIONS_ENV = "EPT_STUDIO_DATA"

__all__ = [
    "ClassCount",
    "ClassInfo",
    "ExportRecord",
    "ImageFilter",
    "ImageRecord",
    "ImageStatus",
    "Label",
    "LabelMode",
    "NewImage",
    "PredictionRow",
    "Project",
    "Role",
    "RunRecord",
    "default_locations_dir",
    "refuse_occupied_folder",
]


def default_locations_dir() -> Path:
    """Where location indexes live: ``EPT_STUDIO_DATA``, else the user's data folder."""
    override = os.environ.get(LOCATIONS_ENV)
    if override:
        return Path(override) / "locations"
    return platformdirs.user_data_path("ept-studio") / "locations"


_RUN_STATUSES = ("running", "finished", "failed", "cancelled")
_SYSTEM_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
"""Files a file manager leaves in any folder it shows; they do not make a folder "not empty"."""


def refuse_occupied_folder(folder: Path) -> None:
    """Raise unless ``folder`` is missing or empty (a project gets a folder of its own)."""
    if (folder / DB_NAME).exists():
        raise ProjectError(f"{folder} already holds a project; open it instead")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ProjectError(f"{folder} is a file, not a folder; choose another project name")
    try:
        entries = [p for p in folder.iterdir() if p.name not in _SYSTEM_FILES]
    except OSError as err:
        raise ProjectError(f"{folder}: cannot read the folder ({err})") from err
    if entries:
        raise ProjectError(
            f"{folder} is not empty (it holds {len(entries)} files or folders). A project needs a "
            "new folder of its own, so that its database and caches never mix with your images: "
            "choose a new project name or an empty folder"
        )


class Project:
    """An open project. Create with :meth:`create`, open with :meth:`open`; close when done.

    The project holds its images, runs, exports and predictions; its classes, labels and their
    undo / redo history are in :attr:`labels`, a :class:`LabelBook` over the same connection.
    """

    def __init__(self, folder: Path, db: Database, keys: KeyStore) -> None:
        self.folder = folder
        self.db = db
        meta = {row["key"]: row["value"] for row in db.query("SELECT key, value FROM meta")}
        self.project_id: str = meta["project_id"]
        self.label_mode = LabelMode(meta["label_mode"])
        self.labels = LabelBook(db, self.label_mode)
        """Classes, labels, roles and the undo / redo of label changes."""
        self.created: str = meta["created"]
        self._keys = keys
        self.key: ProjectKey | None = keys.load(self.project_id)
        """The patient key, kept on this machine only (None: the project came from elsewhere)."""

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        folder: Path,
        label_mode: LabelMode | str = "single",
        *,
        locations_dir: Path | None = None,
    ) -> Project:
        """A new, empty project in ``folder``: created if missing, else it must be empty.

        A project never shares its folder with other files: its database, caches and runs would mix
        with the user's images, and that folder could then no longer be imported.
        """
        folder = Path(folder).absolute()
        mode = _label_mode(label_mode)
        refuse_occupied_folder(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "runs").mkdir(exist_ok=True)
            (folder / "cache" / "thumbnails").mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ProjectError(f"{folder}: cannot create the project folder ({err})") from err
        project_id = uuid.uuid4().hex
        KeyStore(locations_dir or default_locations_dir()).save(new_project_key(project_id))
        db = store_schema.connect(folder / DB_NAME)
        store_schema.migrate(db, folder / DB_NAME)
        meta = {
            "project_id": project_id,
            "label_mode": mode.value,
            "created": utc_now(),
            "app_version": __version__,
            "history_cursor": "0",
        }
        with db.atomic():
            for key, value in meta.items():
                db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", [key, value])
        return cls._attached(folder, db, locations_dir)

    @classmethod
    def open(cls, folder: Path, *, locations_dir: Path | None = None) -> Project:
        """Open an existing project, migrating its database to this version's format."""
        folder = Path(folder).absolute()
        path = folder / DB_NAME
        if not path.is_file():
            raise ProjectError(
                f"{folder} is not an EPT Studio project (it has no {DB_NAME}); create a project "
                "there or choose the project folder"
            )
        db = store_schema.connect(path)
        try:
            tables = set(db.table_names())
            if store_schema.schema_version(db) == 0 or "meta" not in tables:
                raise ProjectError(f"{path} is a database but not an EPT Studio project")
            store_schema.migrate(db, path)
        except (ProjectError, sqlite3.DatabaseError) as err:
            db.close()
            if isinstance(err, ProjectError):
                raise
            raise ProjectError(f"{path}: not a readable project database ({err})") from err
        return cls._attached(folder, db, locations_dir)

    @classmethod
    def _attached(cls, folder: Path, db: Database, locations_dir: Path | None) -> Project:
        project_id = db.execute("SELECT value FROM meta WHERE key = 'project_id'").fetchone()[0]
        private = locations_dir or default_locations_dir()
        try:
            move_old_salt_out(db, KeyStore(private), project_id)
        except ProjectError:
            db.close()
            raise
        store_schema.attach_locations(db, private / f"{project_id}.db")
        return cls(folder, db, KeyStore(private))

    @property
    def locations_dir(self) -> Path:
        """This machine's folder of the project's location index and patient key (never shared)."""
        return self._keys.folder

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def bulk_writes(self) -> Iterator[None]:
        """Writes that need not survive a power cut, only a crash of the app (an import).

        Inside, commits skip the fsync (``synchronous=NORMAL``: in WAL mode a committed write
        still survives a killed process; a power cut may lose the last ones, which importing
        again restores). Label changes are made outside, with the full guarantee.
        """
        self.db.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            self.db.execute("PRAGMA synchronous = FULL")

    @property
    def runs_dir(self) -> Path:
        return self.folder / "runs"

    @property
    def thumbnails_dir(self) -> Path:
        return self.folder / "cache" / "thumbnails"

    @property
    def schema_version(self) -> int:
        return store_schema.schema_version(self.db)

    @property
    def has_key(self) -> bool:
        """Whether new patient IDs can be hashed here (to match the patients already in)."""
        return self.key is not None

    def hash_identifier(self, identifier: object) -> str | None:
        """A patient or study identifier as this project's salted hash (None when blank).

        Without the key on this machine a non-blank ID is refused: a hash under any other secret
        would not match the same patient's images imported elsewhere.
        """
        if normalised_identifier(identifier) is None:
            return None
        if self.key is None:
            raise ProjectKeyMissingError(missing_key_message(self.project_id))
        return salted_hash(identifier, self.key.secret)

    def adopt_key(self, key: ProjectKey) -> None:
        """Use ``key`` (the project's key, carried from another machine) and keep it here."""
        if key.project_id != self.project_id:
            raise ProjectKeyError(
                f"this patient key belongs to another project ({key.project_id[:8]}, not "
                f"{self.project_id[:8]}); export the key of this project"
            )
        self._keys.save(key)
        self.key = key

    # -- images -------------------------------------------------------------------------------

    def add_image(self, image: NewImage) -> int:
        """Add a new image (its sha256 must be new to the project); returns its id."""
        row = dataclasses.asdict(image)
        path = str(row.pop("path"))
        row["rendering"] = json.dumps(image.rendering, sort_keys=True)
        row["added"] = utc_now()
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        with transaction(self.db, "this image is already in the project"):
            self._set_location(image.sha256, path)
            cursor = self.db.execute(
                f"INSERT INTO images ({columns}) VALUES ({marks})", list(row.values())
            )
        return int(cursor.lastrowid or 0)

    def relink(self, image_id: int, path: Path, size: int, mtime_ns: int) -> None:
        """The image's file was found at ``path`` (same content): remember it, status ok."""
        record = self.image(image_id)
        with transaction(self.db, "the new location cannot be saved"):
            self._set_location(record.sha256, str(path))
            self.db.execute(
                "UPDATE images SET size = ?, mtime_ns = ?, status = 'ok' WHERE id = ?",
                [size, mtime_ns, image_id],
            )

    def set_status(self, image_ids: Iterable[int], status: ImageStatus | str) -> None:
        value = ImageStatus(status).value
        with transaction(self.db, "the image status cannot be saved"):
            for image_id in image_ids:
                self.db.execute("UPDATE images SET status = ? WHERE id = ?", [value, image_id])

    def set_rendering(self, image_ids: Iterable[int], rendering: dict[str, Any]) -> None:
        """Store how images are shown and fed to the model (a ``RenderingSpec.to_dict()``)."""
        text = json.dumps(rendering, sort_keys=True)
        with transaction(self.db, "the rendering cannot be saved"):
            for image_id in image_ids:
                self.db.execute("UPDATE images SET rendering = ? WHERE id = ?", [text, image_id])

    def pixel_hashes(self) -> dict[int, tuple[int, str]]:
        """Image id -> (frame, hash of that frame's decoded pixels), where already computed."""
        return select_pixel_hashes(self.db)

    def set_pixel_hashes(self, hashes: Iterable[tuple[int, int, str]]) -> None:
        """Store (image id, frame, decoded-pixel sha256) triples (see ``data.pixel_hash``)."""
        with transaction(self.db, "the pixel hashes cannot be saved"):
            upsert_pixel_hashes(self.db, hashes)

    def remove_images(self, image_ids: Sequence[int]) -> None:
        """Take images out of the project (the files are untouched); their labels go too."""
        with transaction(self.db, "the images cannot be removed"):
            self.labels.record_image_removal(image_ids)
            for image_id in image_ids:
                sha = self.db.execute(
                    "SELECT sha256 FROM images WHERE id = ?", [image_id]
                ).fetchone()
                if sha is not None:
                    self.db.execute("DELETE FROM loc.locations WHERE sha256 = ?", [sha[0]])
                self.db.execute("DELETE FROM images WHERE id = ?", [image_id])

    def image(self, image_id: int) -> ImageRecord:
        rows = list(self._image_rows("WHERE images.id = ?", [image_id]))
        if not rows:
            raise ProjectError(f"there is no image with id {image_id} in this project")
        return rows[0]

    def image_by_sha256(self, sha256: str) -> ImageRecord | None:
        rows = list(self._image_rows("WHERE images.sha256 = ?", [sha256]))
        return rows[0] if rows else None

    def images_at(self, path: Path) -> list[ImageRecord]:
        """The images whose last known location is ``path`` (several once a file has changed)."""
        return list(self._image_rows("WHERE loc.locations.path = ?", [str(path)]))

    def images(self, filter: ImageFilter | None = None) -> list[ImageRecord]:
        """The project's images in the order they were added, optionally filtered."""
        where, params = _image_filter_sql(filter or ImageFilter())
        return list(self._image_rows(where, params))

    def known_locations(self) -> dict[str, tuple[int, int, int, str]]:
        """Path -> (image id, size, mtime_ns, status) of each located image (fast re-import)."""
        rows = self.db.execute(
            "SELECT loc.locations.path, images.id, size, mtime_ns, status FROM images "
            "JOIN loc.locations ON loc.locations.sha256 = images.sha256 ORDER BY images.id"
        ).fetchall()
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}

    def _image_rows(self, where: str, params: Sequence[Any]) -> Iterator[ImageRecord]:
        sql = (
            "SELECT images.*, loc.locations.path AS path FROM images "
            f"LEFT JOIN loc.locations ON loc.locations.sha256 = images.sha256 {where} "
            "ORDER BY images.id"
        )
        for row in self.db.query(sql, params):
            row["path"] = Path(row["path"]) if row["path"] is not None else None
            row["rendering"] = json.loads(row["rendering"])
            row["status"] = ImageStatus(row["status"])
            burned = row["burned_in_annotation"]
            row["burned_in_annotation"] = None if burned is None else bool(burned)
            yield ImageRecord(**row)

    def _set_location(self, sha256: str, path: str) -> None:
        self.db.execute(
            "INSERT INTO loc.locations (sha256, path) VALUES (?, ?) "
            "ON CONFLICT (sha256) DO UPDATE SET path = excluded.path",
            [sha256, path],
        )

    # -- runs and exports ---------------------------------------------------------------------

    def record_run(
        self,
        *,
        config: dict[str, Any],
        seed: int,
        versions: dict[str, Any],
        backbone: str,
        backbone_sha256: str,
        device: str | None = None,
    ) -> int:
        """A new run, status ``running``; its files go to ``runs/<id>/``."""
        with transaction(self.db, "the run cannot be recorded"):
            cursor = self.db.execute(
                "INSERT INTO runs (created, status, config, seed, versions, device, backbone, "
                "backbone_sha256) VALUES (?, 'running', ?, ?, ?, ?, ?, ?)",
                [
                    utc_now(),
                    _json(config),
                    seed,
                    _json(versions),
                    device,
                    backbone,
                    backbone_sha256,
                ],
            )
        return int(cursor.lastrowid or 0)

    def finish_run(
        self,
        run_id: int,
        status: str,
        *,
        metrics: dict[str, Any] | None = None,
        artifacts: dict[str, Any] | None = None,
        device: str | None = None,
    ) -> RunRecord:
        if status not in _RUN_STATUSES:
            raise ProjectError(f"a run's status must be one of {_RUN_STATUSES}, not {status!r}")
        self.run(run_id)
        with transaction(self.db, "the run's result cannot be saved"):
            self.db.execute(
                "UPDATE runs SET status = ?, finished = ?, metrics = ?, artifacts = ?, "
                "device = COALESCE(?, device) WHERE id = ?",
                [status, utc_now(), _json(metrics or {}), _json(artifacts or {}), device, run_id],
            )
        return self.run(run_id)

    def set_run_artifacts(self, run_id: int, artifacts: dict[str, Any]) -> RunRecord:
        """Add (or replace) entries of a run's artifacts, e.g. an ONNX model made later."""
        merged = {**self.run(run_id).artifacts, **artifacts}
        with transaction(self.db, "the run's files cannot be recorded"):
            self.db.execute("UPDATE runs SET artifacts = ? WHERE id = ?", [_json(merged), run_id])
        return self.run(run_id)

    def run(self, run_id: int) -> RunRecord:
        rows = list(self.db.query("SELECT * FROM runs WHERE id = ?", [run_id]))
        if not rows:
            raise ProjectError(f"there is no run {run_id} in this project")
        return _run_record(rows[0])

    def runs(self) -> list[RunRecord]:
        return [_run_record(row) for row in self.db.query("SELECT * FROM runs ORDER BY id")]

    def run_dir(self, run_id: int) -> Path:
        return self.runs_dir / str(run_id)

    def record_export(self, run_id: int | None, kind: str, file_name: str, sha256: str) -> int:
        """Note that a file was exported: its kind, time and sha256, under a neutral name.

        The name the user typed (``Patient X.csv``) can carry a patient's name, and the project
        folder is meant to be shareable: only :func:`neutral_export_name` of it is kept.
        """
        with transaction(self.db, "the export cannot be recorded"):
            cursor = self.db.execute(
                "INSERT INTO exports (run_id, kind, file_name, sha256, created) "
                "VALUES (?, ?, ?, ?, ?)",
                [run_id, kind, neutral_export_name(kind, file_name), sha256, utc_now()],
            )
        return int(cursor.lastrowid or 0)

    def record_predictions(self, run_id: int, rows: Sequence[PredictionRow]) -> None:
        """Store a batch of a run's predictions, in one transaction."""
        self.run(run_id)
        with transaction(self.db, "the predictions cannot be saved"):
            insert_predictions(self.db, run_id, rows)

    def predictions(self, run_id: int) -> list[PredictionRow]:
        """A run's predictions, by image id."""
        return select_predictions(self.db, run_id)

    def exports(self, run_id: int | None = None) -> list[ExportRecord]:
        where, params = ("WHERE run_id = ?", [run_id]) if run_id is not None else ("", [])
        rows = self.db.query(f"SELECT * FROM exports {where} ORDER BY id", params)
        return [ExportRecord(**row) for row in rows]


_EXPORT_STEMS = {"predictions-csv": "predictions", "onnx": "model"}


def neutral_export_name(kind: str, file_name: str) -> str:
    """``predictions.csv``, ``model.onnx``, ``prompt.safetensors``: the export's kind with the
    suffix of the typed name (when it is a plain one), never the typed name itself."""
    suffix = Path(file_name).suffix.lower()
    plain = len(suffix) <= 16 and suffix[1:].isascii() and suffix[1:].isalnum()
    return _EXPORT_STEMS.get(kind, kind) + (suffix if plain else "")


def _label_mode(value: LabelMode | str) -> LabelMode:
    try:
        return LabelMode(value)
    except ValueError as err:
        raise ProjectError(f"the label mode must be 'single' or 'multi', not {value!r}") from err


def _image_filter_sql(selection: ImageFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if selection.status is not None:
        clauses.append("images.status = ?")
        params.append(ImageStatus(selection.status).value)
    if selection.class_id is not None:
        clauses.append("images.id IN (SELECT image_id FROM labels WHERE class_id = ?)")
        params.append(selection.class_id)
    if selection.role is not None:
        clauses.append("images.id IN (SELECT image_id FROM labels WHERE role = ?)")
        params.append(Role(selection.role).value)
    if selection.unlabelled:
        clauses.append("images.id NOT IN (SELECT image_id FROM labels)")
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _run_record(row: dict[str, Any]) -> RunRecord:
    for name in ("config", "versions", "metrics", "artifacts"):
        row[name] = json.loads(row[name])
    return RunRecord(**row)
