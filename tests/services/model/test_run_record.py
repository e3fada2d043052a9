"""The run record: one schema (ept-studio-run/2) for folder and project runs, and its reader, which
migrates ept-studio-run/1 records of either kind in memory and refuses any other format."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ept_studio.common.errors import RunRecordError
from ept_studio.core.conformal import ConformalSets, NoPredictionSets
from ept_studio.core.temperature import Calibration, Uncalibrated
from ept_studio.services.model.run_record import (
    RUN_RECORD_FORMAT,
    RecordedImage,
    TrainingRecord,
    read_run_record,
    write_run_record,
)

SHA = {name: name[0] * 64 for name in ("alpha", "beta", "gamma", "delta", "epsilon")}
TRAINING_V1 = {
    "device": "CPU (2 threads)",
    "epochs_run": 3,
    "best_epoch": 3,
    "metrics": None,
    "stopped_early": False,
    "elapsed_s": 1.5,
    "lr_scale": 1.0,
    "warnings": [],
}
COMMON_V1: dict[str, Any] = {
    "format": "ept-studio-run/1",
    "created": "2024-01-01T00:00:00+00:00",
    "notice": "For research use only.",
    "machine": {"platform": "Linux", "processor": "x86_64"},
    "seed": 4,
    "method": {"method": "ept", "length": 20},
    "recipe": {"epochs": 3, "batch_size": 4, "seed": 4},
    "trainable_parameters": 1234,
    "backbone": {"name": "dinov2-vits14-imgfocus", "sha256": "f" * 64},
}


def folder_record_v1() -> dict[str, Any]:
    """A folder run's record as ``train_on_folder`` wrote it in format /1."""
    return {
        **COMMON_V1,
        "versions": {"ept_studio": "0.1", "torch": "2", "timm": "1", "python": "3.11"},
        "data": {
            "classes": ["fundus", "histology"],
            "shots": 1,
            "support": [
                {"sha256": SHA["alpha"], "class": "fundus"},
                {"sha256": SHA["beta"], "class": "histology"},
            ],
            "query": [
                {"sha256": SHA["gamma"], "class": "histology"},
                {"sha256": SHA["delta"], "class": "fundus"},
            ],
            "skipped_files": 2,
            "copies_left_out": 1,
        },
        "training": dict(TRAINING_V1),
        "evaluation": {
            "metrics": {"accuracy": 0.5},
            "confusion_matrix": [[1, 0], [1, 0]],
            "query_size": 2,
        },
        "prompt_file": {"name": "chest.safetensors", "sha256": "e" * 64},
    }


def project_record_v1() -> dict[str, Any]:
    """A project run's record as ``train_on_project`` wrote it in format /1."""
    spec = {"window": None, "policy": "file", "invert": None, "frame": 0}
    return {
        **COMMON_V1,
        "run_id": 7,
        "versions": {"ept_studio": "0.1", "torch": "2", "numpy": "2", "pydicom": "3"},
        "data": {
            "classes": ["fundus", "histology"],
            "label_mode": "multi",
            "train": [
                {"sha256": SHA["alpha"], "target": [1, 0], "rendering": spec},
                {"sha256": SHA["beta"], "target": [1, 1], "rendering": spec},
            ],
            "test": [{"sha256": SHA["epsilon"], "target": [0, 1], "rendering": spec}],
        },
        "training": {**TRAINING_V1, "validation_size": 0},
        "evaluation": {"metrics": {"macro_auc": 1.0}, "confusion_matrix": None, "test_size": 1},
        "prompt_file": {"name": "prompt.safetensors", "sha256": "d" * 64},
    }


def _write(path: Path, document: dict[str, Any]) -> str:
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    path.write_text(text, encoding="utf-8")
    return text


def test_a_v1_folder_record_is_read_as_v2_without_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "chest.run.json"
    before = _write(path, folder_record_v1())
    record = read_run_record(path)
    assert isinstance(record, TrainingRecord)
    assert record.format == RUN_RECORD_FORMAT == "ept-studio-run/2"
    assert record.source == "folder"
    assert record.run_id is None
    assert record.data.label_mode == "single"
    assert record.data.classes == ("fundus", "histology")
    assert record.data.train == (
        RecordedImage(SHA["alpha"], 0),
        RecordedImage(SHA["beta"], 1),
    )
    assert [(i.sha256, i.target) for i in record.data.test] == [
        (SHA["gamma"], 1),
        (SHA["delta"], 0),
    ]
    assert (record.data.shots, record.data.skipped_files, record.data.copies_left_out) == (1, 2, 1)
    assert record.evaluation.test_size == 2
    assert record.evaluation.confusion_matrix == [[1, 0], [1, 0]]
    assert record.training.validation_size == 0
    assert record.training.epochs_run == 3
    assert record.prompt_file.name == "chest.safetensors"
    assert record.backbone.sha256 == "f" * 64
    assert path.read_text(encoding="utf-8") == before, "reading must never rewrite the file"


