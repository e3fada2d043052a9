"""Classes, labels, roles and their undo / redo history: what a click in the project writes.

Each user action (label these 12 images "pneumonia") is one *step*: one transaction that changes the
``labels`` table and appends, per image, its label set before and after to ``label_history``. The
history is append-only (triggers refuse updates and deletes); undo and redo append rows too. Steps
form a tree (each knows the step that was current when it was made), and ``history_cursor`` in the
meta table points at the current one: undo goes to the parent, redo to the newest child, so a new
action after an undo drops the undone branch from redo, as every editor does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence

from sqlite_utils import Database

from ept_studio.common.errors import ProjectError
from ept_studio.data.store_records import ClassCount, ClassInfo, Label, LabelMode, Role, utc_now
from ept_studio.data.store_schema import transaction

LabelState = tuple[tuple[int, str], ...]
"""One image's labels: sorted ``(class id, role)`` pairs."""

_Change = Callable[[LabelState], LabelState]

DEFAULT_COLOURS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6")
"""Colours given to new classes in turn (the user can change them)."""


class LabelBook:
    """The classes and labels of an open project and the undo / redo history of label changes.

    A :class:`~ept_studio.data.store.Project` makes one over its connection and keeps it as
    ``project.labels``. Every change here is one transaction on ``db``; the undo / redo cursor
    lives in the database (``history_cursor``), so two books over the same project agree.
    """

    def __init__(self, db: Database, label_mode: LabelMode) -> None:
        self._db = db
        self.label_mode = label_mode
        """Single-label (a new label replaces the old) or multi-label (labels add up)."""

    # -- classes ------------------------------------------------------------------------------

    def classes(self) -> list[ClassInfo]:
        """The classes in their display order (their index in this list is the model's output)."""
        rows = self._db.query("SELECT * FROM classes ORDER BY position, id")
        return [ClassInfo(**row) for row in rows]

    def class_by_name(self, name: str) -> ClassInfo | None:
        row = self._db.execute("SELECT * FROM classes WHERE name = ?", [name.strip()]).fetchone()
        return ClassInfo(*row) if row else None

    def add_class(
        self, name: str, colour: str | None = None, shortcut: str | None = None
    ) -> ClassInfo:
        name = _class_name(name)
        position = len(self.classes())
        colour = colour or DEFAULT_COLOURS[position % len(DEFAULT_COLOURS)]
        with transaction(
            self._db, f"a class named {name!r} (or shortcut {shortcut!r}) already exists"
        ):
            cursor = self._db.execute(
                "INSERT INTO classes (name, colour, position, shortcut) VALUES (?, ?, ?, ?)",
                [name, colour, position, shortcut],
            )
        return self._class(int(cursor.lastrowid or 0))

    def rename_class(self, class_id: int, name: str) -> ClassInfo:
        name = _class_name(name)
        self._class(class_id)
        with transaction(self._db, f"a class named {name!r} already exists"):
            self._db.execute("UPDATE classes SET name = ? WHERE id = ?", [name, class_id])
        return self._class(class_id)

    def recolour_class(self, class_id: int, colour: str) -> ClassInfo:
        self._class(class_id)
        with transaction(self._db, "the colour cannot be saved"):
            self._db.execute("UPDATE classes SET colour = ? WHERE id = ?", [colour, class_id])
        return self._class(class_id)

    def set_shortcut(self, class_id: int, shortcut: str | None) -> ClassInfo:
        self._class(class_id)
        with transaction(self._db, f"the shortcut {shortcut!r} is already used by another class"):
            self._db.execute("UPDATE classes SET shortcut = ? WHERE id = ?", [shortcut, class_id])
        return self._class(class_id)

    def reorder_classes(self, class_ids: Sequence[int]) -> list[ClassInfo]:
        """Put the classes in the order of ``class_ids`` (every class exactly once)."""
        current = sorted(c.id for c in self.classes())
        if sorted(class_ids) != current:
            raise ProjectError("reordering must list every class of the project exactly once")
        with transaction(self._db, "the class order cannot be saved"):
            for position, class_id in enumerate(class_ids):
                self._db.execute(
                    "UPDATE classes SET position = ? WHERE id = ?", [position, class_id]
                )
        return self.classes()

    def delete_class(self, class_id: int) -> None:
        """Delete a class and its labels (recorded in the history; not undoable)."""
        self._class(class_id)
        with transaction(self._db, "the class cannot be deleted"):
            rows = self._db.execute(
                "SELECT image_id FROM labels WHERE class_id = ?", [class_id]
            ).fetchall()
            self._record_removal([r[0] for r in rows], "delete_class", class_id)
            self._db.execute("DELETE FROM classes WHERE id = ?", [class_id])
            remaining = [c.id for c in self.classes()]
            for position, other in enumerate(remaining):
                self._db.execute("UPDATE classes SET position = ? WHERE id = ?", [position, other])

    def _class(self, class_id: int) -> ClassInfo:
        row = self._db.execute("SELECT * FROM classes WHERE id = ?", [class_id]).fetchone()
        if row is None:
            raise ProjectError(f"there is no class with id {class_id} in this project")
        return ClassInfo(*row)

    # -- changing labels ----------------------------------------------------------------------

    def set_label(
        self, image_ids: Iterable[int], class_id: int | None, role: Role | str | None = None
    ) -> tuple[int, ...]:
        """Label images with ``class_id`` (None clears every label); returns the changed images.

        Single-label projects replace an image's label, multi-label ones add to its set. ``role``
        None keeps each image's role (new labels default to train).
        """
        ids = self._existing_images(image_ids)
        if class_id is not None:
            self._require_class(class_id)
        wanted = None if role is None else Role(role).value

        def change(before: LabelState) -> LabelState:
            if class_id is None:
                return ()
            kept = _role_of(before, wanted)
            if self.label_mode is LabelMode.SINGLE:
                return ((class_id, kept),)
            return tuple(sorted({(c, kept) for c, _ in before} | {(class_id, kept)}))

        return self._step("clear" if class_id is None else "set", ids, change, class_id, wanted)

    def remove_label(self, image_ids: Iterable[int], class_id: int) -> tuple[int, ...]:
        """Take one class off images (in a single-label project: clear them if they carry it)."""
        ids = self._existing_images(image_ids)
        self._require_class(class_id)

        def change(before: LabelState) -> LabelState:
            return tuple(pair for pair in before if pair[0] != class_id)

        return self._step("remove", ids, change, class_id, None)

    def set_role(self, image_ids: Iterable[int], role: Role | str) -> tuple[int, ...]:
        """Move labelled images to the train or the test role (unlabelled ones are unchanged)."""
        ids = self._existing_images(image_ids)
        value = Role(role).value

        def change(before: LabelState) -> LabelState:
            return tuple((c, value) for c, _ in before)

        return self._step("role", ids, change, None, value)

    def _step(
        self,
        action: str,
        image_ids: list[int],
        change: _Change,
        class_id: int | None,
        role: str | None,
    ) -> tuple[int, ...]:
        changed: list[int] = []
        with transaction(
            self._db, "the label change refers to a class or image that no longer exists"
        ):
            step: int | None = None
            for image_id in image_ids:
                before = self._state(image_id)
                after = change(before)
                if after == before:
                    continue
                if step is None:
                    step = self._new_step(action)
                self._apply(image_id, after)
                self._append(action, step, image_id, class_id, role, before, after)
                changed.append(image_id)
            if step is not None:
                self._set_cursor(step)
        return tuple(changed)

    # -- undo / redo --------------------------------------------------------------------------

    def can_undo(self) -> bool:
        return self._cursor() != 0

    def can_redo(self) -> bool:
        return self._redo_step() is not None

    def undo(self) -> tuple[int, ...]:
        """Revert the current step; returns the images it touched (empty: nothing to undo)."""
        with transaction(self._db, "the undo cannot be saved"):
            step = self._cursor()
            if step == 0:
                return ()
            rows = self._db.execute(
                "SELECT image_id, previous FROM label_history WHERE step = ? "
                "AND action NOT IN ('undo', 'redo') ORDER BY id DESC",
                [step],
            ).fetchall()
            touched = self._replay("undo", step, rows)
            parent = self._db.execute("SELECT parent FROM label_steps WHERE id = ?", [step])
            self._set_cursor(int(parent.fetchone()[0]))
        return touched

    def redo(self) -> tuple[int, ...]:
        """Apply again the step undone last; returns the images it touched (empty: none)."""
        with transaction(self._db, "the redo cannot be saved"):
            step = self._redo_step()
            if step is None:
                return ()
            rows = self._db.execute(
                "SELECT image_id, next FROM label_history WHERE step = ? "
                "AND action NOT IN ('undo', 'redo') ORDER BY id",
                [step],
            ).fetchall()
            touched = self._replay("redo", step, rows)
            self._set_cursor(step)
        return touched

    def _replay(self, action: str, step: int, rows: list[tuple[int, str]]) -> tuple[int, ...]:
        touched: list[int] = []
        for image_id, encoded in rows:
            before = self._state(image_id)
            self._apply(image_id, _decode(encoded))
            after = self._state(image_id)
            if after != before:
                self._append(action, step, image_id, None, None, before, after)
                touched.append(image_id)
        return tuple(sorted(set(touched)))

    def _redo_step(self) -> int | None:
        row = self._db.execute(
            "SELECT id FROM label_steps WHERE parent = ? ORDER BY id DESC LIMIT 1",
            [self._cursor()],
        ).fetchone()
        return None if row is None else int(row[0])

    def _cursor(self) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'history_cursor'").fetchone()
        return int(row[0]) if row else 0

    def _set_cursor(self, step: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES ('history_cursor', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [str(step)],
        )

    def _new_step(self, action: str) -> int:
        cursor = self._db.execute(
            "INSERT INTO label_steps (parent, action, time) VALUES (?, ?, ?)",
            [self._cursor(), action, utc_now()],
        )
        return int(cursor.lastrowid or 0)

    # -- reading ------------------------------------------------------------------------------

    def all(self) -> list[Label]:
        """Every label of the project, by image then class order."""
        return self._read("", [])

    def of(self, image_id: int) -> list[Label]:
        """One image's labels, in class order."""
        return self._read("WHERE image_id = ?", [image_id])

    def _read(self, where: str, params: list[int]) -> list[Label]:
        rows = self._db.execute(
            "SELECT image_id, class_id, role, time FROM labels "
            f"JOIN classes ON classes.id = labels.class_id {where} "
            "ORDER BY image_id, classes.position",
            params,
        ).fetchall()
        return [Label(row[0], row[1], Role(row[2]), row[3]) for row in rows]

    def counts_per_class(self) -> list[ClassCount]:
        """Labelled images per class and role, in class order (classes without labels too)."""
        rows = self._db.execute(
            "SELECT classes.id, classes.name, "
            "COALESCE(SUM(labels.role = 'train'), 0), COALESCE(SUM(labels.role = 'test'), 0) "
            "FROM classes LEFT JOIN labels ON labels.class_id = classes.id "
            "GROUP BY classes.id ORDER BY classes.position, classes.id"
        ).fetchall()
        return [ClassCount(*row) for row in rows]

    # -- internals ----------------------------------------------------------------------------

    def _state(self, image_id: int) -> LabelState:
        rows = self._db.execute(
            "SELECT class_id, role FROM labels WHERE image_id = ? ORDER BY class_id", [image_id]
        ).fetchall()
        return tuple((int(c), str(r)) for c, r in rows)

    def _apply(self, image_id: int, state: LabelState) -> None:
        """Make the image's labels ``state``; classes or images deleted since are skipped."""
        current = dict(self._state(image_id))
        target = dict(state)
        now = utc_now()
        for class_id in current.keys() - target.keys():
            self._db.execute(
                "DELETE FROM labels WHERE image_id = ? AND class_id = ?", [image_id, class_id]
            )
        for class_id, role in target.items():
            if class_id not in current:
                self._db.execute(
                    "INSERT INTO labels (image_id, class_id, role, time) "
                    "SELECT images.id, classes.id, ?, ? FROM images, classes "
                    "WHERE images.id = ? AND classes.id = ?",
                    [role, now, image_id, class_id],
                )
            elif current[class_id] != role:
                self._db.execute(
                    "UPDATE labels SET role = ?, time = ? WHERE image_id = ? AND class_id = ?",
                    [role, now, image_id, class_id],
                )

    def _append(
        self,
        action: str,
        step: int | None,
        image_id: int,
        class_id: int | None,
        role: str | None,
        before: LabelState,
        after: LabelState,
    ) -> None:
        self._db.execute(
            "INSERT INTO label_history (time, action, step, image_id, class_id, role, previous, "
            "next) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [utc_now(), action, step, image_id, class_id, role, _encode(before), _encode(after)],
        )

    def record_image_removal(self, image_ids: Sequence[int]) -> None:
        """History rows for the labels of images about to be removed from the project.

        Call it inside the transaction that removes the images: the labels go with them (the
        foreign keys cascade), and the history keeps what they were.
        """
        self._record_removal(list(image_ids), "remove_image", None)

    def _record_removal(self, image_ids: list[int], action: str, class_id: int | None) -> None:
        """History rows (outside any undo step) for labels about to go with an image or class."""
        for image_id in image_ids:
            before = self._state(image_id)
            after = tuple(p for p in before if class_id is not None and p[0] != class_id)
            if before != after:
                self._append(action, None, image_id, class_id, None, before, after)

    def _existing_images(self, image_ids: Iterable[int]) -> list[int]:
        ids = list(dict.fromkeys(int(i) for i in image_ids))
        found = {
            row[0]
            for row in self._db.execute(
                "SELECT id FROM images WHERE id IN (SELECT value FROM json_each(?))",
                [json.dumps(ids)],
            )
        }
        missing = [i for i in ids if i not in found]
        if missing:
            raise ProjectError(
                f"{len(missing)} of the images to label are not in this project "
                f"(ids {missing[:5]}); refresh the image list"
            )
        return ids

    def _require_class(self, class_id: int) -> None:
        if self._db.execute("SELECT 1 FROM classes WHERE id = ?", [class_id]).fetchone() is None:
            raise ProjectError(f"there is no class with id {class_id} in this project")


def _role_of(state: LabelState, wanted: str | None) -> str:
    if wanted is not None:
        return wanted
    return state[0][1] if state else Role.TRAIN.value


def _encode(state: LabelState) -> str:
    return json.dumps([list(pair) for pair in state])


def _decode(text: str) -> LabelState:
    return tuple(sorted((int(c), str(r)) for c, r in json.loads(text)))


def _class_name(name: str) -> str:
    cleaned = name.strip() if isinstance(name, str) else ""
    if not cleaned:
        raise ProjectError("a class needs a name")
    return cleaned
