"""Training takes at most ``slices_per_series`` slices of a series, evenly spaced, and never splits
a series between the images it trains on and those it holds out or calibrates on: real projects
of real CT series (``write_series``), a real run on the tiny backbone."""

from __future__ import annotations

from pathlib import Path

from labelled_projects import write_layout, write_series
from support import tiny_backbone

from ept_studio.data.store import Project, Role
from ept_studio.services.model.run_record import read_run_record
from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import ProjectTrainingSaved, import_paths, plan_training
from ept_studio.services.project import training as project_training
from ept_studio.services.project.series_sampling import evenly_spaced
from ept_studio.services.project.training import support_split, training_set
from ept_studio.services.project.tuning import tune_project

OPTIONS = TrainingOptions(
    method="ept", length=4, epochs=1, batch_size=8, device="cpu", slices_per_series=4
)


def _series_and_singles(tmp_path: Path) -> Project:
    """Brain: one 12-slice series; Bone: three single CT images of three patients."""
    root = write_layout(tmp_path / "data", {"Bone": ["P2", "P3", "P4"]})
    write_series(root / "Brain" / "ct", 12, patient="P1", seed=1)
    project = Project.create(tmp_path / "project", locations_dir=tmp_path / "locations")
    import_paths(project, [root], folders_as_classes=True, thumbnails=False)
    return project


def _slices_in_order(project: Project) -> list[tuple[int, str]]:
    slices = [image for image in project.images() if image.instance_number is not None]
    slices = [image for image in slices if image.path and image.path.parent.name == "ct"]
    ordered = sorted(slices, key=lambda image: image.instance_number or 0)
    return [(image.instance_number or 0, image.sha256) for image in ordered]


def test_evenly_spaced_positions() -> None:
    assert evenly_spaced(12, 4) == [0, 4, 7, 11]
    assert evenly_spaced(300, 8) == [0, 43, 85, 128, 171, 214, 256, 299]
    assert evenly_spaced(5, 1) == [2]
    assert evenly_spaced(3, 8) == [0, 1, 2]
    assert evenly_spaced(6, 0) == [0, 1, 2, 3, 4, 5]


def test_a_run_trains_on_four_evenly_spaced_slices_and_says_so(tmp_path: Path) -> None:
    with _series_and_singles(tmp_path) as project:
        slices = _slices_in_order(project)
        plan = plan_training(project, OPTIONS, gpu_names=())
    assert [number for number, _ in slices] == list(range(1, 13))
    assert plan.train_images == 4 + 3
    assert any(
        note.startswith("1 series of 12 slices: 4 slices taken from each (evenly spaced")
        and "8 slices are not trained on" in note
        for note in plan.notes
    ), plan.notes
    events = list(
        tune_project(
            tmp_path / "project",
            OPTIONS,
            backbone=tiny_backbone(),
            locations_dir=tmp_path / "locations",
        )
    )
    saved = events[-1]
    assert isinstance(saved, ProjectTrainingSaved), saved
    record = read_run_record(saved.run_record)
    trained = {image.sha256 for image in record.data.train}
    taken = {sha for number, sha in slices if sha in trained}
    assert taken == {sha for number, sha in slices if number in (1, 5, 8, 12)}
    assert len(record.data.train) == 7
    assert (record.data.slices_per_series, record.data.slices_not_taken) == (4, 8)
    with Project.open(tmp_path / "project", locations_dir=tmp_path / "locations") as project:
        config = project.run(saved.run_id).config
    assert (config["slices_per_series"], config["slices_not_taken"]) == (4, 8)


def test_every_slice_when_the_limit_is_off_or_not_reached(tmp_path: Path) -> None:
    with _series_and_singles(tmp_path) as project:
        assert len(training_set(project, 0).of_role(Role.TRAIN)) == 15
        assert len(training_set(project, 12).of_role(Role.TRAIN)) == 15
        assert training_set(project, 12).thinned == ()
        assert training_set(project, 3).thinned == ((12, 3),)


def _many_series(tmp_path: Path) -> Project:
    """Two classes of six 3-slice series each (each series its own patient)."""
    root = tmp_path / "data"
    for c, name in enumerate(("Brain", "Bone")):
        for s in range(6):
            write_series(root / name / f"s{s}", 3, patient=f"{name}{s}", seed=1 + c * 6 + s)
    project = Project.create(tmp_path / "project", locations_dir=tmp_path / "locations")
    import_paths(project, [root], folders_as_classes=True, thumbnails=False)
    return project


def test_held_out_and_calibration_images_are_whole_series(tmp_path: Path) -> None:
    with _many_series(tmp_path) as project:
        tset = training_set(project, 8)
        pairs = [(item, None) for item in tset.of_role(Role.TRAIN)]
        assert len(pairs) == 36
        for seed in range(5):
            support, held = support_split(pairs, True, seed, tset.label_mode)
            held_series = {item.unit for item, _ in held}
            assert len(held) == 6  # a fifth of each class's 6 series: 1 series, 3 slices, each
            assert len(held_series) == 2
            assert held_series.isdisjoint({item.unit for item, _ in support})
            calibration, scored = project_training.test_split(pairs, True, seed)
            assert len(calibration) == 18  # half of each class's 6 series, 3 slices each
            assert {i.unit for i, _ in calibration}.isdisjoint({i.unit for i, _ in scored})


def test_the_plan_counts_held_out_series(tmp_path: Path) -> None:
    with _many_series(tmp_path) as project:
        plan = plan_training(project, OPTIONS, gpu_names=())
    assert plan.train_images == 36
    assert plan.held_out == (3, 3)
    assert any(note.startswith("6 training images are kept aside") for note in plan.notes)
