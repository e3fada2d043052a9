"""Series as the unit a clinician labels: a project's images grouped by their DICOM series.

A series is the images that share a SeriesInstanceUID (stored salted and hashed, as the study and
the patient are). An image without one (a PNG, a DICOM file without the tag, or an image imported
before the project recorded series) is a series of its own, so every image belongs to exactly one
series and code that works per series also works on a project of loose files.

Slices are ordered by InstanceNumber (then by import order); the representative slice shown on a
series tile is the middle one of that order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from ept_studio.data.store import Project, Role
from ept_studio.data.store_records import ImageRecord

SINGLE_IMAGE_PREFIX = "image:"
"""Key prefix of an image that is a series of its own (followed by its image id)."""


@dataclasses.dataclass(frozen=True)
class Series:
    """One series of a project: its key and its images in slice order."""

    key: str
    images: tuple[ImageRecord, ...]

    @property
    def image_ids(self) -> tuple[int, ...]:
        return tuple(image.id for image in self.images)

    @property
    def slice_count(self) -> int:
        return len(self.images)

    @property
    def representative(self) -> ImageRecord:
        """The middle slice in slice order (the first of two middles)."""
        return self.images[(len(self.images) - 1) // 2]

    @property
    def modality(self) -> str | None:
        return self.images[0].modality

    @property
    def patient_hash(self) -> str | None:
        return self.images[0].patient_hash

    @property
    def is_single_image(self) -> bool:
        return self.key.startswith(SINGLE_IMAGE_PREFIX)


def series_key(image: ImageRecord) -> str:
    """The key of the series ``image`` belongs to (its series hash, or its own key)."""
    return image.series_hash or f"{SINGLE_IMAGE_PREFIX}{image.id}"


def group_series(images: Iterable[ImageRecord]) -> list[Series]:
    """``images`` grouped into series, slices in order; series in the order of their first image."""
    groups: dict[str, list[ImageRecord]] = {}
    for image in images:
        groups.setdefault(series_key(image), []).append(image)
    return [
        Series(key, tuple(sorted(members, key=_slice_order))) for key, members in groups.items()
    ]


def project_series(project: Project) -> list[Series]:
    """Every series of ``project``."""
    return group_series(project.images())


def series_by_key(project: Project, keys: Sequence[str]) -> list[Series]:
    """The series of ``project`` named by ``keys`` (in that order); an unknown key is an error."""
    known = {series.key: series for series in project_series(project)}
    missing = [key for key in keys if key not in known]
    if missing:
        raise KeyError(f"{len(missing)} series not in this project")
    return [known[key] for key in keys]


def _slice_order(image: ImageRecord) -> tuple[int, int, int]:
    number = image.instance_number
    return (0 if number is not None else 1, number if number is not None else 0, image.id)


@dataclasses.dataclass(frozen=True)
class SeriesSummary:
    """What a series tile shows: its slice count, the classes and roles its slices carry.

    ``class_ids`` is every class any slice carries (in class order); ``labels_uniform`` is True
    when every slice carries the same classes (all unlabelled counts as uniform too).
    """

    key: str
    representative_id: int
    image_ids: tuple[int, ...]
    class_ids: tuple[int, ...]
    labels_uniform: bool
    roles: frozenset[Role]

    @property
    def slice_count(self) -> int:
        return len(self.image_ids)

    @property
    def labelled(self) -> bool:
        return bool(self.class_ids)

    @property
    def role(self) -> Role | None:
        """The role every labelled slice has, or None (unlabelled, or train and test mixed)."""
        return next(iter(self.roles)) if len(self.roles) == 1 else None


def series_summary(project: Project, series: Sequence[Series]) -> list[SeriesSummary]:
    """The tile data of each of ``series``, in that order."""
    order = {info.id: position for position, info in enumerate(project.labels.classes())}
    carried: dict[int, set[int]] = {}
    roles: dict[int, set[Role]] = {}
    for label in project.labels.all():
        carried.setdefault(label.image_id, set()).add(label.class_id)
        roles.setdefault(label.image_id, set()).add(label.role)
    summaries = []
    for one in series:
        sets = [frozenset(carried.get(image_id, ())) for image_id in one.image_ids]
        union = set().union(*sets)
        summaries.append(
            SeriesSummary(
                key=one.key,
                representative_id=one.representative.id,
                image_ids=one.image_ids,
                class_ids=tuple(sorted(union, key=lambda c: order.get(c, len(order)))),
                labels_uniform=len(set(sets)) <= 1,
                roles=frozenset(r for i in one.image_ids for r in roles.get(i, ())),
            )
        )
    return summaries


def label_series(
    project: Project, keys: Sequence[str], class_id: int | None, role: Role | str | None = None
) -> tuple[int, ...]:
    """Label every slice of the series named by ``keys`` with ``class_id`` (None clears them).

    One undoable step however many slices; ``role`` None keeps each slice's role. Returns the
    images whose labels changed.
    """
    ids = [image_id for one in series_by_key(project, keys) for image_id in one.image_ids]
    return project.labels.set_label(ids, class_id, role) if ids else ()


def set_series_role(project: Project, keys: Sequence[str], role: Role | str) -> tuple[int, ...]:
    """Move every labelled slice of the series named by ``keys`` to ``role``: one undoable step."""
    ids = [image_id for one in series_by_key(project, keys) for image_id in one.image_ids]
    return project.labels.set_role(ids, role) if ids else ()


def series_of_images(project: Project, image_ids: Iterable[int]) -> list[Series]:
    """The series the given images belong to (each once, in project order)."""
    wanted = set(image_ids)
    return [one for one in project_series(project) if wanted & set(one.image_ids)]


def series_slices(project: Project, image_id: int) -> tuple[int, ...]:
    """The image ids of the series ``image_id`` is a slice of, in slice order: the order a viewer
    steps through it (just ``image_id`` for an image that is a series of its own; empty for an id
    not in the project)."""
    images = project.images()
    shown = next((image for image in images if image.id == image_id), None)
    if shown is None:
        return ()
    key = series_key(shown)
    (series,) = group_series(image for image in images if series_key(image) == key)
    return series.image_ids
