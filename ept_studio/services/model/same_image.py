"""Files that are one image: the same bytes, or the same decoded pixels in another encoding.

Two items are one image when their file sha256 or their decoded-pixel sha256 is equal (and so is
any chain of such pairs). Qt-free and torch-free.
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
