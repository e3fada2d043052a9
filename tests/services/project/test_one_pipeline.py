"""Folder training and project training are one pipeline: both fit through the model package's
``fit`` and both write an ept-studio-run/2 record that reads back with the same typed fields."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from support import tiny_backbone

from ept_studio.data.store import Project, Role
from ept_studio.services.model import fitting
from ept_studio.services.model.run_record import (
    RecordedImage,
    TrainingRecord,
    read_run_record,
)
from ept_studio.services.model.training import TrainingSaved, TrainRequest, train_on_folder
from ept_studio.services.project import ProjectTrainingSaved, import_paths, train_on_project

QUICK = {"epochs": 1, "batch_size": 8, "lr": 0.05, "device": "cpu"}


def _folder_run(class_folders: Path, out: Path) -> TrainingSaved:
    request = TrainRequest(
        class_folders, out, method={"method": "ept", "length": 4}, recipe=QUICK, shots=2
    )
    saved = list(train_on_folder(request, backbone=tiny_backbone()))[-1]
    assert isinstance(saved, TrainingSaved)
    return saved


def _project_run(class_folders: Path, tmp_path: Path) -> ProjectTrainingSaved:
    folder, locations = tmp_path / "project", tmp_path / "locations"
    with Project.create(folder, locations_dir=locations) as project:
        import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        ids = [i.id for i in project.images()]
        project.labels.set_role(ids[4:6] + ids[10:12], Role.TEST)
    events = train_on_project(
        folder,
        {"method": "ept", "length": 4},
        QUICK,
        seed=0,
        backbone=tiny_backbone(),
        locations_dir=locations,
    )
    saved = list(events)[-1]
    assert isinstance(saved, ProjectTrainingSaved)
    return saved


def test_both_routes_fit_through_the_one_shared_fit(
    class_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    shared = fitting.fit

    def spy(*args: Any, **kwargs: Any) -> Generator[object, None, Any]:
        calls.append(str(args[4]))
        return (yield from shared(*args, **kwargs))

    monkeypatch.setattr(fitting, "fit", spy)
    _folder_run(class_folders, tmp_path / "folder" / "chest.safetensors")
    assert calls == ["single"]
    _project_run(class_folders, tmp_path)
    assert calls == ["single", "single"]


def test_folder_and_project_runs_write_v2_records_with_the_same_fields(
    class_folders: Path, tmp_path: Path
) -> None:
    folder_saved = _folder_run(class_folders, tmp_path / "folder" / "chest.safetensors")
    project_saved = _project_run(class_folders, tmp_path)
    records = {
        "folder": read_run_record(folder_saved.run_record),
        "project": read_run_record(project_saved.run_record),
    }
    for source, record in records.items():
        assert isinstance(record, TrainingRecord)
        assert record.format == "ept-studio-run/2"
        assert record.source == source
        on_disk = json.loads(
            Path(
                folder_saved.run_record if source == "folder" else project_saved.run_record
            ).read_text(encoding="utf-8")
        )
        assert on_disk["format"] == "ept-studio-run/2"
        assert set(on_disk) == {f.name for f in dataclasses.fields(TrainingRecord)}
        assert record.data.classes == ("fundus", "histology")
        assert record.data.label_mode == "single"
        assert all(isinstance(image, RecordedImage) for image in record.data.train)
        assert all(isinstance(image.target, int) for image in record.data.test)
        assert record.training.device.lower().startswith("cpu")
        assert record.training.epochs_run >= 1
        assert set(record.evaluation.metrics) >= {"accuracy", "macro_auc"}
        assert record.evaluation.test_size == len(record.data.test)
        assert record.trainable_parameters > 0
        assert set(record.versions) >= {"ept_studio", "torch", "timm", "python"}
    folder, project = records["folder"], records["project"]
    assert folder.run_id is None
    assert project.run_id == project_saved.run_id
    assert len(folder.data.train) == 4
    assert folder.data.shots == 2
    assert folder.data.skipped_files == 0
    assert folder.data.copies_left_out == 0
    assert all(image.rendering is None for image in folder.data.train)
    assert len(project.data.train) == 8
    assert len(project.data.test) == 4
    assert project.data.shots is None
    assert all(image.rendering is not None for image in project.data.train)
    assert folder.prompt_file.sha256 == folder_saved.prompt_sha256
    assert project.prompt_file.sha256 == project_saved.prompt_sha256
    assert project.prompt_file.name == "prompt.safetensors"
