"""From files on disk to the uint8 RGB tensors the engine takes, with a report of what was skipped."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ept_studio.data.folders import ClassFolderScan, LabelledImage, sample_per_class
from ept_studio.data.render import RenderingSpec, render_file
from ept_studio.errors import DatasetError, ImageDecodeError
from ept_studio.files import file_sha256

if TYPE_CHECKING:
    import torch


def rendering_spec(rendering: Mapping[str, Any]) -> RenderingSpec:
    """The rendering stored with a model, as a spec.

    A stored :class:`~ept_studio.data.render.RenderingSpec` (policy ``file`` or ``percentile``) is
    used as it is; anything else (``per-image`` when a project's images had specs of their own, or
    no policy) falls back to the default spec: each file's own window.
    """
    from ept_studio.data.render import POLICIES

    if rendering.get("policy") in POLICIES:
        return RenderingSpec.from_dict(rendering)
    return RenderingSpec()


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """One decoded image: its pixels ``[3, H, W]`` uint8, the file's sha256 and its path."""

    path: Path
    sha256: str
    pixels: torch.Tensor


@dataclasses.dataclass(frozen=True)
class SkippedFile:
    """A file that was not used, and why (shown to the user; never logged with PHI)."""

    path: Path
    reason: str


def load_images(
    paths: Iterable[Path], spec: RenderingSpec | None = None
) -> tuple[list[LoadedImage], list[SkippedFile]]:
    """Decode and render every path (DICOM, PNG, JPEG, TIFF, BMP) as ``spec`` says.

    A file that fails is reported and the others go on.
    """
    import torch

    loaded: list[LoadedImage] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        try:
            array = render_file(path, spec)
        except ImageDecodeError as err:
            skipped.append(SkippedFile(path, err.reason))
            continue
        pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
        loaded.append(LoadedImage(path, file_sha256(path), pixels))
    return loaded, skipped


@dataclasses.dataclass(frozen=True)
class LabelledSplit:
    """Support (training) and query (evaluation) images of a class-folder set, as class indices."""

    classes: tuple[str, ...]
    support: list[tuple[LoadedImage, int]]
    query: list[tuple[LoadedImage, int]]
    skipped: list[SkippedFile]


def split_class_folders(
    scan: ClassFolderScan,
    shots: int | None,
    seed: int,
    max_query_per_class: int | None = None,
    spec: RenderingSpec | None = None,
) -> LabelledSplit:
    """Draw ``shots`` support images per class (all when None) and keep the rest as the query set."""
    query_items: list[LabelledImage]
    if shots is None:
        support_items, query_items = list(scan.images), []
    else:
        support_items, query_items = sample_per_class(scan, shots, seed)
    if max_query_per_class is not None:
        query_items = _cap_per_class(query_items, max_query_per_class)
    index = {name: i for i, name in enumerate(scan.classes)}
    skipped = [SkippedFile(path, reason) for path, reason in scan.skipped]
    support = _load_labelled(support_items, index, skipped, spec)
    query = _load_labelled(query_items, index, skipped, spec)
    if not support:
        raise DatasetError("none of the training images could be decoded")
    return LabelledSplit(scan.classes, support, query, skipped)


def _cap_per_class(items: Sequence[LabelledImage], cap: int) -> list[LabelledImage]:
    kept: list[LabelledImage] = []
    counts: dict[str, int] = {}
    for item in items:
        if counts.get(item.label, 0) < cap:
            counts[item.label] = counts.get(item.label, 0) + 1
            kept.append(item)
    return kept


def _load_labelled(
    items: Sequence[LabelledImage],
    index: dict[str, int],
    skipped: list[SkippedFile],
    spec: RenderingSpec | None,
) -> list[tuple[LoadedImage, int]]:
    loaded, failed = load_images((item.path for item in items), spec)
    skipped.extend(failed)
    label_of = {item.path: index[item.label] for item in items}
    return [(image, label_of[image.path]) for image in loaded]
