"""A run's predictions in the project store: class, model score per class, attention per image.

Attention is kept as float32 bytes with its shape (``[heads, patches]``), so an overlay can be drawn
again later without running the model.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np
from sqlite_utils import Database

from ept_studio.data.store_records import utc_now


@dataclasses.dataclass(frozen=True)
class PredictionRow:
    """One image's prediction in a run."""

    image_id: int
    predicted_class: str
    scores: dict[str, float]
    attention: np.ndarray = dataclasses.field(repr=False, compare=False)


def insert_predictions(db: Database, run_id: int, rows: Sequence[PredictionRow]) -> None:
    """Store ``rows`` for ``run_id`` (an image predicted again in the same run is replaced)."""
    now = utc_now()
    db.conn.executemany(
        "INSERT OR REPLACE INTO predictions (run_id, image_id, predicted_class, scores, "
        "attention, attention_shape, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                run_id,
                row.image_id,
                row.predicted_class,
                json.dumps(row.scores, sort_keys=True),
                np.ascontiguousarray(row.attention, dtype=np.float32).tobytes(),
                json.dumps(list(row.attention.shape)),
                now,
            )
            for row in rows
        ],
    )


def select_predictions(db: Database, run_id: int) -> list[PredictionRow]:
    """The predictions of ``run_id``, by image id."""
    rows = db.query(
        "SELECT image_id, predicted_class, scores, attention, attention_shape FROM predictions "
        "WHERE run_id = ? ORDER BY image_id",
        [run_id],
    )
    return [
        PredictionRow(
            int(row["image_id"]),
            str(row["predicted_class"]),
            {k: float(v) for k, v in json.loads(row["scores"]).items()},
            np.frombuffer(row["attention"], dtype=np.float32).reshape(
                json.loads(row["attention_shape"])
            ),
        )
        for row in rows
    ]
