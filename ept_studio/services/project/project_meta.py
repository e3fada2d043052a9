"""Small facts a project keeps about itself in its ``meta`` table: whether it is the demo, and the
backbone its Train tab last chose.

They live in ``project.db`` (not in the app's settings) because the project folder is what moves
between machines: a project opened elsewhere still names its backbone, and the demo still says
what it is. A project without a key simply has no such fact (older demos are not recognised).
"""

from __future__ import annotations

import sqlite3

from ept_studio.common.errors import ProjectError
from ept_studio.data.store import Project

DEMO_KEY = "demo"
"""Set (to ``"1"``) by :func:`~ept_studio.services.project.demo.create_demo_project`."""
BACKBONE_KEY = "backbone"
"""The backbone the next training of this project loads; absent: the offline default."""


def meta_value(project: Project, key: str) -> str | None:
    """The project's ``meta`` value under ``key`` (None when it has none)."""
    row = project.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return None if row is None else str(row[0])


def set_meta_value(project: Project, key: str, value: str | None) -> None:
    """Store ``value`` under ``key`` (None removes it); nothing is written when it is unchanged.

    A project that cannot be written (a read-only folder) is a ProjectError naming it."""
    if meta_value(project, key) == value:
        return
    try:
        with project.db.atomic():
            if value is None:
                project.db.execute("DELETE FROM meta WHERE key = ?", [key])
            else:
                project.db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key, value],
                )
    except sqlite3.Error as err:
        raise ProjectError(f"{project.folder}: the project cannot be written ({err})") from err


def mark_demo_project(project: Project) -> None:
    """Record that ``project`` is the demo, so the app can say what the demo shows."""
    set_meta_value(project, DEMO_KEY, "1")


def is_demo_project(project: Project) -> bool:
    """True for a demo built by this version or later (older demos carry no mark)."""
    return meta_value(project, DEMO_KEY) == "1"


def remembered_backbone(project: Project) -> str | None:
    """The backbone chosen for ``project`` (None: the offline default), whether or not it is here."""
    return meta_value(project, BACKBONE_KEY) or None


def remember_backbone(project: Project, name: str | None) -> None:
    """Keep ``name`` as the project's backbone (None: back to the offline default)."""
    set_meta_value(project, BACKBONE_KEY, name or None)
