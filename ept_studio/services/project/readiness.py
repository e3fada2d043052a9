"""Is the project ready to train? The checklist the Train tab shows beside its Train button.

Each item is ok, a warning (training can start, but the result will say less than the user may
think) or blocking (training cannot start). The blocking items are the training service's own
rule (:func:`~ept_studio.services.project.trainable.training_blockers`), so nothing fails after the press
for a reason the checklist could have named, plus one the checklist adds: the same image (equal
decoded pixels) in train and in test (:func:`~ept_studio.services.project.duplicates.pixel_duplicates`),
which would test the model on an image it learned, and its neighbour: slices of one DICOM series in
train and in test. A class whose training images all come from one series is a warning: many
slices of one scan look like many examples but teach one. Qt-free and torch-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from enum import Enum

from ept_studio.data.store import LabelMode, Project, Role
from ept_studio.services.project.duplicates import DuplicateGroup, straddling_duplicates
from ept_studio.services.project.series import Series, project_series
from ept_studio.services.project.trainable import series_split_reason, training_blockers
from ept_studio.services.project.training import TrainingItem, TrainingSet, training_set

IMBALANCE_RATIO = 3
"""The largest class may have up to this many times the smallest's training images."""

TINY_CLASS = 3
"""A class with fewer training images than this is flagged: one or two examples teach little."""

_LEFT_OUT_WORDS = {
    "unreadable": "the file cannot be read as an image",
    "changed": "the file changed since it was labelled",
    "missing": "the file is no longer where it was",
}

SPLIT_ACTION = "split"
"""The action of the checklist items that "Split for me" fixes."""


class Severity(str, Enum):
    """How much an item matters: ok, worth reading, or stopping the run."""

    OK = "ok"
    WARNING = "warning"
    BLOCKING = "blocking"


@dataclasses.dataclass(frozen=True)
class ReadinessItem:
    """One line of the checklist; ``action`` names the fix the Train tab offers (or None)."""

    key: str
    severity: Severity
    text: str
    action: str | None = None


@dataclasses.dataclass(frozen=True)
class Readiness:
    """The checklist, and the image counts the Train tab shows beside Train."""

    items: tuple[ReadinessItem, ...]
    train_images: int
    test_images: int

    @property
    def ready(self) -> bool:
        """True when no item blocks training."""
        return not self.blockers

    @property
    def blockers(self) -> tuple[str, ...]:
        return tuple(i.text for i in self.items if i.severity is Severity.BLOCKING)

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(i.text for i in self.items if i.severity is Severity.WARNING)

    def split_counts(self) -> str:
        """``Test: 6 images (20 %) · Train: 16``."""
        total = self.train_images + self.test_images
        share = round(100 * self.test_images / total) if total else 0
        images = "image" if self.test_images == 1 else "images"
        return f"Test: {self.test_images} {images} ({share} %) · Train: {self.train_images}"


def check_readiness(project: Project) -> Readiness:
    """The checklist for the project's current labels (images whose file is missing left out)."""
    tset = training_set(project)
    readiness = readiness_of(tset)
    extra = [_same_image_item(group) for group in straddling_duplicates(project)]
    extra += series_items(tset, project_series(project))
    if not project.has_key:
        extra.append(_missing_key_item())
    return dataclasses.replace(readiness, items=(*readiness.items, *extra))


def readiness_of(tset: TrainingSet) -> Readiness:
    """The checklist of a :class:`TrainingSet` (see :func:`check_readiness`)."""
    train, test = tset.of_role(Role.TRAIN), tset.of_role(Role.TEST)
    counts = class_counts(tset, train)
    single = tset.label_mode is LabelMode.SINGLE
    blockers = training_blockers(tset.classes, single, counts)
    items = [ReadinessItem("trainable", Severity.BLOCKING, _sentence(b)) for b in blockers]
    if not blockers:
        items.append(_classes_item(tset.classes, counts))
    items.append(_test_item(tset, test))
    if not blockers:
        items += [_balance_item(tset.classes, counts), _tiny_item(tset.classes, counts)]
    items.append(_patients_item(tset.patients_in_both_roles()))
    items += [_left_out_item(reason, n) for reason, n in sorted(tset.excluded.items())]
    return Readiness(tuple(items), len(train), len(test))


def class_counts(tset: TrainingSet, items: Sequence[TrainingItem]) -> list[int]:
    """Images of each class among ``items`` (multi-label: the images that carry it)."""
    return [sum(_has(item.target, k) for item in items) for k in range(len(tset.classes))]


def _has(target: int | tuple[int, ...], k: int) -> bool:
    return bool(target[k]) if isinstance(target, tuple) else target == k


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _classes_item(classes: Sequence[str], counts: Sequence[int]) -> ReadinessItem:
    total = sum(counts)
    named = "1 class" if len(classes) == 1 else f"{len(classes)} classes, each"
    return ReadinessItem("classes", Severity.OK, f"{named} with training images ({total} in all).")


