"""What every benchmark dataset hands to the services: labelled samples that read their own pixels.

Pixels are read lazily (``DatasetSample.read``), so a dataset of 2,000 images costs nothing until a
support or query set asks for some of them. Labels are class indices (single-label) or tuples of
0/1 (multi-label). ``group`` ties samples that must stay on one side of a support / query split
(frames of one file, slices of one series). Descriptions never carry patient data: package-data
file names, or a running number for a user's own images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np
from PIL import Image

Label = int | tuple[int, ...]
LabelModeName = Literal["single", "multi"]


@dataclasses.dataclass(frozen=True)
class DatasetCard:
    """Where a dataset comes from and how far to trust it: shown next to every result."""

    name: str
    title: str
    source: str
    licence: str
    labels: str
    limits: str


@dataclasses.dataclass(frozen=True, eq=False)
class DatasetSample:
    """One labelled image; ``read()`` returns it as ``H x W x 3`` uint8 RGB."""

    label: Label
    group: str
    description: str
    read: Callable[[], np.ndarray] = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class SkippedSource:
    """A file (or frame) a loader could not use, and why."""

    source: str
    reason: str


@dataclasses.dataclass(frozen=True, eq=False)
class LabelledDataset:
    """A labelled image set ready for the few-shot protocol."""

    card: DatasetCard
    class_names: tuple[str, ...]
    label_mode: LabelModeName
    samples: tuple[DatasetSample, ...]
    skipped: tuple[SkippedSource, ...] = ()
    notes: tuple[str, ...] = ()

    def counts(self) -> dict[str, int]:
        """Samples per class (for multi-label: samples carrying each label)."""
        totals = dict.fromkeys(self.class_names, 0)
        for sample in self.samples:
            if isinstance(sample.label, tuple):
                for name, flag in zip(self.class_names, sample.label, strict=True):
                    totals[name] += int(flag)
            else:
                totals[self.class_names[sample.label]] += 1
        return totals

    def group_counts(self) -> dict[str, int]:
        """Distinct groups (source files, series) per class (single-label only)."""
        groups: dict[str, set[str]] = {name: set() for name in self.class_names}
        for sample in self.samples:
            if isinstance(sample.label, int):
                groups[self.class_names[sample.label]].add(sample.group)
        return {name: len(found) for name, found in groups.items()}


def constant_reader(pixels: np.ndarray) -> Callable[[], np.ndarray]:
    """A reader for pixels already in memory."""

    def read() -> np.ndarray:
        return pixels

    return read


def grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    """``H x W`` uint8 to ``H x W x 3`` uint8."""
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))


def shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """``rgb`` with its longer side at most ``max_side`` pixels (Lanczos, aspect kept)."""
    height, width = rgb.shape[:2]
    side = max(height, width)
    if side <= max_side:
        return rgb
    size = (max(1, round(width * max_side / side)), max(1, round(height * max_side / side)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
