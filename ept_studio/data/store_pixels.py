"""The decoded-pixel hash of each image in the project store (see :mod:`ept_studio.data.pixel_hash`).

A hash belongs to one frame of the image: when the frame an image is shown and trained on
changes, the stored hash no longer applies and is computed again.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlite_utils import Database


def select_pixel_hashes(db: Database) -> dict[int, tuple[int, str]]:
    """Image id -> (frame, pixel sha256) for every image whose hash is known."""
    rows = db.execute("SELECT image_id, frame, pixel_sha256 FROM pixel_hashes").fetchall()
    return {int(row[0]): (int(row[1]), str(row[2])) for row in rows}


def upsert_pixel_hashes(db: Database, hashes: Iterable[tuple[int, int, str]]) -> None:
    """Store (image id, frame, pixel sha256) triples, replacing an image's older hash."""
    db.conn.executemany(
        "INSERT INTO pixel_hashes (image_id, frame, pixel_sha256) VALUES (?, ?, ?) "
        "ON CONFLICT (image_id) DO UPDATE SET frame = excluded.frame, "
        "pixel_sha256 = excluded.pixel_sha256",
        list(hashes),
    )
