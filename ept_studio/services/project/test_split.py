""" "Split for me": a patient-disjoint, stratified test set chosen in one undoable step.

Images of one patient (the same salted patient hash) always land on the same side, so the test
accuracy is measured on patients the model never saw; so do the files of one image (the same
decoded pixels) and the slices of one DICOM series (a series without a patient hash is grouped by
its series alone). An image without a patient hash, a twin or a series is its own group. Each class
keeps at least one training image, and gets at least one test image when it has two groups or more. The split only moves images from train to test: test images the user already
chose stay (their patients' other images join them when every class can spare them), so the change
is a single :meth:`~ept_studio.data.store_labels.LabelBook.set_role` step that one undo reverts.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from ept_studio.common.errors import ConfigError
from ept_studio.data.store import Project, Role
from ept_studio.services.project.duplicates import pixel_duplicates
from ept_studio.services.project.series import project_series
from ept_studio.services.project.training import TrainingItem, TrainingSet, training_set

DEFAULT_TEST_FRACTION = 0.2


@dataclasses.dataclass(frozen=True)
class SplitSuggestion:
    """The images to move to the test role, and the images per class on each side after."""

    to_test: tuple[int, ...]
    classes: tuple[str, ...]
    train_counts: tuple[int, ...]
    test_counts: tuple[int, ...]

    @property
    def test_images(self) -> int:
        return sum(self.test_counts)

    @property
    def train_images(self) -> int:
        return sum(self.train_counts)


@dataclasses.dataclass
class _Group:
    """One patient's labelled images (or one image without a patient hash)."""

    key: str
    items: list[TrainingItem] = dataclasses.field(default_factory=list)

    def per_class(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for item in self.items:
            if item.role is Role.TRAIN:
                counts[_stratum(item)] = counts.get(_stratum(item), 0) + 1
        return counts

    @property
    def has_test(self) -> bool:
        return any(item.role is Role.TEST for item in self.items)


def suggest_test_split(
    project: Project, fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0
) -> SplitSuggestion:
    """About ``fraction`` of each class's labelled images for testing, whole patients at a time."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"the test share must be between 0 and 1, got {fraction!r}")
    together = [group.image_ids for group in pixel_duplicates(project)]
    together += [one.image_ids for one in project_series(project) if one.slice_count > 1]
    return split_training_set(training_set(project), fraction, seed, together)


def apply_test_split(project: Project, split: SplitSuggestion) -> tuple[int, ...]:
    """Move the suggested images to the test role: one undoable step; returns the images moved."""
    if not split.to_test:
        return ()
    return project.labels.set_role(split.to_test, Role.TEST)


def split_training_set(
    tset: TrainingSet, fraction: float, seed: int, same_image: Sequence[Sequence[int]] = ()
) -> SplitSuggestion:
    """The split of :func:`suggest_test_split` for an already-read training set; the image ids
    of each ``same_image`` group (one image in several files, the slices of a series) move
    together."""
    classes = len(tset.classes)
    groups = _groups(tset.items, same_image)
    train = [0] * classes
    test = [0] * classes
    for item in tset.items:
        (test if item.role is Role.TEST else train)[_stratum(item)] += 1
    moved: dict[str, _Group] = {}
    for group in [g for g in groups if g.has_test]:  # keep patients whole around user choices
        if _spare(group, train):
            _move(group, train, test, moved)
    target = _targets(groups, train, test, fraction)
    free = _seeded_order([g for g in groups if not g.has_test], seed)
    for group in free:
        counts = group.per_class()
        if all(test[k] + n <= target[k] for k, n in counts.items()) and _spare(group, train):
            _move(group, train, test, moved)
    for k in range(classes):  # a class with 2+ groups and still no test image gets its smallest
        if test[k] == 0 and _group_count(groups, k) >= 2:
            candidates = [g for g in free if g.key not in moved and k in g.per_class()]
            for group in sorted(candidates, key=lambda g: len(g.items)):
                if _spare(group, train):
                    _move(group, train, test, moved)
                    break
    ids = sorted(i.image_id for g in moved.values() for i in g.items if i.role is Role.TRAIN)
    return SplitSuggestion(tuple(ids), tset.classes, tuple(train), tuple(test))


def _stratum(item: TrainingItem) -> int:
    """The class an image is stratified by: its class, or its first class (multi-label)."""
    if isinstance(item.target, tuple):
        return item.target.index(1) if 1 in item.target else 0
    return item.target


def _groups(items: Sequence[TrainingItem], same_image: Sequence[Sequence[int]]) -> list[_Group]:
    """Images that must stay on one side: one patient's, and the files of one image, joined
    (an image's twin may belong to another patient hash, or to none)."""
    key = {
        item.image_id: f"patient:{item.patient_hash}"
        if item.patient_hash
        else f"image:{item.image_id}"
        for item in items
    }
    joined = {value: value for value in key.values()}

    def root(value: str) -> str:
        while joined[value] != value:
            value = joined[value]
        return value

    for ids in same_image:
        present = [key[i] for i in ids if i in key]
        for other in present[1:]:
            joined[root(other)] = root(present[0])
    groups: dict[str, _Group] = {}
    for item in items:
        name = root(key[item.image_id])
        groups.setdefault(name, _Group(name)).items.append(item)
    return [groups[name] for name in sorted(groups)]


def _seeded_order(groups: list[_Group], seed: int) -> list[_Group]:
    order = list(groups)
    random.Random(seed).shuffle(order)
    return order


def _targets(groups: list[_Group], train: list[int], test: list[int], fraction: float) -> list[int]:
    """Test images wanted per class: the share of its images, at least 1 with 2+ groups.

    The shares are rounded so that they add up to the share of all images (largest remainder):
    rounding each class on its own would give 3 of 20 for classes of 7, 7 and 6, not 4.
    """
    sizes = [n_train + n_test for n_train, n_test in zip(train, test, strict=True)]
    exact = [fraction * size for size in sizes]
    targets = [int(share) for share in exact]
    short = round(fraction * sum(sizes)) - sum(targets)
    by_remainder = sorted(range(len(sizes)), key=lambda k: (targets[k] - exact[k], k))
    for k in by_remainder[: max(short, 0)]:
        targets[k] += 1
    for k in range(len(sizes)):
        if _group_count(groups, k) >= 2:
            targets[k] = max(targets[k], 1)
    return targets


def _group_count(groups: list[_Group], k: int) -> int:
    return sum(any(_stratum(i) == k for i in g.items) for g in groups)


def _spare(group: _Group, train: list[int]) -> bool:
    """Whether every class keeps a training image once the group's train images move."""
    return all(train[k] - n >= 1 for k, n in group.per_class().items())


def _move(group: _Group, train: list[int], test: list[int], moved: dict[str, _Group]) -> None:
    for k, n in group.per_class().items():
        train[k] -= n
        test[k] += n
    moved[group.key] = group
