"""What the desktop gallery shows: one plain item per image (thumbnail, labels, role), and filters.

Qt-free, so the gallery's content is tested without a window. Thumbnails come from the project's
cache (made at import); one that is missing is rendered again from the source when it is known.
Captions never carry a file path (paths often hold patient names): they say what the image is.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from enum import Enum
from pathlib import Path

from ept_studio.common.errors import EptStudioError
from ept_studio.data.render import RenderingSpec
from ept_studio.data.store import ClassCount, ImageFilter, ImageRecord, Project, Role
from ept_studio.data.thumbnails import thumbnail_for, thumbnail_name
from ept_studio.services.project.gallery_review import (
    latest_prediction_run,
    latest_predictions,
    misclassified,
    most_uncertain,
)
from ept_studio.services.project.importing import THUMBNAIL_SIZE
from ept_studio.services.project.results import prediction_words, scores_of_run
from ept_studio.services.project.series import (
    Series,
    SeriesSummary,
    project_series,
    series_key,
    series_summary,
)

logger = logging.getLogger(__name__)

__all__ = [
    "REVIEW_VIEWS",
    "ClassCount",
    "GalleryFilter",
    "GalleryItem",
    "GalleryView",
    "caption_for",
    "class_counts",
    "gallery_items",
    "image_count",
    "series_gallery_items",
    "thumbnail_path",
    "unlabelled_count",
]


class GalleryView(str, Enum):
    """The kinds of filter the gallery offers (a class filter also names the class)."""

    ALL = "all"
    UNLABELLED = "unlabelled"
    CLASS = "class"
    TRAIN = "train"
    TEST = "test"
    MISCLASSIFIED = "misclassified"
    """Labelled images an inference run got wrong (see :mod:`~ept_studio.services.project.gallery_review`)."""
    UNCERTAIN = "uncertain"
    """The images an inference run was least sure of, least sure first."""
    IMAGES = "images"
    """Chosen images, named by ``label`` (a confusion-matrix cell, a reliability bar)."""


REVIEW_VIEWS = frozenset({GalleryView.MISCLASSIFIED, GalleryView.UNCERTAIN})
"""The views that read an inference run's predictions."""


@dataclasses.dataclass(frozen=True)
class GalleryFilter:
    """Which images the gallery lists.

    ``class_id`` only with :attr:`GalleryView.CLASS`; ``run_id`` only with the review views (None:
    the latest finished run that stored predictions); ``image_ids`` and ``label`` (what they are,
    in words) only with :attr:`GalleryView.IMAGES`, listed in that order.
    """

    view: GalleryView = GalleryView.ALL
    class_id: int | None = None
    run_id: int | None = None
    image_ids: tuple[int, ...] = ()
    label: str = ""

    @classmethod
    def chosen(cls, image_ids: Sequence[int], label: str) -> GalleryFilter:
        """Only these images, with what they are in words."""
        return cls(GalleryView.IMAGES, image_ids=tuple(image_ids), label=label)

    def to_image_filter(self) -> ImageFilter:
        if self.view is GalleryView.UNLABELLED:
            return ImageFilter(unlabelled=True)
        if self.view is GalleryView.CLASS:
            return ImageFilter(class_id=self.class_id)
        if self.view is GalleryView.TRAIN:
            return ImageFilter(role=Role.TRAIN)
        if self.view is GalleryView.TEST:
            return ImageFilter(role=Role.TEST)
        return ImageFilter()


@dataclasses.dataclass(frozen=True)
class GalleryItem:
    """One thumbnail of the gallery."""

    image_id: int
    thumbnail: Path | None
    """The cached PNG, or None when it cannot be made (file missing on this machine)."""
    caption: str
    class_ids: tuple[int, ...]
    role: str | None
    prediction: str | None = None
    """The newest prediction run's class and score (``CT 93 %``), when it scored this image."""
    prediction_note: str = ""
    """What the model says besides: its set at its coverage, ``uncalibrated`` (may be empty)."""
    scores: dict[str, float] = dataclasses.field(default_factory=dict, compare=False)
    member_ids: tuple[int, ...] = ()
    """A series tile: every slice it stands for (``image_id`` is the representative one);
    empty on an image tile."""

    @property
    def image_ids(self) -> tuple[int, ...]:
        """The images a label, a role or a drag of this tile acts on."""
        return self.member_ids or (self.image_id,)

    @property
    def slice_count(self) -> int:
        return len(self.image_ids)


