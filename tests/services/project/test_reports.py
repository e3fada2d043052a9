"""The predictions CSV and the model card of a real training run on DICOMs full of PHI markers:
the right rows and numbers, the research-use notice, the exports recorded, and no marker in them."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from phi_support import MARKERS, leaks, write_phi_folder
from support import tiny_backbone

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.data.store import PredictionRow, Project, Role
from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import (
    ProjectTrainingSaved,
    import_paths,
    train_on_project,
)
from ept_studio.services.project.inference import ProjectPredicted
from ept_studio.services.project.reports import (
    export_predictions_csv,
    readme_path,
    write_model_card,
)
from ept_studio.services.project.results import (
    ResultsScope,
    load_run_record,
    run_results,
    scope_summary,
)
from ept_studio.services.project.run_actions import predict_with_run
from ept_studio.services.project.tuning import tune_project


def test_csv_and_model_card_of_a_training_run_carry_numbers_but_no_phi(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sources = write_phi_folder(tmp_path / "PHIMARK1234_sources")
    folder, locations = tmp_path / "project", tmp_path / "locations"
    with Project.create(folder, locations_dir=locations) as project:
        import_paths(project, [sources], folders_as_classes=True)
        ids = [image.id for image in project.images()]
        project.labels.set_role([ids[0], ids[2], ids[4], ids[6]], Role.TEST)
        events = list(
            train_on_project(
                folder,
                {"method": "ept", "length": 4},
                {"epochs": 1, "batch_size": 4, "device": "cpu"},
                backbone=tiny_backbone(),
                locations_dir=locations,
            )
        )
        saved = events[-1]
        assert isinstance(saved, ProjectTrainingSaved)
        results = run_results(project, saved.run_id)
        table = export_predictions_csv(project, saved.run_id, tmp_path / "out" / "preds.csv")
        card = write_model_card(folder, saved.run_id, tmp_path / "out" / "card.md")
        exports = [(e.kind, e.file_name) for e in project.exports(saved.run_id)]
        images = {image.id: image for image in project.images()}
        assert leaks(sorted(p for p in folder.rglob("*") if p.is_file())) == []
    assert exports == [("predictions-csv", "predictions.csv"), ("model-card", "model-card.md")]
    lines = table.read_text(encoding="utf-8").splitlines()
    rows = list(csv.DictReader(lines))
    assert list(rows[0]) == [
        "image_id",
        "sha256",
        "role",
        "label",
        "trained_on",
        "predicted_class",
        "score_ct",
        "score_mr",
        "prediction_set",
    ]
    assert len(rows) == 4
    for row, image_id in zip(rows, sorted([ids[0], ids[2], ids[4], ids[6]]), strict=True):
        image = images[image_id]
        assert (row["image_id"], row["sha256"]) == (str(image_id), image.sha256)
        assert (row["role"], row["label"]) == ("test", "ct" if image_id in ids[:4] else "mr")
        assert row["trained_on"] == "no"
        scores = {"ct": float(row["score_ct"]), "mr": float(row["score_mr"])}
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted_class"] == max(scores, key=scores.__getitem__)
    readme = readme_path(table)
    assert readme.name == "preds.README.txt"
    notes = readme.read_text(encoding="utf-8")
    assert notes.startswith(RESEARCH_USE_NOTICE)
    assert f"Model: training run {saved.run_id}" in notes
    assert "Images: 4 predicted; 0 of them the model was trained on" in notes
    text = card.read_text(encoding="utf-8")
    assert RESEARCH_USE_NOTICE in text
    assert tiny_backbone().weights_sha256 in text
    assert "| ct | 2 | 2 |" in text
    assert "| mr | 2 | 2 |" in text
    assert "Modalities: CT: 4, MR: 4." in text
    assert results.scores is not None
    accuracy = results.scores.accuracy
    assert f"- Accuracy: {accuracy.value:.3f} ({accuracy.low:.3f}-{accuracy.high:.3f})" in text
    assert "Scored on 4 test images (not trained on);" in text
    assert "- Tuning method: Embedded Prompt Tuning (EPT), 4 prompts in every block" in text
    assert "`{" not in text  # no raw JSON
    assert "patients appear in both train and test (2 patients)" in text
    assert "evaluation set is tiny (n = 4 < 20)" in text
    assert "- torch: " in text
    assert leaks([table, readme, card]) == []
    assert all(m not in caplog.text for m in MARKERS)


def _trained_and_predicted(folder: Path, class_folders: Path, locations: Path) -> tuple[int, int]:
    """12 images, 1 test image a class; 10 trained on (2 of them held out to pick the epoch);
    then every image predicted. (model run, inference run)."""
    with Project.create(folder, locations_dir=locations) as project:
        import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        ids = [image.id for image in project.images()]
        project.labels.set_role([ids[5], ids[11]], Role.TEST)
    options = TrainingOptions(method="ept", length=4, epochs=2, batch_size=4, device="cpu")
    trained = list(tune_project(folder, options, backbone=tiny_backbone(), locations_dir=locations))
    saved = trained[-1]
    assert isinstance(saved, ProjectTrainingSaved)
    events = list(
        predict_with_run(folder, saved.run_id, backbone=tiny_backbone(), locations_dir=locations)
    )
    predicted = events[-1]
    assert isinstance(predicted, ProjectPredicted)
    assert predicted.predicted == 12
    return saved.run_id, predicted.run_id


def test_after_predicting_every_image_no_export_scores_a_training_image(
    tmp_path: Path, class_folders: Path
) -> None:
    folder, locations = tmp_path / "project", tmp_path / "locations"
    model_run, inference = _trained_and_predicted(folder, class_folders, locations)
    with Project.open(folder, locations_dir=locations) as project:
        record = load_run_record(project, project.run(model_run))
        tested = run_results(project, inference)
        training = run_results(project, inference, scope=ResultsScope.TRAINING)
        model = run_results(project, model_run)
        by_id = {image.id: image for image in project.images()}
    assert record is not None
    assert record.training.validation_size == 2  # the held-out fifth is trained-on too
    assert len(record.data.train) == 10
    assert (len(tested.images), tested.trained_on, tested.not_scored) == (12, 10, 10)
    assert tested.evaluated == 2
    assert (
        scope_summary(tested) == "on 2 test images (not trained on); 10 training images not scored"
    )
    assert training.evaluated == 10
    assert scope_summary(training).startswith("on 10 training images: not a test")
    assert tested.scores is not None
    assert model.scores is not None
    assert tested.scores.accuracy.value == pytest.approx(model.scores.accuracy.value)

    card = write_model_card(
        folder, model_run, tmp_path / "card.md", predictions_run=inference, locations_dir=locations
    )
    text = card.read_text(encoding="utf-8")
    assert text.startswith(f"# Model card: run {model_run} (Embedded Prompt Tuning (EPT))")
    assert "Scored on 2 test images (not trained on);" in text
    assert f"Run {inference} predicted 12 images with this model; the 10 it was trained on" in text
    assert "on 12 " not in text
    assert "on 10 test" not in text
    epochs, minimum = record.training.epochs_run, record.recipe["min_steps"]
    assert (epochs, minimum, record.recipe["epochs"]) == (
        25,
        50,
        2,
    )  # 8 fitted: 2 steps an epoch
    assert (
        "- Training as it ran: 25 epochs, 50 optimiser steps (batch size 4); 2 epochs asked for, "
        "raised to reach 50 steps" in text
    )

    # the card of an inference run is the card of its model, with the later predictions
    again = write_model_card(folder, inference, tmp_path / "again.md", locations_dir=locations)
    assert again.read_text(encoding="utf-8") == text

    table = export_predictions_csv(folder, inference, tmp_path / "p.csv", locations_dir=locations)
    rows = list(csv.DictReader(table.read_text(encoding="utf-8").splitlines()))
    trained = {image.sha256 for image in record.data.train}
    assert len(rows) == 12
    assert sum(row["trained_on"] == "yes" for row in rows) == 10
    for row in rows:
        assert (row["trained_on"] == "yes") == (row["sha256"] in trained)
        assert row["sha256"] == by_id[int(row["image_id"])].sha256
    notes = readme_path(table).read_text(encoding="utf-8")
    assert "Images: 12 predicted; 10 of them the model was trained on" in notes
    assert "relative_path" not in rows[0]


def test_relative_paths_only_when_asked_and_never_absolute(
    tmp_path: Path, class_folders: Path
) -> None:
    locations = tmp_path / "locations"
    with Project.create(tmp_path / "project", locations_dir=locations) as project:
        import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        images = project.images()
        run_id = project.record_run(
            config={"kind": "inference", "class_names": ["fundus", "histology"]},
            seed=0,
            versions={},
            backbone="tiny",
            backbone_sha256="ab" * 32,
        )
        scores = {"fundus": 0.6, "histology": 0.4}
        empty = np.zeros((0, 0), dtype=np.float32)
        project.record_predictions(
            run_id, [PredictionRow(i.id, "fundus", scores, empty) for i in images]
        )
        table = export_predictions_csv(project, run_id, tmp_path / "p.csv", relative_paths=True)
        expected = {
            str(i.id): i.path.relative_to(class_folders).as_posix() for i in images if i.path
        }
    rows = list(csv.DictReader(table.read_text(encoding="utf-8").splitlines()))
    assert {row["image_id"]: row["relative_path"] for row in rows} == expected
    assert sorted(expected.values())[:2] == ["fundus/img00.png", "fundus/img01.png"]
    assert str(tmp_path) not in table.read_text(encoding="utf-8")
    # no run record: the train role (every image here) stands for the trained-on images
    assert all(row["trained_on"] == "yes" for row in rows)
    assert "from the train role the images have now" in readme_path(table).read_text("utf-8")
