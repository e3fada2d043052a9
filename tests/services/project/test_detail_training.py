"""Training with the detail view: the run records its size, the prompt file carries it, and the
scores training records for the test images are the ones inference gives from the saved file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support import tiny_backbone, write_class_folders

from ept_studio.core.prompt_file import read_prompt_file
from ept_studio.data.store import LabelMode, Role
from ept_studio.services.model.inference import load_tuned_model, predict_files
from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import Project, ProjectTrainingSaved, import_paths
from ept_studio.services.project.reports import write_model_card
from ept_studio.services.project.run_actions import trained_runs
from ept_studio.services.project.training import detail_size
from ept_studio.services.project.tuning import tune_project

OPTIONS = TrainingOptions(
    method="linear", recipe="default", epochs=2, batch_size=4, device="cpu", hold_out=False
)


def _project(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """Two classes of 6 real crops; the last two of each class are test images."""
    folders = write_class_folders(tmp_path / "data", per_class=6)
    locations = tmp_path / "locations"
    with Project.create(tmp_path / "project", locations_dir=locations) as project:
        import_paths(project, [folders], folders_as_classes=True, thumbnails=False)
        test = [i for i in project.images() if i.path and i.path.stem in ("img04", "img05")]
        project.labels.set_role([i.id for i in test], Role.TEST)
        return project.folder, locations, [i.path for i in test if i.path]


def _train(tmp_path: Path, options: TrainingOptions) -> tuple[ProjectTrainingSaved, Path, Path]:
    folder, locations, _ = _project(tmp_path)
    events = list(tune_project(folder, options, backbone=tiny_backbone(), locations_dir=locations))
    saved = events[-1]
    assert isinstance(saved, ProjectTrainingSaved)
    return saved, folder, locations


def test_a_run_with_the_detail_view_records_scores_that_inference_repeats(
    tmp_path: Path,
) -> None:
    saved, folder, locations = _train(tmp_path, OPTIONS)
    tensors, metadata = read_prompt_file(saved.prompt_file)
    assert metadata.detail_input_size == 64  # twice the tiny backbone's 32 px
    assert {"detail.weight", "detail.bias"} <= set(tensors)
    with Project.open(folder, locations_dir=locations) as project:
        assert project.run(saved.run_id).config["detail_size"] == 64
        [listed] = trained_runs(project)
        assert listed.label.startswith(f"Run {saved.run_id}: LINEAR + fine detail, accuracy")
        assert "training images seen at 64 px" in listed.tooltip
        recorded = {row.image_id: row.scores for row in project.predictions(saved.run_id)}
        paths = {image.id: image.path for image in project.images()}
    assert len(recorded) == 4
    card = write_model_card(folder, saved.run_id, tmp_path / "card.md").read_text("utf-8")
    assert "training images seen at 64 px (the fine-detail check)" in card
    handle = load_tuned_model(saved.prompt_file, backbone=tiny_backbone())
    assert handle.detail is not None
    predictions, skipped = predict_files(handle, [paths[i] for i in recorded])
    assert not skipped
    by_path = {p.path: p.scores for p in predictions}
    for image_id, scores in recorded.items():
        again = by_path[paths[image_id]]
        np.testing.assert_allclose(
            [again[name] for name in scores], list(scores.values()), atol=1e-5
        )


def test_a_run_without_it_saves_a_plain_model(tmp_path: Path) -> None:
    options = TrainingOptions(**{**OPTIONS.__dict__, "detail": False})
    saved, folder, locations = _train(tmp_path, options)
    tensors, metadata = read_prompt_file(saved.prompt_file)
    assert metadata.detail_input_size is None
    assert not any(name.startswith("detail.") for name in tensors)
    with Project.open(folder, locations_dir=locations) as project:
        assert project.run(saved.run_id).config["detail_size"] is None
        [listed] = trained_runs(project)
        assert "fine detail" not in listed.label + listed.tooltip
    card = write_model_card(folder, saved.run_id, tmp_path / "card.md").read_text("utf-8")
    assert "fine-detail" not in card


@pytest.mark.parametrize(
    ("asked", "mode", "expected"),
    [(True, LabelMode.SINGLE, 448), (True, LabelMode.MULTI, None), (False, LabelMode.SINGLE, None)],
)
def test_the_detail_size_is_twice_the_input_for_single_label_projects(
    asked: bool, mode: LabelMode, expected: int | None
) -> None:
    assert detail_size(asked, mode, 224) == expected
