""" "Split for me" on real projects: whole patients per side, every class on both, one undo."""

from __future__ import annotations

from pathlib import Path

import pytest
from labelled_projects import labelled_project, role_counts, roles_by_patient

from ept_studio.common.errors import ConfigError
from ept_studio.data.store import Role
from ept_studio.services.project.test_split import apply_test_split, suggest_test_split

LAYOUT: dict[str, list[str | None]] = {
    "fundus": ["P1", "P1", "P1", "P2", "P2", "P3", None, None, None, None],
    "histology": ["P4", "P4", "P5", "P6", None, None, None, None, None, None],
    "xray": ["P7", "P7", "P8", "P8", "P9"],
}
"""25 images: 9 patients (two, P1 and P4, with 2-3 images of one class) and 13 without one."""


def test_the_split_keeps_patients_whole_and_every_class_on_both_sides(tmp_path: Path) -> None:
    with labelled_project(tmp_path, LAYOUT) as project:
        split = suggest_test_split(project)
        assert (split.train_counts, split.test_counts) == ((8, 8, 4), (2, 2, 1))
        assert split.test_images == len(split.to_test) == 5  # 20 % of 25
        assert apply_test_split(project, split) == split.to_test
        assert role_counts(project) == {"fundus": (8, 2), "histology": (8, 2), "xray": (4, 1)}
        sides = roles_by_patient(project)
    assert len(sides) == 9
    assert all(len(roles) == 1 for roles in sides.values())


def test_the_same_seed_gives_the_same_split(tmp_path: Path) -> None:
    with labelled_project(tmp_path, LAYOUT) as project:
        first = suggest_test_split(project, seed=3)
        assert suggest_test_split(project, seed=3) == first
        others = {suggest_test_split(project, seed=seed).to_test for seed in range(6)}
    assert len(others) > 1  # the seed chooses which patients, not how many


def test_one_undo_reverts_the_whole_split(tmp_path: Path) -> None:
    with labelled_project(tmp_path, LAYOUT) as project:
        before = sorted((lb.image_id, lb.role) for lb in project.labels.all())
        apply_test_split(project, suggest_test_split(project))
        assert sum(lb.role is Role.TEST for lb in project.labels.all()) == 5
        assert project.labels.undo()
        assert sorted((lb.image_id, lb.role) for lb in project.labels.all()) == before
        assert project.labels.redo()
        assert sum(lb.role is Role.TEST for lb in project.labels.all()) == 5


def test_a_class_of_one_patient_keeps_it_for_training(tmp_path: Path) -> None:
    layout: dict[str, list[str | None]] = {
        "fundus": [None] * 5,
        "histology": ["P1", "P1", "P1"],
    }
    with labelled_project(tmp_path, layout) as project:
        split = suggest_test_split(project)
    assert (split.train_counts, split.test_counts) == ((4, 3), (1, 0))


def test_a_two_image_class_gives_one_to_test_and_keeps_one(tmp_path: Path) -> None:
    layout: dict[str, list[str | None]] = {"fundus": [None] * 10, "histology": [None] * 2}
    with labelled_project(tmp_path, layout) as project:
        split = suggest_test_split(project, fraction=0.2)
    assert (split.train_counts, split.test_counts) == ((8, 1), (2, 1))


def test_test_images_chosen_by_hand_stay_and_take_their_patients_with_them(
    tmp_path: Path,
) -> None:
    with labelled_project(tmp_path, LAYOUT, test=("fundus/img00",)) as project:
        split = suggest_test_split(project)
        apply_test_split(project, split)
        sides = roles_by_patient(project)
        counts = role_counts(project)
    assert all(len(roles) == 1 for roles in sides.values())
    assert counts["fundus"] == (7, 3)  # P1's three images, nothing more: 3 >= 20 % of 10


def test_a_share_outside_0_to_1_is_refused(tmp_path: Path) -> None:
    layout: dict[str, list[str | None]] = {"fundus": [None], "histology": [None]}
    with (
        labelled_project(tmp_path, layout) as project,
        pytest.raises(ConfigError, match="between 0 and 1"),
    ):
        suggest_test_split(project, fraction=1.5)


def test_the_class_shares_add_up_to_a_fifth_of_all_images(tmp_path: Path) -> None:
    layout: dict[str, list[str | None]] = {
        "fundus": [None] * 7,
        "histology": ["P1", "P2", "P3", "P4", "P5", "P6", "P7"],
        "xray": [None] * 6,
    }
    with labelled_project(tmp_path, layout) as project:
        split = suggest_test_split(project)
    # 1.4, 1.4 and 1.2 rounded one by one would be 3 of 20; the largest remainder gives 4
    assert (split.train_counts, split.test_counts) == ((5, 6, 5), (2, 1, 1))
