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

from ept_studio.data.store import Project
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
