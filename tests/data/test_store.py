"""The project store on real SQLite files: schema, migrations, classes, labels, undo, runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from ept_studio.common.errors import ProjectError
from ept_studio.data import store_schema
from ept_studio.data.phi import salted_hash
from ept_studio.data.store import (
    DB_NAME,
    ImageFilter,
    ImageStatus,
    NewImage,
    Project,
    Role,
)


def _project(tmp_path: Path, mode: str = "single") -> Project:
    return Project.create(tmp_path / "project", mode, locations_dir=tmp_path / "locations")


def _add_images(project: Project, count: int, start: int = 0) -> list[int]:
    return [
        project.add_image(
            NewImage(
                sha256=f"{n:064x}",
                path=Path(f"/data/scan{n}.png"),
                size=100 + n,
                mtime_ns=n,
                kind="image",
            )
        )
        for n in range(start, start + count)
    ]


def _plain(path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read through a separate, plain sqlite3 connection (what another process would see)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_create_makes_the_folder_layout_and_the_pragmas(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        assert (project.folder / DB_NAME).is_file()
        assert project.runs_dir.is_dir()
        assert project.thumbnails_dir == project.folder / "cache" / "thumbnails"
        assert project.thumbnails_dir.is_dir()
        assert project.schema_version == store_schema.SCHEMA_VERSION == 5
        assert project.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert project.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert project.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert project.label_mode.value == "single"
        assert len(project.project_id) == 32
    reopened = Project.open(tmp_path / "project", locations_dir=tmp_path / "locations")
    assert reopened.project_id == project.project_id
    reopened.close()
    with pytest.raises(ProjectError, match="already holds a project"):
        _project(tmp_path)


def test_open_refuses_what_is_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="is not an EPT Studio project"):
        Project.open(tmp_path)
    (tmp_path / DB_NAME).write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(ProjectError, match="not a readable project database"):
        Project.open(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    conn = sqlite3.connect(other / DB_NAME)
    conn.execute("CREATE TABLE notes (x)")
    conn.commit()
    conn.close()
    with pytest.raises(ProjectError, match="not an EPT Studio project"):
        Project.open(other)
    with pytest.raises(ProjectError, match="label mode"):
        Project.create(tmp_path / "p", "several")


def test_a_newer_project_format_is_refused(tmp_path: Path) -> None:
    _project(tmp_path).close()
    conn = sqlite3.connect(tmp_path / "project" / DB_NAME)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(ProjectError, match=r"newer EPT Studio \(project format 99"):
        Project.open(tmp_path / "project", locations_dir=tmp_path / "locations")


def test_a_version_1_database_is_migrated_on_open(tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir()
    db = store_schema.connect(folder / DB_NAME)
    store_schema.migrate(db, folder / DB_NAME, store_schema.MIGRATIONS[:1])
    for key, value in {
        "project_id": "0" * 32,
        "label_mode": "single",
        "salt": "ab" * 32,
        "created": "2024-01-01T00:00:00+00:00",
        "app_version": "0.0.1",
        "history_cursor": "0",
    }.items():
        db.execute("INSERT INTO meta VALUES (?, ?)", [key, value])
    db.execute(
        "INSERT INTO images (sha256, kind, size, mtime_ns, added) VALUES (?, 'image', 1, 1, 'x')",
        ["f" * 64],
    )
    db.execute("INSERT INTO classes (name, colour, position) VALUES ('effusion', '#fff', 0)")
    db.execute("INSERT INTO labels VALUES (1, 1, 'train', 'x')")
    assert store_schema.schema_version(db) == 1
    assert "labels_class" not in {index.name for index in db["labels"].indexes}
    db.close()

    with Project.open(folder, locations_dir=tmp_path / "loc") as project:
        assert project.schema_version == 5
        assert project.images()[0].series_hash is None  # each old image a series of its own
        assert "predictions" in project.db.table_names()
        assert project.pixel_hashes() == {}  # filled in when first needed
        assert "labels_class" in {index.name for index in project.db["labels"].indexes}
        assert [c.name for c in project.labels.classes()] == ["effusion"]
        assert [(lab.image_id, lab.class_id) for lab in project.labels.all()] == [(1, 1)]
        assert project.images()[0].path is None  # never located on this machine
        # The old salt left project.db for this machine's key file, and still hashes the same.
        assert project.db.execute("SELECT value FROM meta WHERE key = 'salt'").fetchone() is None
        assert project.hash_identifier("PAT-1") == salted_hash("PAT-1", "ab" * 32)


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    _project(tmp_path).close()
    path = tmp_path / "project" / DB_NAME

    def broken(db: Database) -> None:
        db.execute("CREATE TABLE half_done (x)")
        db.execute("SELECT * FROM no_such_table")

    db = store_schema.connect(path)
    current = store_schema.SCHEMA_VERSION
    with pytest.raises(ProjectError, match=f"unchanged at format {current}"):
        store_schema.migrate(db, path, (*store_schema.MIGRATIONS, broken))
    assert store_schema.schema_version(db) == current
    assert "half_done" not in db.table_names()
    db.close()


def test_classes_add_rename_recolour_reorder_delete(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        normal = project.labels.add_class("normal", shortcut="1")
        effusion = project.labels.add_class(" effusion ", colour="#ff0000")
        nodule = project.labels.add_class("nodule")
        assert [(c.name, c.position) for c in project.labels.classes()] == [
            ("normal", 0),
            ("effusion", 1),
            ("nodule", 2),
        ]
        assert effusion.colour == "#ff0000"
        with pytest.raises(ProjectError, match="already exists"):
            project.labels.add_class("NORMAL")
        with pytest.raises(ProjectError, match="needs a name"):
            project.labels.add_class("  ")
        with pytest.raises(ProjectError, match="shortcut '1' is already used"):
            project.labels.set_shortcut(nodule.id, "1")
        assert project.labels.rename_class(nodule.id, "mass").name == "mass"
        assert project.labels.recolour_class(normal.id, "#00ff00").colour == "#00ff00"
        order = project.labels.reorder_classes([nodule.id, normal.id, effusion.id])
        assert [c.name for c in order] == ["mass", "normal", "effusion"]
        with pytest.raises(ProjectError, match="every class"):
            project.labels.reorder_classes([normal.id])
        images = _add_images(project, 3)
        project.labels.set_label(images[:2], normal.id)
        project.labels.delete_class(normal.id)
        assert [(c.name, c.position) for c in project.labels.classes()] == [
            ("mass", 0),
            ("effusion", 1),
        ]
        assert project.labels.all() == []
        deleted = project.db.execute(
            "SELECT COUNT(*) FROM label_history WHERE action = 'delete_class'"
        ).fetchone()[0]
        assert deleted == 2
        with pytest.raises(ProjectError, match="no class with id"):
            project.labels.rename_class(normal.id, "gone")


def test_single_label_replaces_and_every_change_is_committed(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        a, b = project.labels.add_class("a"), project.labels.add_class("b")
        images = _add_images(project, 4)
        assert project.labels.set_label(images[:3], a.id) == tuple(images[:3])
        db_file = project.folder / DB_NAME
        # Seen by another connection while this one is still open: committed, not pending.
        assert _plain(db_file, "SELECT COUNT(*) FROM labels")[0][0] == 3
        assert project.labels.set_label(images[:1], a.id) == ()  # no change, no step
        assert project.labels.set_label(images[1:2], b.id, role=Role.TEST) == (images[1],)
        assert _plain(db_file, "SELECT class_id, role FROM labels WHERE image_id = 2") == [
            (b.id, "test")
        ]
        counts = {c.name: (c.train, c.test) for c in project.labels.counts_per_class()}
        assert counts == {"a": (2, 0), "b": (0, 1)}
        # The image keeps its test role when relabelled without a role.
        project.labels.set_label(images[1:2], a.id)
        assert project.labels.of(images[1])[0].role is Role.TEST
        project.labels.set_role(images[:4], "test")
        counts = {c.name: (c.train, c.test) for c in project.labels.counts_per_class()}
        assert counts == {"a": (0, 3), "b": (0, 0)}
        project.labels.set_label(images[:1], None)
        assert [lab.image_id for lab in project.labels.all()] == images[1:3]
        unlabelled = project.images(ImageFilter(unlabelled=True))
        assert [i.id for i in unlabelled] == [images[0], images[3]]
        assert [i.id for i in project.images(ImageFilter(class_id=a.id))] == images[1:3]
        with pytest.raises(ProjectError, match="not in this project"):
            project.labels.set_label([999], a.id)
        with pytest.raises(ProjectError, match="no class with id"):
            project.labels.set_label(images, 999)


def test_multi_label_holds_several_classes_per_image(tmp_path: Path) -> None:
    with _project(tmp_path, "multi") as project:
        effusion, nodule = project.labels.add_class("effusion"), project.labels.add_class("nodule")
        images = _add_images(project, 2)
        project.labels.set_label(images, effusion.id)
        project.labels.set_label(images[:1], nodule.id)
        assert [(lab.image_id, lab.class_id) for lab in project.labels.all()] == [
            (images[0], effusion.id),
            (images[0], nodule.id),
            (images[1], effusion.id),
        ]
        project.labels.remove_label(images, effusion.id)
        assert [(lab.image_id, lab.class_id) for lab in project.labels.all()] == [
            (images[0], nodule.id)
        ]
        counts = {c.name: c.total for c in project.labels.counts_per_class()}
        assert counts == {"effusion": 0, "nodule": 1}


def test_undo_and_redo_walk_the_history(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        a, b = project.labels.add_class("a"), project.labels.add_class("b")
        images = _add_images(project, 3)

        def state() -> list[tuple[int, int, str]]:
            return [(lab.image_id, lab.class_id, lab.role.value) for lab in project.labels.all()]

        assert not project.labels.can_undo()
        assert project.labels.undo() == ()
        project.labels.set_label(images, a.id)  # step 1
        project.labels.set_label(images[:1], b.id, role="test")  # step 2
        after_two = state()
        assert project.labels.undo() == (images[0],)
        assert state() == [(i, a.id, "train") for i in images]
        assert project.labels.undo() == tuple(images)
        assert state() == []
        assert project.labels.undo() == ()
        assert project.labels.redo() == tuple(images)
        assert project.labels.redo() == (images[0],)
        assert state() == after_two
        assert not project.labels.can_redo()
        project.labels.undo()
        project.labels.set_label(images[2:], b.id)  # a new action drops the undone branch
        assert not project.labels.can_redo()
        assert state() == [
            (images[0], a.id, "train"),
            (images[1], a.id, "train"),
            (images[2], b.id, "train"),
        ]
        project.labels.undo()
        assert project.labels.redo() == (images[2],)  # the newest branch, not the dropped one
        actions = [row[0] for row in project.db.execute("SELECT action FROM label_history")]
        assert actions.count("undo") == 6  # history rows: one per image per undo
        assert actions.count("redo") == 5


def test_the_label_history_is_append_only(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        cls = project.labels.add_class("a")
        project.labels.set_label(_add_images(project, 1), cls.id)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            project.db.execute("UPDATE label_history SET action = 'forged'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            project.db.execute("DELETE FROM label_history")


def test_pixel_hashes_are_stored_replaced_and_removed_with_their_image(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        ids = _add_images(project, 2)
        project.set_pixel_hashes([(ids[0], 0, "a" * 64), (ids[1], 0, "b" * 64)])
        project.set_pixel_hashes([(ids[1], 2, "c" * 64)])  # another frame replaces the hash
        assert project.pixel_hashes() == {ids[0]: (0, "a" * 64), ids[1]: (2, "c" * 64)}
        project.remove_images([ids[0]])
        assert project.pixel_hashes() == {ids[1]: (2, "c" * 64)}


def test_images_locations_status_and_removal(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        ids = _add_images(project, 3)
        record = project.image(ids[1])
        assert record.path == Path("/data/scan1.png")
        assert record.status is ImageStatus.OK
        assert project.image_by_sha256(f"{1:064x}") == record
        assert [i.id for i in project.images_at(Path("/data/scan2.png"))] == [ids[2]]
        project.relink(ids[1], Path("/moved/scan1.png"), 101, 77)
        assert project.image(ids[1]).path == Path("/moved/scan1.png")
        assert project.image(ids[1]).mtime_ns == 77
        project.set_status([ids[0]], "missing")
        assert [i.id for i in project.images(ImageFilter(status=ImageStatus.MISSING))] == [ids[0]]
        with pytest.raises(ProjectError, match="already in the project"):
            _add_images(project, 1)
        cls = project.labels.add_class("a")
        project.labels.set_label(ids, cls.id)
        project.remove_images([ids[0]])
        assert [i.id for i in project.images()] == ids[1:]
        assert [lab.image_id for lab in project.labels.all()] == ids[1:]
        assert "/data/scan0.png" not in project.known_locations()
    # No path is stored in the project folder: the location index is elsewhere.
    assert b"/data/scan" not in (tmp_path / "project" / DB_NAME).read_bytes()
    elsewhere = Project.open(tmp_path / "project", locations_dir=tmp_path / "other-machine")
    assert [i.path for i in elsewhere.images()] == [None, None]
    elsewhere.close()


def test_runs_and_exports_are_recorded(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        run = project.record_run(
            config={"method": {"method": "ept"}},
            seed=3,
            versions={"torch": "2.x"},
            backbone="tiny",
            backbone_sha256="a" * 64,
        )
        assert project.run(run).status == "running"
        assert project.run_dir(run) == project.folder / "runs" / "1"
        done = project.finish_run(run, "finished", metrics={"accuracy": 0.75}, device="cpu")
        assert (done.status, done.metrics, done.device, done.seed) == (
            "finished",
            {"accuracy": 0.75},
            "cpu",
            3,
        )
        with pytest.raises(ProjectError, match="status must be one of"):
            project.finish_run(run, "exploded")
        export = project.record_export(
            run, "prompt", "/home/someone/out/Patient X.safetensors", "b" * 64
        )
        assert [(e.id, e.file_name) for e in project.exports(run)] == [
            (export, "prompt.safetensors")  # the typed name can carry PHI: a neutral one is kept
        ]
        assert [r.id for r in project.runs()] == [run]


def test_identifiers_hash_with_the_project_salt(tmp_path: Path) -> None:
    first = _project(tmp_path)
    second = Project.create(tmp_path / "second", locations_dir=tmp_path / "locations")
    assert first.hash_identifier("PAT-123") == first.hash_identifier(" PAT-123\x00")
    assert first.hash_identifier("PAT-123") != second.hash_identifier("PAT-123")
    assert first.hash_identifier("PAT-123") != first.hash_identifier("PAT-124")
    assert first.hash_identifier("") is None
    assert first.hash_identifier(None) is None
    assert len(first.hash_identifier("PAT-123") or "") == 32
    assert salted_hash("x", "00" * 32) == salted_hash("x", "00" * 32)
    first.close()
    second.close()


def test_the_rendering_spec_is_stored_per_image(tmp_path: Path) -> None:
    with _project(tmp_path) as project:
        ids = _add_images(project, 2)
        lung = {"window": [-600.0, 1500.0], "policy": "file", "invert": None, "frame": 0}
        project.set_rendering(ids[:1], lung)
        assert project.image(ids[0]).rendering == lung
        assert project.image(ids[1]).rendering == {}
