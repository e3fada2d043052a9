"""The predictions CSV and the model card of a real training run on DICOMs full of PHI markers:
the right rows and numbers, the research-use notice, the exports recorded, and no marker in them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from phi_support import MARKERS, leaks, write_phi_folder
from support import tiny_backbone

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.data.store import Project, Role
from ept_studio.services.project import ProjectTrainingSaved, import_paths, train_on_project
from ept_studio.services.reports import export_predictions_csv, write_model_card
from ept_studio.services.results import run_results


def test_csv_and_model_card_of_a_training_run_carry_numbers_but_no_phi(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sources = write_phi_folder(tmp_path / "PHIMARK1234_sources")
    folder, locations = tmp_path / "project", tmp_path / "locations"
    with Project.create(folder, locations_dir=locations) as project:
        import_paths(project, [sources], folders_as_classes=True)
        ids = [image.id for image in project.images()]
        project.set_role([ids[0], ids[2], ids[4], ids[6]], Role.TEST)
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
    assert exports == [("predictions-csv", "preds.csv"), ("model-card", "card.md")]
    lines = table.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"# {RESEARCH_USE_NOTICE}"
    rows = list(csv.DictReader(lines[1:]))
    assert list(rows[0]) == [
        "image",
        "sha256_prefix",
        "role",
        "label",
        "predicted_class",
        "score_ct",
        "score_mr",
    ]
    assert len(rows) == 4
    for row, image_id in zip(rows, sorted([ids[0], ids[2], ids[4], ids[6]]), strict=True):
        image = images[image_id]
        assert row["image"] == f"#{image_id} {image.modality} {image.columns}×{image.rows}"
        assert row["sha256_prefix"] == image.sha256[:12]
        assert (row["role"], row["label"]) == ("test", "ct" if image_id in ids[:4] else "mr")
        scores = {"ct": float(row["score_ct"]), "mr": float(row["score_mr"])}
        assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
        assert row["predicted_class"] == max(scores, key=scores.__getitem__)
    text = card.read_text(encoding="utf-8")
    assert RESEARCH_USE_NOTICE in text
    assert tiny_backbone().weights_sha256 in text
    assert "| ct | 2 | 2 |" in text
    assert "| mr | 2 | 2 |" in text
    assert "Modalities: CT: 4, MR: 4." in text
    assert results.scores is not None
    accuracy = results.scores.accuracy
    assert f"- Accuracy: {accuracy.value:.3f} ({accuracy.low:.3f}-{accuracy.high:.3f})" in text
    assert "patients appear in both train and test (2 patients)" in text
    assert "evaluation set is tiny (n = 4 < 20)" in text
    assert "- torch: " in text
    assert leaks([table, card]) == []
    assert all(m not in caplog.text for m in MARKERS)
