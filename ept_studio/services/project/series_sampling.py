"""How a run's training images are taken from series: a few evenly spaced slices of each, and a
series kept whole on one side of any split.

A long series (a 300-slice CT) would otherwise outweigh a class of a single image in a few-shot
support set; its neighbouring slices are near copies. :func:`thin_series` keeps at most a given
number of slices of each series, evenly spaced over the slice order, the same every time.
:func:`split_units` groups the positions of a list by series, so a hold-out or a calibration
half picks whole series.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ept_studio.data.store import Project
from ept_studio.services.project.series import group_series


def evenly_spaced(slices: int, taken: int) -> list[int]:
    """The positions of ``taken`` of ``slices`` slices, evenly spaced from the first to the last
    (one: the middle); every position when ``taken`` is 0 or not fewer than ``slices``."""
    if taken <= 0 or taken >= slices:
        return list(range(slices))
    if taken == 1:
        return [(slices - 1) // 2]
    step = (slices - 1) / (taken - 1)
    return [int(k * step + 0.5) for k in range(taken)]


def thin_series(
    project: Project, image_ids: Collection[int], limit: int
) -> tuple[set[int], tuple[tuple[int, int], ...]]:
    """(the ids to leave out, (slices, slices taken) of each series thinned) when at most
    ``limit`` of ``image_ids`` may come from one series (0: no limit). Slices are counted among
    ``image_ids`` only, in slice order."""
    if limit <= 0:
        return set(), ()
    dropped: set[int] = set()
    thinned: list[tuple[int, int]] = []
    for series in group_series(project.images()):
        members = [image_id for image_id in series.image_ids if image_id in image_ids]
        if len(members) > limit:
            keep = {members[k] for k in evenly_spaced(len(members), limit)}
            dropped.update(image_id for image_id in members if image_id not in keep)
            thinned.append((len(members), limit))
    return dropped, tuple(thinned)


def split_units(keys: Sequence[str]) -> list[list[int]]:
    """The positions of ``keys`` (each item's series key) grouped by series, in the order of
    each series' first position."""
    groups: dict[str, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    return list(groups.values())
