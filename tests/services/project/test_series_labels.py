"""A series labelled, moved and split as one: every slice at once, in one undo step, on one side."""

from __future__ import annotations

from pathlib import Path

from labelled_projects import write_layout, write_series

from ept_studio.data.store import Project, Role
from ept_studio.services.project import (
    apply_test_split,
    check_readiness,
    import_paths,
    label_series,
    project_series,
    series_gallery_items,
    series_summary,
    set_series_role,
    suggest_test_split,
)
from ept_studio.services.project.readiness import Severity
from ept_studio.services.project.series import Series


def _project(tmp_path: Path, series: dict[str, int], loose: list[str | None]) -> Project:
    """Series named by folder with their slice counts (no patient ID), and loose images."""
    data = tmp_path / "data"
    for seed, (name, slices) in enumerate(series.items()):
        write_series(data / name, slices, patient="", seed=seed)
    write_layout(data, {"loose": loose})
    project = Project.create(tmp_path / "project", locations_dir=tmp_path / "locations")
    import_paths(project, [data], thumbnails=False)
    return project


def _multi(project: Project) -> list[Series]:
    return [one for one in project_series(project) if one.slice_count > 1]


def _labelled(project: Project) -> dict[int, tuple[int, Role]]:
    return {label.image_id: (label.class_id, label.role) for label in project.labels.all()}


def test_labelling_a_series_labels_every_slice_in_one_undo_step(tmp_path: Path) -> None:
    with _project(tmp_path, {"chest": 5, "head": 4}, ["P3", None]) as project:
        chest, head = sorted(_multi(project), key=lambda s: -s.slice_count)
        ct = project.labels.add_class("CT").id
        changed = label_series(project, [chest.key], ct)
        assert sorted(changed) == sorted(chest.image_ids)
        assert len(changed) == 5
        assert set(_labelled(project)) == set(chest.image_ids)
        assert set_series_role(project, [chest.key], Role.TEST) == chest.image_ids
        assert {role for _, role in _labelled(project).values()} == {Role.TEST}
        assert sorted(project.labels.undo()) == sorted(chest.image_ids)
        assert {role for _, role in _labelled(project).values()} == {Role.TRAIN}
        assert sorted(project.labels.undo()) == sorted(chest.image_ids)
        assert _labelled(project) == {}
        assert not project.labels.can_undo()
        both = label_series(project, [chest.key, head.key], ct, Role.TEST)
        assert len(both) == 9
        assert len(project.labels.undo()) == 9


def test_series_summary_and_tiles_count_slices_and_flag_mixed_labels(tmp_path: Path) -> None:
    with _project(tmp_path, {"chest": 5, "head": 3}, ["P3", None]) as project:
        chest, head = sorted(_multi(project), key=lambda s: -s.slice_count)
        ct = project.labels.add_class("CT").id
        mr = project.labels.add_class("MR").id
        label_series(project, [chest.key], ct)
        project.labels.set_label([head.images[0].id], mr)
        chest_summary, head_summary = series_summary(project, [chest, head])
        assert chest_summary.slice_count == 5
        assert chest_summary.class_ids == (ct,)
        assert chest_summary.labels_uniform
        assert chest_summary.role is Role.TRAIN
        assert head_summary.class_ids == (mr,)
        assert not head_summary.labels_uniform
        assert head_summary.representative_id == head.images[1].id
        tiles = series_gallery_items(project)
        assert len(tiles) == 4
        assert [tile.slice_count for tile in tiles] == [5, 3, 1, 1]
        by_count = {tile.slice_count: tile for tile in tiles}
        assert by_count[5].caption.endswith("· CT · 5 slices")
        assert by_count[5].image_id == chest.representative.id
        assert by_count[5].image_ids == chest.image_ids
        assert "mixed labels" in by_count[3].caption
        assert by_count[3].caption.endswith("3 slices")
        loose = [tile for tile in tiles if tile.slice_count == 1]
        assert len(loose) == 2
        assert all("slices" not in tile.caption for tile in loose)


def test_split_keeps_each_series_on_one_side_without_patient_ids(tmp_path: Path) -> None:
    layout = {f"a{n}": 4 for n in range(3)} | {f"b{n}": 4 for n in range(3)}
    with _project(tmp_path, layout, []) as project:
        series = sorted(_multi(project), key=lambda s: s.images[0].id)
        assert len(series) == 6
        assert all(one.patient_hash is None for one in series)
        a = project.labels.add_class("A").id
        b = project.labels.add_class("B").id
        label_series(project, [one.key for one in series[:3]], a)
        label_series(project, [one.key for one in series[3:]], b)
        for seed in range(5):
            split = suggest_test_split(project, fraction=0.3, seed=seed)
            moved = set(split.to_test)
            for one in series:
                assert len({image_id in moved for image_id in one.image_ids}) == 1
            assert split.test_counts == (4, 4)
            assert split.train_counts == (8, 8)
        apply_test_split(project, suggest_test_split(project, fraction=0.3))
        items = {item.key: item for item in check_readiness(project).items}
        assert "series-split" not in items


def test_checklist_blocks_a_series_on_both_sides_and_warns_of_a_one_series_class(
    tmp_path: Path,
) -> None:
    with _project(tmp_path, {"chest": 4, "head": 4}, ["P3", "P4", "P5"]) as project:
        chest, head = sorted(_multi(project), key=lambda s: s.images[0].id)
        loose = [one.images[0].id for one in project_series(project) if one.slice_count == 1]
        ct = project.labels.add_class("CT").id
        other = project.labels.add_class("Other").id
        label_series(project, [chest.key], ct)
        project.labels.set_label(loose, other)
        items = {item.key: item for item in check_readiness(project).items}
        warning = items["one-series:CT"]
        assert warning.severity is Severity.WARNING
        assert warning.text.startswith("All 4 training images of CT are slices of one series")
        assert "one-series:Other" not in items
        assert "series-split" not in items
        label_series(project, [head.key], ct)
        project.labels.set_role(head.image_ids[:2], Role.TEST)
        readiness = check_readiness(project)
        items = {item.key: item for item in readiness.items}
        assert "one-series:CT" not in items
        blocking = items["series-split"]
        assert blocking.severity is Severity.BLOCKING
        assert blocking.text.startswith("1 series has slices in both train and test")
        assert not readiness.ready
        set_series_role(project, [head.key], Role.TEST)
        assert "series-split" not in {item.key for item in check_readiness(project).items}
