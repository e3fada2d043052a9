"""Adding files and folders to a project: recursive, by content hash, never stopped by one bad file.

DICOM files are recognised by their content ("DICM" after the preamble, whatever their name),
PNG / JPEG / TIFF / BMP by their suffix. For each file:

- the same path with the same size and modification time as last time: a duplicate, not re-read;
- content already in the project (same sha256): a duplicate, or *relinked* when the old file is
  gone (the file was moved);
- a path the project knew with other content: the old image is flagged ``changed`` (its labels
  stay with it) and the new content is added;
- otherwise it is decoded (and its thumbnail cached) and added; a file that cannot be decoded is
  skipped with the reason and the import goes on.

Nothing here logs a path or a header value: paths and DICOM headers often carry patient names.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from ept_studio.common.errors import EptStudioError, ImageDecodeError
from ept_studio.common.files import file_sha256, is_utf8_name
from ept_studio.data.dicom import is_dicom_file, read_dicom_header
from ept_studio.data.images import is_image_path
from ept_studio.data.pixel_hash import pixel_sha256
from ept_studio.data.render import RenderingSpec, decode_file
from ept_studio.data.store import (
    DB_NAME,
    ImageRecord,
    ImageStatus,
    LabelMode,
    NewImage,
    Project,
)
from ept_studio.data.thumbnails import thumbnail_for

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 256
NOT_UTF8_REASON = "the file name is not valid UTF-8; rename the file (or its folder) to import it"
"""Why a file whose path is not UTF-8 (possible on Linux) is skipped: the project's location index
stores text, and such a name would not be found again the same way."""
PACS_CACHE = Path("cache", "pacs")
"""Where projects made before :func:`pacs_cache_dir` moved out kept their PACS copies, relative
to the project folder: those copies are still images of the project (found through the location
index) and may be imported again, so :func:`_collect` keeps them."""
PACS_COPIES = "pacs"
"""The folder of PACS copies in the location-index folder, one sub-folder per project id."""
_TEXT_MODALITIES = frozenset({"US", "SC", "XC", "OT", "DOC"})
"""Modalities whose pixels often carry burned-in text (ultrasound, secondary capture, photos)."""


@dataclasses.dataclass
class ImportReport:
    """What an import did; every path appears in exactly one list."""

    added: list[tuple[Path, int]] = dataclasses.field(default_factory=list)
    duplicates: list[tuple[Path, int]] = dataclasses.field(default_factory=list)
    relinked: list[tuple[Path, int]] = dataclasses.field(default_factory=list)
    changed: list[tuple[Path, int]] = dataclasses.field(default_factory=list)
    """Files whose content differs from what the project holds: (path, the flagged old image)."""
    skipped: list[tuple[Path, str]] = dataclasses.field(default_factory=list)
    labelled: dict[str, int] = dataclasses.field(default_factory=dict)
    """Folders as classes: images labelled per class name."""
    text_in_pixels: list[int] = dataclasses.field(default_factory=list)
    """Images that may show text in their pixels (burned-in annotation, ultrasound, captures)."""

    @property
    def files_seen(self) -> int:
        return sum(
            len(items)
            for items in (self.added, self.duplicates, self.relinked, self.changed, self.skipped)
        )


@dataclasses.dataclass(frozen=True)
class ImportProgress:
    """One more file handled (``done`` of ``total``)."""

    done: int
    total: int


@dataclasses.dataclass(frozen=True)
class ImportFinished:
    report: ImportReport


@dataclasses.dataclass(frozen=True)
class _Candidate:
    path: Path
    class_name: str | None


def import_paths(
    project: Project,
    paths: Iterable[Path],
    *,
    folders_as_classes: bool = False,
    thumbnails: bool = True,
    cancel: Callable[[], bool] | None = None,
) -> ImportReport:
    """Import files and folders (recursively); see the module docstring. Returns the report."""
    report = ImportReport()
    for event in iter_import(
        project, paths, folders_as_classes=folders_as_classes, thumbnails=thumbnails, cancel=cancel
    ):
        if isinstance(event, ImportFinished):
            report = event.report
    return report


def iter_import(
    project: Project,
    paths: Iterable[Path],
    *,
    folders_as_classes: bool = False,
    thumbnails: bool = True,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[ImportProgress | ImportFinished]:
    """:func:`import_paths` as a generator: an :class:`ImportProgress` per file, then the report.

    With ``folders_as_classes`` each sub-folder of a given folder is a class (created if new) and
    the images found under it get that label, unless they already carry one. ``cancel`` is asked
    between files; a cancelled import keeps what it added so far.
    """
    report = ImportReport()
    candidates = _collect(paths, folders_as_classes, report, project.folder)
    importer = _Importer(project, report, thumbnails)
    by_class: dict[str, list[int]] = {}
    with project.bulk_writes():
        for done, candidate in enumerate(candidates, start=1):
            if cancel is not None and cancel():
                logger.info("import cancelled after %d of %d files", done - 1, len(candidates))
                break
            image_id = importer.take(candidate.path)
            if image_id is not None and candidate.class_name is not None:
                by_class.setdefault(candidate.class_name, []).append(image_id)
            yield ImportProgress(done, len(candidates))
    _label_by_folder(project, by_class, report)
    logger.info(
        "import: %d added, %d duplicates, %d relinked, %d changed, %d skipped",
        len(report.added),
        len(report.duplicates),
        len(report.relinked),
        len(report.changed),
        len(report.skipped),
    )
    yield ImportFinished(report)


def _collect(
    paths: Iterable[Path], by_folder: bool, report: ImportReport, project_folder: Path
) -> list[_Candidate]:
    """Every file under ``paths`` (hidden files and folders left out), each real file once.

    The project's own folder (its database, caches and runs) is never imported, except the copies
    an older project kept of PACS instances (:data:`PACS_CACHE`), which are the images themselves.
    """
    found: list[_Candidate] = []
    seen: set[Path] = set()
    own = project_folder.resolve()
    retrieved = (project_folder / PACS_CACHE).resolve()
    for given in paths:
        root = Path(given).absolute()
        if root.is_dir():
            for path in _walk(root, report):
                relative = path.relative_to(root).parts
                name = relative[0] if by_folder and len(relative) > 1 else None
                found.append(_Candidate(path, name))
        elif root.exists():
            found.append(_Candidate(root, None))
        else:
            report.skipped.append((root, "file or folder not found"))
    unique = []
    for candidate in found:
        real = candidate.path.resolve()
        if real.is_relative_to(own) and not real.is_relative_to(retrieved):
            continue
        if real not in seen:
            seen.add(real)
            unique.append(candidate)
    return unique


def _walk(root: Path, report: ImportReport) -> list[Path]:
    files: list[Path] = []

    def failed(err: OSError) -> None:
        report.skipped.append((Path(err.filename or root), "folder cannot be read"))

    for folder, folders, names in os.walk(root, onerror=failed, followlinks=False):
        if DB_NAME in names and "runs" in folders:
            folders[:] = []
            report.skipped.append((Path(folder), "an EPT Studio project (its images are caches)"))
            continue
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        files.extend(Path(folder) / name for name in sorted(names) if not name.startswith("."))
    return files


def _label_by_folder(
    project: Project, by_class: dict[str, list[int]], report: ImportReport
) -> None:
    """One undoable labelling step per class folder.

    Single-label: an image that already has a label keeps it (the first folder, by name, wins).
    Multi-label: an image gets the class of every folder it is in (the same content twice).
    """
    multi = project.label_mode is LabelMode.MULTI
    labelled = {label.image_id for label in project.labels.all()}
    for name in sorted(by_class):
        ids = [i for i in dict.fromkeys(by_class[name]) if multi or i not in labelled]
        if not ids:
            continue
        existing = project.labels.class_by_name(name)
        class_id = existing.id if existing is not None else project.labels.add_class(name).id
        report.labelled[name] = len(project.labels.set_label(ids, class_id))
        labelled.update(ids)


class _Importer:
    """Takes one file at a time into the project, writing what it did into the report."""

    def __init__(self, project: Project, report: ImportReport, thumbnails: bool) -> None:
        self.project = project
        self.report = report
        self.thumbnails = thumbnails
        self.known = project.known_locations()

    def take(self, path: Path) -> int | None:
        """The image id the file now belongs to, or None if it was skipped."""
        if not is_utf8_name(path):
            self.report.skipped.append((path, NOT_UTF8_REASON))
            return None
        try:
            return self._take(path)
        except ImageDecodeError as err:
            self.report.skipped.append((path, err.reason))
        except OSError as err:
            self.report.skipped.append((path, f"file cannot be read ({err.strerror or err})"))
        except EptStudioError as err:
            self.report.skipped.append((path, str(err)))
        return None

    def _take(self, path: Path) -> int | None:
        kind = "dicom" if is_dicom_file(path) else "image" if is_image_path(path) else None
        if kind is None:
            self.report.skipped.append((path, "not a DICOM, PNG, JPEG, TIFF or BMP file"))
            return None
        status = path.stat()
        known = self.known.get(str(path))
        if known is not None and known[1:] == (status.st_size, status.st_mtime_ns, "ok"):
            self.report.duplicates.append((path, known[0]))
            return known[0]
        sha = file_sha256(path)
        for old in self.project.images_at(path):
            if old.sha256 != sha and old.status is not ImageStatus.CHANGED:
                self.project.set_status([old.id], ImageStatus.CHANGED)
                self.report.changed.append((path, old.id))
        existing = self.project.image_by_sha256(sha)
        if existing is not None:
            return self._seen_before(path, existing, status)
        return self._add(path, kind, sha, status)

    def _seen_before(self, path: Path, existing: ImageRecord, status: os.stat_result) -> int:
        """Content the project holds: the same file again, a copy of it, or the file moved."""
        old = existing.path
        if old == path or (old is not None and existing.status is ImageStatus.OK and old.exists()):
            if old == path:  # touched but unchanged, or back after it was missing
                self.project.relink(existing.id, path, status.st_size, status.st_mtime_ns)
            self.report.duplicates.append((path, existing.id))
        else:
            self.project.relink(existing.id, path, status.st_size, status.st_mtime_ns)
            self.report.relinked.append((path, existing.id))
        return existing.id

    def _add(self, path: Path, kind: str, sha: str, status: os.stat_result) -> int:
        spec = RenderingSpec()
        decoded = decode_file(path, frame=spec.frame)
        rows, columns = decoded.pixels.shape[:2]
        fields: dict[str, object] = {"photometric": decoded.photometric, "frames": decoded.frames}
        if kind == "dicom":
            fields.update(self._dicom_fields(path))
        if self.thumbnails:
            _thumbnail(path, spec, self.project.thumbnails_dir, sha)
        image = NewImage(
            sha256=sha,
            path=path,
            size=status.st_size,
            mtime_ns=status.st_mtime_ns,
            kind=kind,
            rows=int(rows),
            columns=int(columns),
            rendering=spec.to_dict(),
            **fields,  # type: ignore[arg-type]
        )
        image_id = self.project.add_image(image)
        self.project.set_pixel_hashes([(image_id, spec.frame, pixel_sha256(decoded))])
        self.report.added.append((path, image_id))
        if image.burned_in_annotation or (image.modality or "") in _TEXT_MODALITIES:
            self.report.text_in_pixels.append(image_id)
        return image_id

    def _dicom_fields(self, path: Path) -> dict[str, object]:
        header = read_dicom_header(path)
        return {
            "modality": header.modality,
            "frames": header.frames,
            "photometric": header.photometric,
            "patient_hash": self.project.hash_identifier(header.patient_id),
            "study_hash": self.project.hash_identifier(header.study_instance_uid),
            "series_hash": self.project.hash_identifier(header.series_instance_uid),
            "instance_number": header.instance_number,
            "burned_in_annotation": header.burned_in_annotation,
        }


def _thumbnail(path: Path, spec: RenderingSpec, folder: Path, sha: str) -> None:
    thumbnail_for(path, spec, folder, size=THUMBNAIL_SIZE, content_sha256=sha)


def pacs_cache_dir(project: Project) -> Path:
    """The project's copies of instances retrieved from a PACS (the PACS itself is never written).

    They keep their full DICOM headers (patient name, ID, birth date), so they live on this
    machine beside the location index (``<locations dir>/pacs/<project id>/``), never in the
    project folder, which a user shares.
    """
    return project.locations_dir / PACS_COPIES / project.project_id


def missing_or_changed(project: Project, image_ids: Sequence[int] | None = None) -> dict[str, int]:
    """Check where each image's file is: status ok / missing / changed; counts per status."""
    counts = {status.value: 0 for status in ImageStatus}
    for image in project.images():
        if image_ids is not None and image.id not in image_ids:
            continue
        status = _file_status(image.path, image.size, image.mtime_ns, image.sha256)
        if status is not image.status:
            project.set_status([image.id], status)
        counts[status.value] += 1
    return counts


def _file_status(path: Path | None, size: int, mtime_ns: int, sha: str) -> ImageStatus:
    if path is None:
        return ImageStatus.MISSING
    try:
        status = path.stat()
    except FileNotFoundError:
        return ImageStatus.MISSING
    except OSError:
        return ImageStatus.UNREADABLE
    if (status.st_size, status.st_mtime_ns) == (size, mtime_ns):
        return ImageStatus.OK
    try:
        return ImageStatus.OK if file_sha256(path) == sha else ImageStatus.CHANGED
    except OSError:
        return ImageStatus.UNREADABLE