def test_a_v1_project_record_is_read_as_v2(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    before = _write(path, project_record_v1())
    record = read_run_record(path)
    assert record.source == "project"
    assert record.run_id == 7
    assert record.data.label_mode == "multi"
    assert [i.target for i in record.data.train] == [(1, 0), (1, 1)]
    assert record.data.train[0].rendering == {
        "window": None,
        "policy": "file",
        "invert": None,
        "frame": 0,
    }
    assert record.data.shots is None
    assert record.data.skipped_files is None
    assert record.evaluation.test_size == 1
    assert record.evaluation.confusion_matrix is None
    assert record.versions["pydicom"] == "3"
    assert path.read_text(encoding="utf-8") == before


def test_a_v2_record_reads_back_as_written(tmp_path: Path) -> None:
    first = read_run_record(_path_with(tmp_path / "a.json", project_record_v1()))
    again = tmp_path / "b.json"
    write_run_record(again, first)
    assert json.loads(again.read_text(encoding="utf-8"))["format"] == "ept-studio-run/2"
    assert read_run_record(again) == first


def _path_with(path: Path, document: dict[str, Any]) -> Path:
    _write(path, document)
    return path


@pytest.mark.parametrize("found", ["ept-studio-run/3", "something-else/1", None])
def test_another_format_is_refused_naming_it_and_the_readable_ones(
    tmp_path: Path, found: str | None
) -> None:
    document = project_record_v1()
    if found is None:
        del document["format"]
    else:
        document["format"] = found
    path = _path_with(tmp_path / "run.json", document)
    with pytest.raises(RunRecordError) as caught:
        read_run_record(path)
    message = str(caught.value)
    assert (found or "no format") in message
    assert "ept-studio-run/1" in message
    assert "ept-studio-run/2" in message


def test_a_broken_record_is_refused_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RunRecordError, match=r"run\.json"):
        read_run_record(path)
    document = project_record_v1()
    del document["data"]["train"]
    with pytest.raises(RunRecordError, match="train"):
        read_run_record(_path_with(path, document))
    with pytest.raises(RunRecordError, match="cannot be read"):
        read_run_record(tmp_path / "missing.json")


def _v2_without_blocks(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "v2.json"
    write_run_record(path, read_run_record(_path_with(tmp_path / "v1.json", project_record_v1())))
    document = json.loads(path.read_text(encoding="utf-8"))
    for name in ("calibration", "conformal"):
        document.pop(name)
    document["data"].pop("calibration")
    return document


def test_a_v2_record_without_calibration_blocks_reads_as_not_recorded(tmp_path: Path) -> None:
    record = read_run_record(_path_with(tmp_path / "old.json", _v2_without_blocks(tmp_path)))
    assert record.calibration is None
    assert record.conformal is None
    assert record.data.calibration == ()


def test_calibration_blocks_and_calibration_images_round_trip(tmp_path: Path) -> None:
    document = _v2_without_blocks(tmp_path)
    document["data"]["calibration"] = [{"sha256": SHA["gamma"], "target": [0, 1]}]
    calibration = Calibration(
        temperature=1.7, images=12, source="test images", ece_before=0.2, ece_after=0.05
    )
    sets = ConformalSets(
        coverage=0.8,
        thresholds=(0.4, 0.6),
        mondrian=True,
        label_mode="multi",
        n=12,
        class_counts=(6, 7),
        guaranteed=True,
    )
    document["calibration"] = calibration.to_dict()
    document["conformal"] = sets.to_dict()
    record = read_run_record(_path_with(tmp_path / "new.json", document))
    assert record.calibration == calibration
    assert record.conformal == sets
    assert record.data.calibration == (RecordedImage(SHA["gamma"], (0, 1)),)
    again = tmp_path / "again.json"
    write_run_record(again, record)
    assert read_run_record(again) == record


def test_a_run_that_could_not_calibrate_records_why(tmp_path: Path) -> None:
    document = _v2_without_blocks(tmp_path)
    first = read_run_record(_path_with(tmp_path / "a.json", document))
    record = dataclasses.replace(
        first,
        calibration=Uncalibrated("scores are uncalibrated: only 3 held-out images", 3),
        conformal=NoPredictionSets("no prediction sets: only 3 held-out images"),
    )
    path = tmp_path / "b.json"
    write_run_record(path, record)
    written = json.loads(path.read_text(encoding="utf-8"))
    assert written["calibration"] == {
        "reason": "scores are uncalibrated: only 3 held-out images",
        "images": 3,
    }
    assert written["conformal"] == {"reason": "no prediction sets: only 3 held-out images"}
    assert read_run_record(path) == record
