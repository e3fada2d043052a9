"""Calibration from training to every file the user gets: the run record, the prompt file, its ONNX
export, ``predict`` on both paths, the predictions CSV and its notice, the model card."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from support import tiny_backbone, write_class_folders

from ept_studio.cli import main
from ept_studio.cli.console import Console
from ept_studio.core.conformal import ConformalSets, NoPredictionSets
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.core.prompt_file import read_prompt_file
from ept_studio.core.temperature import Calibration, Uncalibrated
from ept_studio.data.store import Project, Role
from ept_studio.services.model import export_prompt_to_onnx, load_tuned_model, predict_files
from ept_studio.services.model.run_record import read_run_record
from ept_studio.services.project import (
    ProjectTrainingSaved,
    export_predictions_csv,
    import_paths,
    train_on_project,
    write_model_card,
)

QUICK = {"epochs": 2, "batch_size": 8, "lr": 0.05, "device": "cpu"}


def _project(
    tmp_path: Path, per_class: int, test_per_class: int, *, own_locations: bool = True
) -> tuple[Path, Path | None]:
    data = write_class_folders(tmp_path / "data", per_class=per_class, size=48)
    folder = tmp_path / "project"
    locations = tmp_path / "locations" if own_locations else None
    with Project.create(folder, locations_dir=locations) as project:
        import_paths(project, [data], folders_as_classes=True, thumbnails=False)
        ids = [i.id for i in project.images()]
        test = ids[:test_per_class] + ids[per_class : per_class + test_per_class]
        project.labels.set_role(test, Role.TEST)
    return folder, locations


def _train(folder: Path, locations: Path | None, **options: object) -> ProjectTrainingSaved:
    events = train_on_project(
        folder,
        {"method": "ept", "length": 4},
        QUICK,
        seed=0,
        backbone=tiny_backbone(),
        locations_dir=locations,
        **options,  # type: ignore[arg-type]
    )
    saved = list(events)[-1]
    assert isinstance(saved, ProjectTrainingSaved)
    return saved


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path | None, Path]:
    """25 training images a class (5 held out each: 10 calibration images), 4 test a class."""
    tmp_path = tmp_path_factory.mktemp("calibrated")
    folder, locations = _project(tmp_path, per_class=29, test_per_class=4)
    saved = _train(folder, locations, hold_out=True, coverage=0.9)
    return folder, locations, saved.prompt_file


def test_held_out_images_calibrate_the_record_the_prompt_file_and_the_onnx_export(
    calibrated_run: tuple[Path, Path | None, Path], tmp_path: Path
) -> None:
    _, _, prompt = calibrated_run
    record = read_run_record(prompt.with_name("run.json"))
    assert isinstance(record.calibration, Calibration)
    assert record.calibration.images == 10
    assert record.calibration.source == "held-out training images"
    assert isinstance(record.conformal, ConformalSets)
    assert record.conformal.coverage == 0.9
    assert record.conformal.n == 10
    assert record.data.calibration == ()
    assert len(record.data.test) == 8
    _, metadata = read_prompt_file(prompt)
    assert metadata.calibration == record.calibration
    assert metadata.conformal == record.conformal
    onnx = tmp_path / "model.onnx"
    export_prompt_to_onnx(prompt, onnx, backbone=tiny_backbone())
    info = OnnxRunner(onnx, device="cpu").info
    assert info.calibration == record.calibration
    assert info.conformal == record.conformal


def test_predict_onnx_prints_the_same_sets_as_the_torch_path(
    calibrated_run: tuple[Path, Path | None, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, _, prompt = calibrated_run
    images = sorted((prompt.parents[3] / "data").rglob("*.png"))[:6]
    handle = load_tuned_model(prompt, backbone=tiny_backbone())
    torch_predictions, _ = predict_files(handle, images)
    assert all(p.prediction_set is not None for p in torch_predictions)
    onnx = tmp_path / "model.onnx"
    export_prompt_to_onnx(prompt, onnx, backbone=tiny_backbone())
    table = tmp_path / "sets.csv"
    capsys.readouterr()
    assert main(["predict", *map(str, images), "--onnx", str(onnx), "--csv", str(table)]) == 0
    out = capsys.readouterr()
    printed = [line.split("\t")[3] for line in out.out.splitlines()]
    expected = [
        f"set: {' | '.join(p.prediction_set or ()) or '(no class)'}" for p in torch_predictions
    ]
    assert printed == expected
    assert "prediction sets at 90 %" in out.err
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [row["prediction_set"] for row in rows] == [
        " | ".join(p.prediction_set or ()) for p in torch_predictions
    ]


def test_the_csv_and_the_card_of_a_calibrated_run_carry_its_sets(
    calibrated_run: tuple[Path, Path | None, Path], tmp_path: Path
) -> None:
    folder, locations, prompt = calibrated_run
    record = read_run_record(prompt.with_name("run.json"))
    assert isinstance(record.conformal, ConformalSets)
    run_id = record.run_id
    assert run_id is not None
    table = export_predictions_csv(folder, run_id, tmp_path / "p.csv", locations_dir=locations)
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert rows
    assert all(row["prediction_set"] for row in rows)
    readme = (tmp_path / "p.README.txt").read_text(encoding="utf-8")
    assert "prediction_set" in readme
    assert "90 %" in readme
    assert record.conformal.statement in readme
    card = write_model_card(folder, run_id, tmp_path / "card.md", locations_dir=locations)
    text = card.read_text(encoding="utf-8")
    assert "Calibrated on 10 held-out training images" in text
    assert f"temperature {record.calibration.temperature:.3f}" in text  # type: ignore[union-attr]
    assert record.conformal.statement in text


def test_too_few_held_out_images_record_why_and_leave_the_sets_empty(tmp_path: Path) -> None:
    folder, locations = _project(tmp_path, per_class=9, test_per_class=3)
    saved = _train(folder, locations, hold_out=True)
    record = read_run_record(saved.run_record)
    assert isinstance(record.calibration, Uncalibrated)
    assert "only 2 held-out images" in record.calibration.reason
    assert isinstance(record.conformal, NoPredictionSets)
    _, metadata = read_prompt_file(saved.prompt_file)
    assert metadata.calibration is None
    assert metadata.conformal is None
    table = export_predictions_csv(
        folder, saved.run_id, tmp_path / "p.csv", locations_dir=locations
    )
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert rows
    assert all(row["prediction_set"] == "" for row in rows)
    readme = (tmp_path / "p.README.txt").read_text(encoding="utf-8")
    assert "no prediction sets" in readme
    card = write_model_card(folder, saved.run_id, tmp_path / "c.md", locations_dir=locations)
    text = card.read_text(encoding="utf-8")
    assert "uncalibrated" in text
    assert "only 2 held-out images" in text


def test_calibrating_on_test_images_keeps_them_out_of_the_recorded_test_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    folder, locations = _project(tmp_path, per_class=14, test_per_class=10, own_locations=False)
    monkeypatch.setattr("ept_studio.core.backbones.load_backbone", lambda *a, **k: tiny_backbone())
    with Project.open(folder, locations_dir=locations) as project:
        test_hashes = {
            image.sha256
            for image in project.images()
            if project.labels.of(image.id)[0].role is Role.TEST
        }
    code = main(
        [
            "train",
            "--project",
            str(folder),
            "--method",
            "linear",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--calibrate-on-test",
            "--coverage",
            "0.8",
        ]
    )
    assert code == 0
    record = read_run_record(folder / "runs" / "1" / "run.json")
    calibration = {image.sha256 for image in record.data.calibration}
    test = {image.sha256 for image in record.data.test}
    assert len(calibration) == len(test) == 10
    assert not calibration & test
    assert calibration | test == test_hashes
    assert record.evaluation.test_size == 10
    assert isinstance(record.calibration, Calibration)
    assert record.calibration.source == "a seeded half of each class's test images"
    assert isinstance(record.conformal, ConformalSets)
    assert record.conformal.coverage == 0.8


def test_the_cli_prints_uncalibrated_scores_as_such(capsys: pytest.CaptureFixture[str]) -> None:
    from ept_studio.cli import onnx as cli_onnx

    err = io.StringIO()
    cli_onnx.show_predictions([], Console(io.StringIO(), err))
    assert "scores are uncalibrated" in err.getvalue()
