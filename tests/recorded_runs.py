"""A training run written straight into a real project: stored scores, a run record with the
images it trained, calibrated and was tested on, and (optionally) its calibration and prediction-set
blocks. No model is trained: the scores are chosen, so the numbers they give are known."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ept_studio.data.store import PredictionRow, Project

CLASSES = ("Brain", "Bone")
RECORD = "run.json"


def _images(
    project: Project, ids: Sequence[int], targets: Mapping[int, int]
) -> list[dict[str, Any]]:
    sha = {image.id: image.sha256 for image in project.images()}
    return [{"sha256": sha[i], "target": targets[i]} for i in ids]


def record_training_run(
    project: Project,
    scores: Mapping[int, Sequence[float]],
    targets: Mapping[int, int],
    *,
    train: Sequence[int],
    calibration: Sequence[int],
    test: Sequence[int],
    calibration_block: dict[str, Any] | None = None,
    conformal_block: dict[str, Any] | None = None,
    classes: Sequence[str] = CLASSES,
) -> int:
    """A finished training run that stored ``scores`` (image id -> one score per class) and a
    run record naming the ``train``, ``calibration`` and ``test`` images (their ``targets``)."""
    run_id = project.record_run(
        config={"kind": "training", "classes": list(classes), "label_mode": "single"},
        seed=0,
        versions={},
        backbone="tiny",
        backbone_sha256="ab" * 32,
    )
    rows = [
        PredictionRow(
            image_id,
            classes[int(np.argmax(row))],
            {name: float(v) for name, v in zip(classes, row, strict=True)},
            np.zeros((2, 16), dtype=np.float32),
        )
        for image_id, row in scores.items()
    ]
    project.record_predictions(run_id, rows)
    record: dict[str, Any] = {
        "format": "ept-studio-run/2",
        "source": "project",
        "created": "2025-01-01T00:00:00Z",
        "notice": "For research use only. Not for clinical diagnosis.",
        "versions": {},
        "machine": {},
        "seed": 0,
        "method": {"method": "ept"},
        "recipe": {},
        "trainable_parameters": 1,
        "backbone": {"name": "tiny", "sha256": "ab" * 32},
        "data": {
            "classes": list(classes),
            "label_mode": "single",
            "train": _images(project, train, targets),
            "test": _images(project, test, targets),
            "calibration": _images(project, calibration, targets),
        },
        "training": {
            "device": "cpu",
            "epochs_run": 1,
            "best_epoch": 1,
            "metrics": None,
            "stopped_early": False,
            "elapsed_s": 1.0,
        },
        "evaluation": {"metrics": {}, "confusion_matrix": None, "test_size": len(test)},
        "prompt_file": {"name": "prompt.safetensors", "sha256": "cd" * 32},
        "run_id": run_id,
        "calibration": calibration_block,
        "conformal": conformal_block,
    }
    folder = project.run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD).write_text(json.dumps(record), encoding="utf-8")
    artifacts = {
        "run_record": RECORD,
        "prompt_file": "prompt.safetensors",  # named, never loaded: the scores are stored
        "prompt_sha256": "cd" * 32,
    }
    project.finish_run(run_id, "finished", artifacts=artifacts)
    return run_id
