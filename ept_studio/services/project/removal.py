"""Taking images out of a project, and the PACS copies that only they used.

The project's records go (:meth:`~ept_studio.data.store.Project.remove_images`: labels and the
location too); a file is deleted only when it is a copy this app made of a PACS instance, in this
project's own PACS folder (:func:`~ept_studio.services.project.importing.pacs_cache_dir`), and
no image left in the project refers to it. A user's own files are never touched. Ids that are not
in the project are refused before anything is taken out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

from ept_studio.common.errors import ProjectError
from ept_studio.data.store import Project
from ept_studio.services.project.importing import pacs_cache_dir

logger = logging.getLogger(__name__)

_COPY_NAME = re.compile(r"[0-9a-f]{64}\.dcm")
"""How the PACS import names a copy: the sha256 of its bytes."""


def remove_from_project(project: Project, image_ids: Sequence[int]) -> tuple[Path, ...]:
    """Take ``image_ids`` out of ``project``; returns the PACS copies deleted with them.

    Raises :class:`ProjectError`, with nothing taken out, when an id is not in the project.
    """
    wanted = set(image_ids)
    images = project.images()
    check_in_project(wanted, {image.id for image in images})
    was_at = {image.path for image in images if image.id in wanted and image.path}
    project.remove_images(list(image_ids))
    still_used = {image.path for image in project.images() if image.path}
    cache = pacs_cache_dir(project)
    orphans = tuple(path for path in sorted(was_at - still_used) if is_pacs_copy_of(path, cache))
    for path in orphans:
        path.unlink(missing_ok=True)
    if orphans:
        logger.info("removed %d PACS copies no image of the project uses", len(orphans))
    return orphans


def pacs_copies_among(project: Project, image_ids: Sequence[int]) -> int:
    """How many of ``image_ids`` are PACS copies that taking them out would delete (one copy is
    one image's: copies are named by their content)."""
    wanted, cache = set(image_ids), pacs_cache_dir(project)
    return sum(
        1
        for image in project.images()
        if image.id in wanted and image.path is not None and is_pacs_copy_of(image.path, cache)
    )


def check_in_project(wanted: set[int], known: set[int]) -> None:
    """Refuse ids that are not among the project's images, naming the first few."""
    unknown = sorted(wanted - known)
    if unknown:
        shown = ", ".join(str(i) for i in unknown[:5]) + (", …" if len(unknown) > 5 else "")
        count = "1 image is" if len(unknown) == 1 else f"{len(unknown)} images are"
        raise ProjectError(f"{count} not in this project (id {shown}): nothing was taken out")


def is_pacs_copy_of(path: Path, cache: Path) -> bool:
    """Whether ``path`` is a copy the PACS import made in ``cache`` (by name and place; a link is
    never one)."""
    if not _COPY_NAME.fullmatch(path.name) or path.is_symlink() or not path.is_file():
        return False
    try:
        return path.parent.resolve() == cache.resolve()
    except OSError:
        return False
