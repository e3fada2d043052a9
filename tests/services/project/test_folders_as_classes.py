"""Folders as classes: sub-folders become classes, their images are labelled, the rest reported."""

from __future__ import annotations

import shutil
from pathlib import Path

from ept_studio.services.project import (
    LabelMode,
    create_project,
    import_paths,
    open_project,
)
from ept_studio.services.project.gallery import class_counts


def _labels(project_folder: Path) -> dict[str, set[str]]:
    """file name -> class names, read back from a fresh connection."""
    with open_project(project_folder) as project:
        names = {info.id: info.name for info in project.labels.classes()}
        paths = {image.id: image.path for image in project.images()}
        found: dict[str, set[str]] = {}
        for label in project.labels.all():
            path = paths[label.image_id]
            assert path is not None
            found.setdefault(f"{path.parent.name}/{path.name}", set()).add(names[label.class_id])
        return found


def test_sub_folders_become_classes_with_their_counts(class_folders: Path, tmp_path: Path) -> None:
    (class_folders / "histology" / "readme.txt").write_text("notes\n", encoding="utf-8")
    with create_project(tmp_path / "project") as project:
        existing = project.labels.add_class("histology")  # an existing class is reused, not doubled
        report = import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
        assert report.labelled == {"fundus": 6, "histology": 6}
        assert [(p.name, why) for p, why in report.skipped] == [
            ("readme.txt", "not a DICOM, PNG, JPEG, TIFF or BMP file")
        ]
        assert [info.name for info in project.labels.classes()] == ["histology", "fundus"]
        counts = {c.name: (c.train, c.test) for c in class_counts(project).values()}
        assert counts == {"fundus": (6, 0), "histology": (6, 0)}
        assert project.labels.class_by_name("histology") == existing
        # one undo step per class folder, newest (histology, by name order) first
        assert len(project.labels.undo()) == 6
        counts = {c.name: c.total for c in class_counts(project).values()}
        assert counts == {"fundus": 6, "histology": 0}


def test_the_same_image_in_two_class_folders(class_folders: Path, tmp_path: Path) -> None:
    shutil.copy(class_folders / "fundus" / "img00.png", class_folders / "histology" / "copy.png")
    single, multi = tmp_path / "single", tmp_path / "multi"
    for folder, mode in ((single, LabelMode.SINGLE), (multi, LabelMode.MULTI)):
        with create_project(folder, mode) as project:
            import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
    # single-label: the first folder by name wins; multi-label: the image is in both classes
    assert _labels(single)["fundus/img00.png"] == {"fundus"}
    assert _labels(multi)["fundus/img00.png"] == {"fundus", "histology"}
    assert sum(len(classes) for classes in _labels(multi).values()) == 13
