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
from collections.abc import Sequence
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class SameImage:
    """Files of one class folder that are one image: ``kept`` is used, ``dropped`` left out."""

    kept: Path
    dropped: tuple[Path, ...]


def same_image_groups(fingerprints: Sequence[tuple[str, str]]) -> list[list[int]]:
    """Groups (of 2 or more, in input order) of the items that are one image.

    ``fingerprints[i]`` is item i's (file sha256, decoded-pixel sha256); two items are one image
    when either hash is equal, and so is any chain of such pairs.
    """
    parent = list(range(len(fingerprints)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_with: dict[tuple[int, str], int] = {}
    for i, fingerprint in enumerate(fingerprints):
        for kind, value in enumerate(fingerprint):
            j = first_with.setdefault((kind, value), i)
            parent[root(i)] = root(j)
    members: dict[int, list[int]] = {}
    for i in range(len(fingerprints)):
        members.setdefault(root(i), []).append(i)
    return sorted((group for group in members.values() if len(group) > 1), key=lambda g: g[0])
