"""One image twice: byte-identical copies, or the same decoded pixels in another encoding.

A copy on the train side and its twin on the test side makes the model look better than it is
(it is tested on an image it learned), so both routes keep the two sides disjoint by content:

- a folder of class folders keeps one file of each group and names the ones it left out;
- a project flags a group whose images have the train and the test role, so the checklist can
  stop the run and name the images (by their number, never by path).

Qt-free and torch-free.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from ept_studio.common.errors import ImageDecodeError
from ept_studio.data.pixel_hash import file_pixel_sha256
from ept_studio.data.store import ImageFilter, ImageStatus, Project, Role


@dataclasses.dataclass(frozen=True)
class DuplicateGroup:
    """Labelled images of a project with the same decoded pixels (ids, by role)."""

    train_ids: tuple[int, ...]
    test_ids: tuple[int, ...]

    @property
    def image_ids(self) -> tuple[int, ...]:
        return tuple(sorted({*self.train_ids, *self.test_ids}))

    @property
    def straddles(self) -> bool:
        """True when the model would be tested on an image it was trained on."""
        return bool(self.train_ids) and bool(self.test_ids)

    def reason(self) -> str:
        """What the checklist shows and the training service refuses with (ids, never paths)."""
        ids = [f"#{image_id}" for image_id in self.image_ids]
        sides = "one in train and one in test" if len(ids) == 2 else "in train and in test"
        listed = ids[0] if len(ids) == 1 else ", ".join(ids[:-1]) + " and " + ids[-1]
        return f"{listed} are the same image, {sides}: move them to one side."


def straddling_duplicates(project: Project) -> list[DuplicateGroup]:
    """The groups of one image that sit on both sides of the train / test split."""
    return [group for group in pixel_duplicates(project) if group.straddles]


def pixel_duplicates(project: Project) -> list[DuplicateGroup]:
    """Groups of two or more labelled images whose decoded pixels are equal.

    Only images whose file is here and unchanged count (the others are not trained on). Their
    hashes come from the store, written at import; an image without one for its frame (a project
    from an older version, or a frame changed since) is decoded once and its hash stored, so the
    checklist stays quick however often it is refreshed.
    """
    roles: dict[int, set[Role]] = {}
    for label in project.labels.all():
        roles.setdefault(label.image_id, set()).add(label.role)
    by_hash: dict[str, list[int]] = {}
    for image_id, value in sorted(_pixel_hashes(project, roles).items()):
        by_hash.setdefault(value, []).append(image_id)
    return [
        DuplicateGroup(
            tuple(i for i in ids if Role.TRAIN in roles[i]),
            tuple(i for i in ids if Role.TEST in roles[i]),
        )
        for ids in by_hash.values()
        if len(ids) > 1
    ]


def _pixel_hashes(project: Project, roles: dict[int, set[Role]]) -> dict[int, str]:
    """Image id -> pixel hash of each labelled, usable image; missing hashes computed and stored."""
    stored = project.pixel_hashes()
    found: dict[int, str] = {}
    computed: list[tuple[int, int, str]] = []
    for image in project.images(ImageFilter(status=ImageStatus.OK)):
        if image.id not in roles or image.path is None:
            continue
        frame = _frame(image.rendering)
        known = stored.get(image.id)
        if known is not None and known[0] == frame:
            found[image.id] = known[1]
            continue
        try:
            found[image.id] = file_pixel_sha256(image.path, frame)
        except (ImageDecodeError, OSError):
            continue  # the training service reports the file; nothing to compare here
        computed.append((image.id, frame, found[image.id]))
    if computed:
        project.set_pixel_hashes(computed)
    return found


def _frame(rendering: Mapping[str, object]) -> int:
    frame = rendering.get("frame", 0)
    return frame if isinstance(frame, int) and not isinstance(frame, bool) else 0