def gallery_items(project: Project, selection: GalleryFilter | None = None) -> list[GalleryItem]:
    """The images ``selection`` lists, in the order they were added (review views: worst first)."""
    images = _images(project, selection or GalleryFilter())
    labels: dict[int, list[tuple[int, str]]] = {}
    for label in project.labels.all():
        labels.setdefault(label.image_id, []).append((label.class_id, label.role.value))
    names = {info.id: info.name for info in project.labels.classes()}
    predicted = latest_predictions(project)
    run_id = latest_prediction_run(project) if predicted else None
    classes, model = scores_of_run(project, run_id) if run_id is not None else ((), None)
    items = []
    for image in images:
        pairs = labels.get(image.id, [])
        row = predicted.get(image.id)
        items.append(
            GalleryItem(
                image_id=image.id,
                thumbnail=thumbnail_path(project, image),
                caption=caption_for(image, [names.get(c, "?") for c, _ in pairs]),
                class_ids=tuple(c for c, _ in pairs),
                role=pairs[0][1] if pairs else None,
                prediction=_prediction_text(row.predicted_class, row.scores) if row else None,
                scores=dict(row.scores) if row else {},
                prediction_note=(
                    prediction_words(row.scores, classes, model) if row and model else ""
                ),
            )
        )
    return items


def series_gallery_items(
    project: Project, selection: GalleryFilter | None = None
) -> list[GalleryItem]:
    """One tile per series with an image that ``selection`` lists: its representative slice's
    thumbnail, a caption with the slice count, and the classes its slices carry (``mixed
    labels`` when they differ). A loose image is its own tile, as in :func:`gallery_items`."""
    listed = _images(project, selection or GalleryFilter())
    everything = {one.key: one for one in project_series(project)}
    keys = list(dict.fromkeys(series_key(image) for image in listed))
    chosen = [everything[key] for key in keys if key in everything]
    representatives = [one.representative.id for one in chosen]
    items = gallery_items(project, GalleryFilter.chosen(representatives, ""))
    names = {info.id: info.name for info in project.labels.classes()}
    summaries = series_summary(project, chosen)
    return [
        item if one.slice_count == 1 else _series_item(item, one, summary, names)
        for item, one, summary in zip(items, chosen, summaries, strict=True)
    ]


def _series_item(
    item: GalleryItem, one: Series, summary: SeriesSummary, names: dict[int, str]
) -> GalleryItem:
    labels = [names.get(c, "?") for c in summary.class_ids]
    if not summary.labels_uniform:
        labels = ["mixed labels"]
    caption = f"{caption_for(one.representative, labels)} · {one.slice_count} slices"
    role = summary.role.value if summary.role else ("train and test" if summary.roles else None)
    return dataclasses.replace(
        item,
        caption=caption,
        class_ids=summary.class_ids,
        role=role,
        prediction=None,
        prediction_note="",
        scores={},
        member_ids=summary.image_ids,
    )


def _images(project: Project, selection: GalleryFilter) -> list[ImageRecord]:
    if selection.view is GalleryView.IMAGES:
        by_id = {image.id: image for image in project.images()}
        return [by_id[image_id] for image_id in selection.image_ids if image_id in by_id]
    if selection.view not in REVIEW_VIEWS:
        return project.images(selection.to_image_filter())
    if selection.view is GalleryView.MISCLASSIFIED:
        order = misclassified(project, selection.run_id)
    else:
        order = most_uncertain(project, selection.run_id)
    by_id = {image.id: image for image in project.images()}
    return [by_id[image_id] for image_id in order if image_id in by_id]


def thumbnail_path(project: Project, image: ImageRecord) -> Path | None:
    """The image's cached thumbnail, rendered again from its source if the cache lost it."""
    spec = _spec(image)
    cached = project.thumbnails_dir / thumbnail_name(image.sha256, spec, THUMBNAIL_SIZE)
    if cached.is_file():
        return cached
    if image.path is None or not image.path.is_file():
        return None
    try:
        return thumbnail_for(
            image.path, spec, project.thumbnails_dir, THUMBNAIL_SIZE, content_sha256=image.sha256
        )
    except EptStudioError as err:
        logger.warning("image %d: no thumbnail (%s)", image.id, type(err).__name__)
        return None


def class_counts(project: Project) -> dict[int, ClassCount]:
    """Images per class (train and test), by class id."""
    return {count.class_id: count for count in project.labels.counts_per_class()}


def image_count(project: Project) -> int:
    return len(project.images())


def unlabelled_count(project: Project) -> int:
    return len(project.images(ImageFilter(unlabelled=True)))


def _spec(image: ImageRecord) -> RenderingSpec:
    try:
        return RenderingSpec.from_dict(image.rendering) if image.rendering else RenderingSpec()
    except EptStudioError:
        return RenderingSpec()


def _prediction_text(predicted: str, scores: dict[str, float]) -> str:
    score = scores.get(predicted)
    return f"{predicted} {score:.0%}" if score is not None else predicted


def caption_for(image: ImageRecord, labels: Sequence[str] = ()) -> str:
    """``#12 · fundus · CT``: the image's id, its class(es) (``unlabelled`` when none), and the
    modality once when the file says one (a photograph has none). Never a path or file name."""
    parts = [f"#{image.id}", ", ".join(labels) if labels else "unlabelled"]
    named = {label.casefold() for label in labels}
    if image.modality and image.modality.casefold() not in named:  # a class "CT" says it already
        parts.append(image.modality)
    return " · ".join(parts)
