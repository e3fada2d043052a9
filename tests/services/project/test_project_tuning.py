"""The app's training run speaks the engine's own event vocabulary, and a cancel ends it quietly."""

from __future__ import annotations

from pathlib import Path

from support import tiny_backbone

from ept_studio.common.training_events import (
    EpochFinished,
    RunFinished,
    RunStarted,
    StepFinished,
)
from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import (
    Project,
    ProjectDataReady,
    ProjectTrainingSaved,
    import_paths,
)
from ept_studio.services.project.tuning import TuningCancelled, tune_project

OPTIONS = TrainingOptions(method="linear", recipe="paper", epochs=2, batch_size=4, device="cpu")


def _project(tmp_path: Path, class_folders: Path) -> tuple[Path, Path]:
    locations = tmp_path / "locations"
    with Project.create(tmp_path / "project", locations_dir=locations) as project:
        import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        return project.folder, locations


def test_a_run_yields_its_data_the_engines_events_and_the_saved_run(
    tmp_path: Path, class_folders: Path
) -> None:
    folder, locations = _project(tmp_path, class_folders)
    events = list(tune_project(folder, OPTIONS, backbone=tiny_backbone(), locations_dir=locations))
    kinds = [type(event) for event in events]
    assert kinds[:2] == [ProjectDataReady, RunStarted]
    assert kinds[-2:] == [RunFinished, ProjectTrainingSaved]
    started = events[1]
    assert isinstance(started, RunStarted)
    steps = [event.step for event in events if isinstance(event, StepFinished)]
    assert steps == list(range(1, started.total_steps + 1))
    assert kinds.count(EpochFinished) == started.total_epochs == 2


def test_a_cancel_ends_the_run_with_the_steps_done(tmp_path: Path, class_folders: Path) -> None:
    folder, locations = _project(tmp_path, class_folders)
    steps: list[int] = []
    events = []
    for event in tune_project(
        folder,
        OPTIONS,
        backbone=tiny_backbone(),
        cancel=lambda: len(steps) >= 2,
        locations_dir=locations,
    ):
        events.append(event)
        if isinstance(event, StepFinished):
            steps.append(event.step)
    ready = events[0]
    assert isinstance(ready, ProjectDataReady)
    assert steps == [1, 2]
    assert events[-1] == TuningCancelled(ready.run_id, 2)
    assert not any(isinstance(event, (RunFinished, ProjectTrainingSaved)) for event in events)


def _recorded_share(tmp_path: Path, per_class: int) -> float:
    from support import write_class_folders

    folders = write_class_folders(tmp_path / f"data-{per_class}", per_class=per_class)
    locations = tmp_path / "locations"
    with Project.create(tmp_path / f"project-{per_class}", locations_dir=locations) as project:
        import_paths(project, [folders], folders_as_classes=True, thumbnails=False)
        folder = project.folder
    options = TrainingOptions(method="linear", epochs=1, device="cpu", hold_out=False)
    events = list(tune_project(folder, options, backbone=tiny_backbone(), locations_dir=locations))
    assert isinstance(events[-1], ProjectTrainingSaved)
    with Project.open(folder, locations_dir=locations) as project:
        config = project.runs()[-1].config
    assert config["share_minimum"] == 5
    return float(config["recipe"]["trained_share"])


def test_the_app_keeps_half_of_the_training_from_five_images_a_class(tmp_path: Path) -> None:
    assert _recorded_share(tmp_path, per_class=5) == 0.5
    assert _recorded_share(tmp_path, per_class=4) == 1.0
