"""The project knows it is the demo, and remembers its backbone: facts kept in its own meta table,
so they travel with the project folder and survive closing and reopening it."""

from __future__ import annotations

from pathlib import Path

from ept_studio.data.store import Project
from ept_studio.services.project import (
    create_demo_project,
    demo_info,
    is_demo_project,
    remember_backbone,
    remembered_backbone,
)


def test_the_demo_is_marked_and_the_mark_survives_reopening(tmp_path: Path) -> None:
    locations = tmp_path / "locations"
    summary = create_demo_project(tmp_path / "demo", locations_dir=locations, thumbnails=False)
    with Project.open(summary.project_folder, locations_dir=locations) as project:
        assert is_demo_project(project)
        info = demo_info(project)
    assert info is not None
    assert info.classes == ("CT", "MR", "US")
    assert info.train_counts == {"CT": 2, "MR": 2, "US": 2}
    assert (info.train_per_class, info.test_images) == (2, 12)
    assert info.points_per_test_image is not None
    assert round(info.points_per_test_image, 2) == 8.33
    again = create_demo_project(tmp_path / "demo", locations_dir=locations, exist_ok=True)
    with Project.open(again.project_folder, locations_dir=locations) as project:
        assert is_demo_project(project)


def test_a_new_project_is_not_the_demo(tmp_path: Path) -> None:
    locations = tmp_path / "locations"
    with Project.create(tmp_path / "mine", locations_dir=locations) as project:
        assert not is_demo_project(project)
        assert demo_info(project) is None
    with Project.open(tmp_path / "mine", locations_dir=locations) as project:
        assert not is_demo_project(project)


def test_the_chosen_backbone_survives_reopening_and_none_is_the_default(tmp_path: Path) -> None:
    locations, folder = tmp_path / "locations", tmp_path / "mine"
    with Project.create(folder, locations_dir=locations) as project:
        assert remembered_backbone(project) is None
        remember_backbone(project, "rad-dino")  # need not be on this computer
    with Project.open(folder, locations_dir=locations) as project:
        assert remembered_backbone(project) == "rad-dino"
        remember_backbone(project, None)
    with Project.open(folder, locations_dir=locations) as project:
        assert remembered_backbone(project) is None
