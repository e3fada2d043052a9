"""From files on disk to the uint8 RGB tensors the engine takes, with a report of what was skipped."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ept_studio.common.errors import DatasetError, ImageDecodeError
from ept_studio.common.files import file_sha256
from ept_studio.data.folders import (
    ClassFolderScan,
    LabelledImage,
    check_shots,
    class_size_problem,
    sample_per_class,
)
from ept_studio.data.pixel_hash import pixel_sha256
from ept_studio.data.render import RenderingSpec, decode_file, render
from ept_studio.services.model.same_image import SameImage, same_image_groups

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

Labelled = tuple["LoadedImage", int]
"""A decoded image and its class index."""


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
    """One decoded image: its pixels ``[3, H, W]`` uint8, the file's sha256 and its path.

    ``pixel_sha256`` fingerprints the decoded pixels before rendering, so the same image saved in
    another encoding is recognised (see :mod:`ept_studio.data.pixel_hash`).
    """

    path: Path
    sha256: str
    pixels: torch.Tensor
    pixel_sha256: str = ""


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

    spec = spec if spec is not None else RenderingSpec()
    loaded: list[LoadedImage] = []
    skipped: list[SkippedFile] = []
    for path in paths:
        try:
            decoded = decode_file(path, frame=spec.frame)
        except ImageDecodeError as err:
            skipped.append(SkippedFile(path, err.reason))
            continue
        array = render(decoded, spec)
        pixels = torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
        loaded.append(LoadedImage(path, file_sha256(path), pixels, pixel_sha256(decoded)))
    return loaded, skipped


@dataclasses.dataclass(frozen=True)
class LabelledSplit:
    """Support (training) and query (evaluation) images of a class-folder set, as class indices.

    ``duplicates`` are the files left out because another file of the same class is the same image.
    """

    classes: tuple[str, ...]
    support: list[Labelled]
    query: list[Labelled]
    skipped: list[SkippedFile]
    duplicates: list[SameImage] = dataclasses.field(default_factory=list)


def split_class_folders(
    scan: ClassFolderScan,
    shots: int | None,
    seed: int,
    max_query_per_class: int | None = None,
    spec: RenderingSpec | None = None,
) -> LabelledSplit:
    """Draw ``shots`` support images per class and keep the rest as the query set.

    Every file is decoded before the draw, so a broken file is named and left out instead of
    silently taking a support place; one file of each image found twice is kept, so an image and
    its copy cannot land on both sides. A class that cannot give ``shots`` and one evaluation
    image is refused, before any training. ``shots=None`` puts every image in the support set
    (evaluating a model on a whole folder).
    """
    index = {name: i for i, name in enumerate(scan.classes)}
    skipped = [SkippedFile(path, reason) for path, reason in scan.skipped]
    loaded = _load_labelled(scan.images, index, skipped, spec)
    if shots is None:
        if not loaded:
            raise DatasetError("none of the images could be decoded")
        return LabelledSplit(scan.classes, loaded, [], skipped)
    check_shots(shots)
    if max_query_per_class is not None and max_query_per_class < 1:
        raise DatasetError(query_cap_problem(max_query_per_class))
    unique, duplicates = _one_file_per_image(scan, loaded)
    _refuse_small_classes(scan, unique, shots, skipped, duplicates)
    support, query = _draw(scan, unique, shots, seed)
    if max_query_per_class is not None:
        query = _cap_per_class(query, max_query_per_class)
    split = LabelledSplit(scan.classes, support, query, skipped, duplicates)
    _log_split(scan, split)
    return split


def query_cap_problem(cap: object) -> str:
    """Why a cap of ``cap`` evaluation images per class is refused (it is below 1)."""
    return (
        f"evaluating on at most {cap} images per class leaves no image to evaluate the model "
        "on: give at least 1, or no limit"
    )


def _one_file_per_image(
    scan: ClassFolderScan, loaded: list[Labelled]
) -> tuple[list[Labelled], list[SameImage]]:
    """The first file of each image (by class, then path) and the groups of files left out.

    The same image in two class folders is refused: the folder route trains one class per image.
    """
    groups = same_image_groups([(image.sha256, image.pixel_sha256) for image, _ in loaded])
    across = [g for g in groups if len({loaded[i][1] for i in g}) > 1]
    if across:
        names = "; ".join(
            " and ".join(scan.shown(loaded[i][0].path) for i in group) for group in across
        )
        raise DatasetError(
            f"the same image is in more than one class folder ({names}): training on a folder "
            "takes one class per image; keep each image only in the folder of its class"
        )
    dropped = {i for group in groups for i in group[1:]}
    duplicates = [
        SameImage(loaded[group[0]][0].path, tuple(loaded[i][0].path for i in group[1:]))
        for group in groups
    ]
    return [item for i, item in enumerate(loaded) if i not in dropped], duplicates


def _refuse_small_classes(
    scan: ClassFolderScan,
    unique: list[Labelled],
    shots: int,
    skipped: list[SkippedFile],
    duplicates: list[SameImage],
) -> None:
    """A :class:`DatasetError` naming every class that cannot give ``shots`` + 1 images."""
    problems = []
    for k, label in enumerate(scan.classes):
        problem = class_size_problem(label, sum(1 for _, y in unique if y == k), shots)
        if problem is not None:
            problems.append(problem + _left_out_note(scan, label, skipped, duplicates))
    if problems:
        raise DatasetError("; ".join(problems))


def _left_out_note(
    scan: ClassFolderScan, label: str, skipped: list[SkippedFile], duplicates: list[SameImage]
) -> str:
    """`` (left out: ...)`` for the files of class ``label`` that were not counted."""
    notes = [
        f"{scan.shown(item.path)} ({item.reason})"
        for item in skipped
        if _class_of(scan, item.path) == label
    ]
    notes += [
        f"{scan.shown(path)} (the same image as {scan.shown(same.kept)})"
        for same in duplicates
        if _class_of(scan, same.kept) == label
        for path in same.dropped
    ]
    return f" (left out: {'; '.join(notes)})" if notes else ""


def _class_of(scan: ClassFolderScan, path: Path) -> str:
    return scan.shown(path).split("/", 1)[0]


def _draw(
    scan: ClassFolderScan, unique: list[Labelled], shots: int, seed: int
) -> tuple[list[Labelled], list[Labelled]]:
    """The seeded draw of :func:`sample_per_class`, over the decoded, one-per-image files."""
    kept = ClassFolderScan(
        scan.classes,
        tuple(LabelledImage(image.path, scan.classes[y]) for image, y in unique),
        (),
        scan.root,
    )
    support, query = sample_per_class(kept, shots, seed)
    by_path = {image.path: (image, y) for image, y in unique}
    return [by_path[i.path] for i in support], [by_path[i.path] for i in query]


def _cap_per_class(items: Sequence[Labelled], cap: int) -> list[Labelled]:
    kept: list[Labelled] = []
    counts: dict[int, int] = {}
    for image, label in items:
        if counts.get(label, 0) < cap:
            counts[label] = counts.get(label, 0) + 1
            kept.append((image, label))
    return kept


def _log_split(scan: ClassFolderScan, split: LabelledSplit) -> None:
    """Counts per class name only: folder and file names may carry patient names."""
    for k, label in enumerate(scan.classes):
        logger.info(
            "class %r: %d training, %d evaluation images; %d files left out as copies, "
            "%d could not be decoded",
            label,
            sum(1 for _, y in split.support if y == k),
            sum(1 for _, y in split.query if y == k),
            sum(len(d.dropped) for d in split.duplicates if _class_of(scan, d.kept) == label),
            sum(1 for s in split.skipped if _class_of(scan, s.path) == label),
        )


def _load_labelled(
    items: Sequence[LabelledImage],
    index: dict[str, int],
    skipped: list[SkippedFile],
    spec: RenderingSpec | None,
) -> list[Labelled]:
    loaded, failed = load_images((item.path for item in items), spec)
    skipped.extend(failed)
    label_of = {item.path: index[item.label] for item in items}
    return [(image, label_of[image.path]) for image in loaded]


@dataclasses.dataclass(frozen=True)
class ImageFailed:
    """A file that gave no prediction, and why (shown to the user; never logged)."""

    path: Path
    reason: str


def collect_files(paths: Iterable[Path]) -> tuple[list[Path], list[ImageFailed]]:
    """Every file named, and every non-hidden file under the folders named, each once, in order."""
    files: list[Path] = []
    failed: list[ImageFailed] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = _walk(path, failed)
        elif path.exists():
            found = [path]
        else:
            failed.append(ImageFailed(path, "file or folder not found"))
            continue
        for item in found:
            real = item.resolve()
            if real not in seen:
                seen.add(real)
                files.append(item)
    return files, failed


def _walk(root: Path, failed: list[ImageFailed]) -> list[Path]:
    files: list[Path] = []

    def unreadable(err: OSError) -> None:
        failed.append(ImageFailed(Path(err.filename or root), "folder cannot be read"))

    for folder, folders, names in os.walk(root, onerror=unreadable):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        files.extend(Path(folder) / n for n in sorted(names) if not n.startswith("."))
    return files
