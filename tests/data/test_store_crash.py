"""A process killed (SIGKILL) amid a burst of label writes loses no write that had returned."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ept_studio.data.store import DB_NAME, NewImage, Project

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")

IMAGES = 1000
# Kill after this many acknowledged writes, one run each: a burst is always in flight by then.
KILL_AFTER = (40, 173, 311)

WRITER = """
import sys
from pathlib import Path
from ept_studio.data.store import Project

folder, locations, start, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
project = Project.open(Path(folder), locations_dir=Path(locations))
classes = [c.id for c in project.labels.classes()]
sys.stdout.write("ready\\n")
sys.stdout.flush()
for image_id in range(start, stop):
    project.labels.set_label([image_id], classes[image_id % len(classes)])
    sys.stdout.write(f"{image_id}\\n")
    sys.stdout.flush()
"""


def _prepare(folder: Path, locations: Path) -> list[int]:
    with Project.create(folder, locations_dir=locations) as project:
        classes = [project.labels.add_class(name).id for name in ("normal", "effusion", "nodule")]
        with project.db.atomic():
            for n in range(IMAGES):
                project.add_image(NewImage(f"{n:064x}", Path(f"/data/{n}.png"), 1, 1, kind="image"))
    return classes


def _kill_mid_burst(folder: Path, locations: Path, start: int, kill_after: int) -> list[int]:
    """Run the writer, SIGKILL it once ``kill_after`` writes have returned; the ids it printed."""
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), str(locations), str(start), str(IMAGES + 1)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    acknowledged: list[int] = []
    while len(acknowledged) < kill_after:
        line = process.stdout.readline()
        assert line, "the writer stopped before it was killed"
        acknowledged.append(int(line))
    process.send_signal(signal.SIGKILL)
    # Writes that returned between the last read and the kill were printed too: read them all.
    acknowledged.extend(int(line) for line in process.stdout.read().split())
    assert process.wait(timeout=30) == -signal.SIGKILL
    return acknowledged


def test_every_returned_label_survives_sigkill(tmp_path: Path) -> None:
    folder, locations = tmp_path / "project", tmp_path / "locations"
    classes = _prepare(folder, locations)
    start = 1
    survived = 0
    for kill_after in KILL_AFTER:
        acknowledged = _kill_mid_burst(folder, locations, start, kill_after)
        assert len(acknowledged) >= kill_after
        conn = sqlite3.connect(folder / DB_NAME)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            labels = dict(conn.execute("SELECT image_id, class_id FROM labels").fetchall())
            history = conn.execute("SELECT COUNT(*) FROM label_history").fetchone()[0]
        finally:
            conn.close()
        for image_id in acknowledged:
            assert labels.get(image_id) == classes[image_id % len(classes)], image_id
        # At most the one write in flight at the kill may have landed without being printed.
        assert len(acknowledged) <= len(labels) - survived <= len(acknowledged) + 1
        assert history == len(labels)
        survived = len(labels)
        start = max(labels) + 1
    with Project.open(folder, locations_dir=locations) as project:
        assert len(project.labels.all()) == survived >= sum(KILL_AFTER)
