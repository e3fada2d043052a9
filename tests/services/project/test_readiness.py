"""The Train tab's checklist on real projects: what blocks a run, what only warns, and why."""

from __future__ import annotations

from pathlib import Path

import pytest
from labelled_projects import labelled_project

from ept_studio.common.errors import DatasetError
from ept_studio.services.project import Role, train_on_project
from ept_studio.services.project.readiness import SPLIT_ACTION, Readiness, Severity, check_readiness


def severities(
    tmp_path: Path, layout: dict[str, list[str | None]], test: tuple[str, ...] = ()
) -> tuple[Readiness, dict[str, Severity]]:
    with labelled_project(tmp_path, layout, test) as project:
        readiness = check_readiness(project)
    return readiness, {item.key: item.severity for item in readiness.items}


def test_a_balanced_project_with_a_test_set_is_ready(tmp_path: Path) -> None:
    readiness, found = severities(
        tmp_path,
        {"fundus": ["P1", "P2", None, None, None], "histology": ["P3", None, None, None, None]},
        test=("fundus/img04", "histology/img04"),
    )
    assert readiness.ready
    assert found == {
        "classes": Severity.OK,
        "test": Severity.OK,
        "balance": Severity.OK,
        "tiny": Severity.OK,
        "patients": Severity.OK,
    }
    assert (readiness.train_images, readiness.test_images) == (8, 2)
    assert readiness.split_counts() == "Test: 2 images (20 %) · Train: 8"
    assert readiness.items[0].text == "2 classes, each with training images (8 in all)."


def test_no_test_images_warns_and_offers_the_split(tmp_path: Path) -> None:
    readiness, _ = severities(tmp_path, {"fundus": [None] * 3, "histology": [None] * 3})
    assert readiness.ready
    test_item = next(item for item in readiness.items if item.key == "test")
    assert test_item.severity is Severity.WARNING
    assert test_item.text == "No test images: you will get no accuracy. Press 'Split for me'."
    assert test_item.action == SPLIT_ACTION
    assert readiness.split_counts() == "Test: 0 images (0 %) · Train: 6"


def test_a_class_with_only_test_images_blocks_with_the_services_own_words(
    tmp_path: Path,
) -> None:
    layout: dict[str, list[str | None]] = {"fundus": [None] * 3, "histology": [None] * 2}
    with labelled_project(tmp_path, layout, test=("histology/img00", "histology/img01")) as project:
        readiness = check_readiness(project)
        folder = project.folder
    assert not readiness.ready
    assert readiness.blockers == (
        "Class 'histology' has no training image: label at least one image of it with the "
        "train role, or delete the class.",
    )
    events = train_on_project(
        folder, {"method": "linear"}, {"device": "cpu"}, locations_dir=tmp_path / "locations"
    )
    with pytest.raises(DatasetError) as raised:
        next(events)
    assert [b[0].lower() + b[1:-1] for b in readiness.blockers] == str(raised.value).split("; ")


def test_every_blocking_reason_is_listed_at_once(tmp_path: Path) -> None:
    with labelled_project(tmp_path, {"fundus": [None] * 2}) as project:
        project.labels.set_role([i.id for i in project.images()], Role.TEST)
        readiness = check_readiness(project)
    assert readiness.blockers == (
        "A single-label project needs at least 2 classes to train: add another class.",
        "No labelled image has the train role: label some images first.",
    )
    assert readiness.test_images == 2


def test_a_class_three_times_bigger_and_a_tiny_class_warn(tmp_path: Path) -> None:
    readiness, found = severities(tmp_path, {"fundus": [None] * 7, "histology": [None] * 2})
    assert readiness.ready
    assert found["balance"] is Severity.WARNING
    assert found["tiny"] is Severity.WARNING
    texts = {item.key: item.text for item in readiness.items}
    assert texts["balance"].startswith(
        "Unbalanced: fundus has 7 training images, histology only 2."
    )
    assert texts["tiny"].startswith("Very few training images (histology has 2)")


def test_exactly_three_times_bigger_is_still_balanced(tmp_path: Path) -> None:
    _, found = severities(tmp_path, {"fundus": [None] * 9, "histology": [None] * 3})
    assert (found["balance"], found["tiny"]) == (Severity.OK, Severity.OK)


def test_a_patient_on_both_sides_warns(tmp_path: Path) -> None:
    readiness, found = severities(
        tmp_path,
        {"fundus": ["P1", "P1", "P2", None], "histology": ["P3", "P3", None, None]},
        test=("fundus/img01", "histology/img03"),
    )
    assert found["patients"] is Severity.WARNING
    item = next(i for i in readiness.items if i.key == "patients")
    assert item.text.startswith("1 patient has images in both train and test")
    assert item.action == SPLIT_ACTION


def test_a_class_without_test_images_is_named(tmp_path: Path) -> None:
    readiness, found = severities(
        tmp_path, {"fundus": [None] * 4, "histology": [None] * 4}, test=("fundus/img00",)
    )
    assert found["test"] is Severity.WARNING
    item = next(i for i in readiness.items if i.key == "test")
    assert item.text.startswith("No test image of histology")


def test_a_multi_label_project_may_train_one_class(tmp_path: Path) -> None:
    with labelled_project(tmp_path, {"effusion": [None] * 4}, label_mode="multi") as project:
        readiness = check_readiness(project)
    assert readiness.ready
    assert readiness.items[0].text == "1 class with training images (4 in all)."
