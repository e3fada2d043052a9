"""A labelled image set from a folder of class folders, and its seeded few-shot split.

    root/
      benign/      img001.png, scans/img002.tif, ...
      malignant/   ...

Each immediate, non-hidden sub-folder of ``root`` is a class, named after the folder; its images are
found at any depth. Hidden files and folders (names starting with ".") are ignored; any other file
that is not an image is listed in :attr:`ClassFolderScan.skipped` with the reason.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from ept_studio.common.errors import DatasetError
from ept_studio.data.dicom import is_dicom_file
from ept_studio.data.images import IMAGE_SUFFIXES, is_image_path

Skipped = tuple[Path, str]


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    """One image file and the class it belongs to."""

    path: Path
    label: str


@dataclasses.dataclass(frozen=True)
class ClassFolderScan:
    """What :func:`scan_class_folders` found: classes sorted by name, images sorted by path."""

    classes: tuple[str, ...]
    images: tuple[LabelledImage, ...]
    skipped: tuple[Skipped, ...]
    root: Path = Path()

    def shown(self, path: Path) -> str:
        """``class/file`` as the user sees it inside the folder (the folder's own path left out)."""
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.name

    def images_of(self, label: str) -> tuple[LabelledImage, ...]:
        return tuple(image for image in self.images if image.label == label)

    def counts(self) -> dict[str, int]:
        """Images per class, in class order."""
        return {label: len(self.images_of(label)) for label in self.classes}


def scan_class_folders(root: Path) -> ClassFolderScan:
    """Every image in the class folders of ``root``; a :class:`DatasetError` if unusable."""
    root = Path(root)
    entries = _list_folder(root)
    if entries is None:
        raise DatasetError(f"{root}: not a folder that can be read")
    class_folders = [e for e in entries if not _hidden(e) and _is_dir(e)]
    skipped: list[Skipped] = [
        (e, "not inside a class folder") for e in entries if not _hidden(e) and not _is_dir(e)
    ]
    if not class_folders:
        raise DatasetError(
            f"{root}: no class folders found; put each class's images in a sub-folder named "
            "after the class"
        )
    if len(class_folders) < 2:
        raise DatasetError(
            f"{root}: only one class folder ('{class_folders[0].name}'); "
            "at least 2 classes are needed"
        )
    images: list[LabelledImage] = []
    seen = _Seen(folders={_identity(root)}, files=set())
    for folder in sorted(class_folders, key=lambda f: f.name):
        found, skipped_here = _walk(folder, seen)
        if not found:
            suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
            raise DatasetError(
                f"{root}: class folder '{folder.name}' has no images (looked for {suffixes})"
            )
        images.extend(LabelledImage(path, folder.name) for path in found)
        skipped.extend(skipped_here)
    classes = tuple(sorted(f.name for f in class_folders))
    return ClassFolderScan(classes, tuple(images), tuple(sorted(skipped)), root)


@dataclasses.dataclass
class _Seen:
    """Real folders and files met so far (device, inode): links can neither loop nor duplicate."""

    folders: set[tuple[int, int] | None]
    files: set[tuple[int, int] | None]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _walk(folder: Path, seen: _Seen) -> tuple[list[Path], list[Skipped]]:
    """Image files at any depth under ``folder``; each real folder and file is taken once."""
    images: list[Path] = []
    skipped: list[Skipped] = []
    pending = [folder]
    while pending:
        current = pending.pop()
        identity = _identity(current)
        if identity in seen.folders:
            skipped.append((current, "link to a folder that was already scanned"))
            continue
        seen.folders.add(identity)
        entries = _list_folder(current) if identity is not None else None
        if entries is None:
            skipped.append((current, "folder cannot be read"))
            continue
        for entry in entries:
            if _hidden(entry):
                continue
            if _is_dir(entry):
                pending.append(entry)
            else:
                reason = _file_problem(entry, seen)
                if reason is None:
                    images.append(entry)
                else:
                    skipped.append((entry, reason))
    return sorted(images), skipped


def _file_problem(path: Path, seen: _Seen) -> str | None:
    """Why ``path`` is not taken as an image, or None if it is."""
    if not _is_file(path):
        return "broken link or not a regular file"
    if not (is_image_path(path) or is_dicom_file(path)):
        return f"not an image or DICOM file ({path.suffix or 'no suffix'})"
    identity = _identity(path)
    if identity in seen.files:
        return "the same file as another image already listed (a link)"
    seen.files.add(identity)
    return None


def _list_folder(folder: Path) -> list[Path] | None:
    try:
        return sorted(folder.iterdir())
    except OSError:
        return None


def _hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def check_shots(shots: object) -> int:
    """``shots`` if it is a whole number of at least 1 (one image per class to learn from)."""
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise DatasetError(
            f"the number of shots must be a whole number of at least 1, got {shots!r}"
        )
    return shots


def class_size_problem(label: str, images: int, shots: int) -> str | None:
    """Why class ``label`` with ``images`` usable images cannot give ``shots`` (None: it can).

    Every class needs its shots to train on and at least one image left to evaluate the model on:
    a class with nothing to evaluate it would be saved with a model nobody has tested on it.
    """
    if images > shots:
        return None
    counted = "1 usable image" if images == 1 else f"{images} usable images"
    if images < 2:
        return (
            f"class '{label}' has {counted}: it needs at least 2 (at least 1 to train on and 1 "
            "to evaluate the model on); add images to it"
        )
    return (
        f"class '{label}' has {counted}: with {images} images the number of shots can be 1 to "
        f"{images - 1}, so that at least 1 image is left to evaluate the model on"
    )


def sample_per_class(
    scan: ClassFolderScan, shots: int, seed: int
) -> tuple[list[LabelledImage], list[LabelledImage]]:
    """A seeded split of every class into ``shots`` support images and the rest as query images.

    The same scan, shots and seed always give the same split. Every class must keep at least one
    query image (see :func:`class_size_problem`); else a :class:`DatasetError` names them all.
    """
    check_shots(shots)
    problems = [
        problem
        for label in scan.classes
        if (problem := class_size_problem(label, len(scan.images_of(label)), shots)) is not None
    ]
    if problems:
        raise DatasetError("; ".join(problems))
    rng = random.Random(seed)
    support: list[LabelledImage] = []
    query: list[LabelledImage] = []
    for label in scan.classes:
        images = scan.images_of(label)
        chosen = set(rng.sample(range(len(images)), shots))
        support.extend(image for k, image in enumerate(images) if k in chosen)
        query.extend(image for k, image in enumerate(images) if k not in chosen)
    return support, query
