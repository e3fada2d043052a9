"""The same image on both sides of a project's split: found by decoded pixels, named, blocking."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom.data
import pytest
from PIL import Image
from support import tiny_backbone, write_class_folders

from ept_studio.common.errors import DatasetError
from ept_studio.data.pixel_hash import file_pixel_sha256
from ept_studio.services.project import Project, Role, import_paths
from ept_studio.services.project.duplicates import pixel_duplicates
from ept_studio.services.project.readiness import Severity, check_readiness
from ept_studio.services.project.test_split import suggest_test_split
from ept_studio.services.project.training import train_on_project

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


def _write_data(root: Path) -> Path:
    """``mr``: MR_small, the same pixels RLE-compressed, and CT_small; ``png``: three crops."""
    (root / "mr").mkdir(parents=True)
    for name in ("MR_small.dcm", "MR_small_RLE.dcm", "CT_small.dcm"):
        shutil.copy(PYDICOM_FILES / name, root / "mr" / name)
    write_class_folders(root / "tmp", per_class=3)
    shutil.move(root / "tmp" / "fundus", root / "png")
    shutil.rmtree(root / "tmp")
    return root


def _project(tmp_path: Path) -> tuple[Project, dict[str, int]]:
    """The data imported as classes, MR_small_RLE (and one PNG) in the test role; name -> id."""
    root = _write_data(tmp_path / "data")
    project = Project.create(tmp_path / "project", locations_dir=tmp_path / "locations")
    import_paths(project, [root], folders_as_classes=True, thumbnails=False)
    ids = {image.path.name: image.id for image in project.images() if image.path is not None}
    project.labels.set_role([ids["MR_small_RLE.dcm"], ids["img02.png"]], Role.TEST)
    return project, ids


def test_import_stores_the_decoded_pixel_hash_of_every_image(tmp_path: Path) -> None:
    project, ids = _project(tmp_path)
    with project:
        stored = project.pixel_hashes()
    assert sorted(stored) == sorted(ids.values())
    assert stored[ids["MR_small.dcm"]] == stored[ids["MR_small_RLE.dcm"]]
    assert stored[ids["MR_small.dcm"]] == (0, file_pixel_sha256(PYDICOM_FILES / "MR_small.dcm"))
    assert len({value for _, value in stored.values()}) == 5


def test_the_same_pixels_in_train_and_test_are_one_group(tmp_path: Path) -> None:
    project, ids = _project(tmp_path)
    with project:
        [group] = pixel_duplicates(project)
    assert group.train_ids == (ids["MR_small.dcm"],)
    assert group.test_ids == (ids["MR_small_RLE.dcm"],)
    assert group.straddles


def test_the_checklist_blocks_and_names_the_images(tmp_path: Path) -> None:
    project, ids = _project(tmp_path)
    with project:
        readiness = check_readiness(project)
    first, second = ids["MR_small.dcm"], ids["MR_small_RLE.dcm"]
    [item] = [item for item in readiness.items if item.key.startswith("duplicates")]
    assert item.key == f"duplicates:#{first}"
    assert item.severity is Severity.BLOCKING
    assert item.text == (
        f"#{first} and #{second} are the same image, one in train and one in test: "
        "move them to one side."
    )
    assert not readiness.ready


def test_both_on_one_side_is_no_blocker(tmp_path: Path) -> None:
    project, ids = _project(tmp_path)
    with project:
        project.labels.set_role([ids["MR_small_RLE.dcm"]], Role.TRAIN)
        [group] = pixel_duplicates(project)
        readiness = check_readiness(project)
    assert group.train_ids == (ids["MR_small.dcm"], ids["MR_small_RLE.dcm"])
    assert not group.straddles
    assert readiness.ready
    assert not [item for item in readiness.items if item.key.startswith("duplicates")]


def test_an_older_project_gets_its_missing_hashes_when_first_checked(tmp_path: Path) -> None:
    project, ids = _project(tmp_path)
    with project:
        project.db.execute("DELETE FROM pixel_hashes")
        assert project.pixel_hashes() == {}
        [group] = pixel_duplicates(project)
        assert group.test_ids == (ids["MR_small_RLE.dcm"],)
        assert sorted(project.pixel_hashes()) == sorted(ids.values())


def test_training_refuses_what_the_checklist_blocks(tmp_path: Path) -> None:
    """The service keeps the checklist's rule: a run started anyway (the CLI, a script) stops
    before anything is recorded, with the same words."""
    project, _ = _project(tmp_path)
    with project:
        text = check_readiness(project).items
    blocked = next(item.text for item in text if item.key.startswith("duplicates"))
    events = train_on_project(
        project.folder,
        {"method": "linear"},
        {"preset": "paper", "epochs": 1},
        backbone=tiny_backbone(),
        locations_dir=tmp_path / "locations",
    )
    with pytest.raises(DatasetError) as refused:
        next(events)
    assert str(refused.value) == blocked
    with Project.open(project.folder, locations_dir=tmp_path / "locations") as reopened:
        assert reopened.runs() == []


def test_split_for_me_keeps_one_image_on_one_side(tmp_path: Path) -> None:
    """Two PNG files with the same pixels (no patient to group them by) move together."""
    root = tmp_path / "data"
    write_class_folders(root, per_class=5)
    with Image.open(root / "fundus" / "img00.png") as original:
        original.save(root / "fundus" / "twin.png", compress_level=1)  # other bytes, same pixels
    assert (root / "fundus" / "twin.png").read_bytes() != (
        root / "fundus" / "img00.png"
    ).read_bytes()
    project = Project.create(tmp_path / "project", locations_dir=tmp_path / "locations")
    with project:
        import_paths(project, [root], folders_as_classes=True, thumbnails=False)
        ids = {
            f"{image.path.parent.name}/{image.path.name}": image.id
            for image in project.images()
            if image.path is not None
        }
        twins = {ids["fundus/img00.png"], ids["fundus/twin.png"]}
        together = 0
        for seed in range(12):
            moved = set(suggest_test_split(project, fraction=0.4, seed=seed).to_test)
            assert len(moved & twins) in (0, 2), f"seed {seed} split one image across sides"
            together += len(moved & twins) == 2
    assert together > 0  # the pair was drawn for testing at least once, as one