def _test_item(tset: TrainingSet, test: Sequence[TrainingItem]) -> ReadinessItem:
    if not test:
        return ReadinessItem(
            "test",
            Severity.WARNING,
            "No test images: you will get no accuracy. Press 'Split for me'.",
            SPLIT_ACTION,
        )
    missing = [
        name for name, n in zip(tset.classes, class_counts(tset, test), strict=True) if n == 0
    ]
    if missing:
        return ReadinessItem(
            "test",
            Severity.WARNING,
            f"No test image of {_names(missing)}: its accuracy cannot be measured. "
            "Press 'Split for me' or mark one with T.",
            SPLIT_ACTION,
        )
    return ReadinessItem("test", Severity.OK, f"{len(test)} test images to measure accuracy on.")


def _balance_item(classes: Sequence[str], counts: Sequence[int]) -> ReadinessItem:
    largest, smallest = max(counts), min(counts)
    if smallest and largest > IMBALANCE_RATIO * smallest:
        big, small = classes[counts.index(largest)], classes[counts.index(smallest)]
        return ReadinessItem(
            "balance",
            Severity.WARNING,
            f"Unbalanced: {big} has {largest} training images, {small} only {smallest}. "
            f"The model may favour {big}: label more of {small}.",
        )
    return ReadinessItem("balance", Severity.OK, "The classes are balanced enough.")


def _tiny_item(classes: Sequence[str], counts: Sequence[int]) -> ReadinessItem:
    tiny = [f"{name} has {n}" for name, n in zip(classes, counts, strict=True) if n < TINY_CLASS]
    if tiny:
        return ReadinessItem(
            "tiny",
            Severity.WARNING,
            f"Very few training images ({', '.join(tiny)}): label at least {TINY_CLASS} "
            "per class for a model worth testing.",
        )
    return ReadinessItem(
        "tiny", Severity.OK, f"Every class has at least {TINY_CLASS} training images."
    )


def _patients_item(shared: int) -> ReadinessItem:
    if shared:
        who = "1 patient has" if shared == 1 else f"{shared} patients have"
        return ReadinessItem(
            "patients",
            Severity.WARNING,
            f"{who} images in both train and test: the accuracy will look better than it is. "
            "Press 'Split for me' to keep each patient on one side.",
            SPLIT_ACTION,
        )
    return ReadinessItem("patients", Severity.OK, "No patient has images in both train and test.")


def _same_image_item(group: DuplicateGroup) -> ReadinessItem:
    """One image in train and in test (the same decoded pixels): its accuracy would be a lie."""
    return ReadinessItem(f"duplicates:#{group.image_ids[0]}", Severity.BLOCKING, group.reason())


def _missing_key_item() -> ReadinessItem:
    """The project came from another machine without its patient key (see ``project_key``)."""
    return ReadinessItem(
        "patient-key",
        Severity.WARNING,
        "This project's patient key is not on this machine: new DICOM images cannot be matched "
        "to the patients already in the project, so they are not imported. Export the key on "
        "the machine that made the project (File > Export patient key…, or `ept-studio project "
        "export-key`) and import it here (File > Import patient key…, or `ept-studio project "
        "import-key`).",
    )


def _left_out_item(reason: str, count: int) -> ReadinessItem:
    """Labelled images training cannot use: files missing here, changed, or unreadable."""
    images = "1 labelled image is" if count == 1 else f"{count} labelled images are"
    why = _LEFT_OUT_WORDS.get(reason, reason)
    return ReadinessItem(f"left-out:{reason}", Severity.WARNING, f"{images} left out: {why}.")


def series_items(tset: TrainingSet, series: Sequence[Series]) -> list[ReadinessItem]:
    """Series in train and in test (blocking), and classes taught by a single series (warning).

    Only series of two or more slices count; a loose image is a series of its own.
    """
    key_of = {i: one.key for one in series if one.slice_count > 1 for i in one.image_ids}
    straddling = len(tset.series_in_both_roles())
    items = [_series_split_item(straddling)] if straddling else []
    train = tset.of_role(Role.TRAIN)
    for k, name in enumerate(tset.classes):
        taught = [item for item in train if _has(item.target, k)]
        keys = {key_of.get(item.image_id, f"image:{item.image_id}") for item in taught}
        if len(taught) >= 2 and len(keys) == 1:
            items.append(_one_series_item(name, len(taught)))
    return items


def _series_split_item(count: int) -> ReadinessItem:
    """Slices of one scan on both sides: the test would see near copies of training slices."""
    return ReadinessItem(
        "series-split",
        Severity.BLOCKING,
        f"{_sentence(series_split_reason(count))} Press 'Split for me', or select the series "
        "and press T to keep it on one side.",
        SPLIT_ACTION,
    )


def _one_series_item(name: str, count: int) -> ReadinessItem:
    """Many slices of one scan look like many examples but show the model one patient's scan."""
    return ReadinessItem(
        f"one-series:{name}",
        Severity.WARNING,
        f"All {count} training images of {name} are slices of one series (one scan): the model "
        f"may learn that scan rather than {name}. Label images of {name} from other scans.",
    )


def _names(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
