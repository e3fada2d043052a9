"""The Qt-free gallery service: items, thumbnails and counts from a real project."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ept_studio.services.project import Project, create_project, import_paths
from ept_studio.services.project.gallery import (
    GalleryFilter,
    GalleryView,
    class_counts,
    gallery_items,
    image_count,
    unlabelled_count,
)


@pytest.fixture
def project(samples: Path, tmp_path: Path) -> Iterator[Project]:
    with create_project(tmp_path / "project") as opened:
        import_paths(opened, [samples])
        yield opened


def test_items_carry_thumbnails_labels_and_no_paths(project: Project) -> None:
    items = gallery_items(project)
    assert len(items) == 8 == image_count(project)
    assert all(item.thumbnail is not None and item.thumbnail.is_file() for item in items)
    with Image.open(items[0].thumbnail) as thumbnail:  # type: ignore[arg-type]
        assert max(thumbnail.size) == 256
    captions = sorted(item.caption.split(" · ", 1)[1] for item in items)
    assert captions == ["unlabelled"] * 6 + ["unlabelled · CT", "unlabelled · MR"]
    assert all(item.caption.startswith(f"#{item.image_id} · ") for item in items)
    normal = project.labels.add_class("normal")
    project.labels.set_label([items[0].image_id], normal.id)
    assert gallery_items(project)[0].caption.split(" · ")[:2] == [f"#{items[0].image_id}", "normal"]
    assert not any("/" in item.caption or "studies" in item.caption for item in items)
    ct = next(item for item in items if item.caption.endswith(" · CT"))
    project.labels.set_label([ct.image_id], project.labels.add_class("CT").id)
    relabelled = next(item for item in gallery_items(project) if item.image_id == ct.image_id)
    assert relabelled.caption == f"#{ct.image_id} · CT"  # a class named as the modality: once


def test_filters_and_counts(project: Project) -> None:
    normal = project.labels.add_class("normal")
    ids = [item.image_id for item in gallery_items(project)]
    project.labels.set_label(ids[:3], normal.id)
    project.labels.set_role(ids[:1], "test")
    by_view = {
        view: len(gallery_items(project, GalleryFilter(view, normal.id))) for view in GalleryView
    }
    assert by_view == {
        GalleryView.ALL: 8,
        GalleryView.UNLABELLED: 5,
        GalleryView.CLASS: 3,
        GalleryView.TRAIN: 2,
        GalleryView.TEST: 1,
        GalleryView.MISCLASSIFIED: 0,  # no inference run yet
        GalleryView.UNCERTAIN: 0,
        GalleryView.IMAGES: 0,  # no image chosen
    }
    counts = class_counts(project)
    assert (counts[normal.id].train, counts[normal.id].test) == (2, 1)
    assert unlabelled_count(project) == 5
    labelled = gallery_items(project, GalleryFilter(GalleryView.TEST))[0]
    assert (labelled.class_ids, labelled.role) == ((normal.id,), "test")


def test_a_lost_thumbnail_is_rendered_again(project: Project) -> None:
    first = gallery_items(project)[0]
    assert first.thumbnail is not None
    first.thumbnail.unlink()
    again = gallery_items(project)[0]
    assert again.thumbnail == first.thumbnail
    assert again.thumbnail.is_file()
