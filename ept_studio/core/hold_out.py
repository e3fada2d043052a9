"""Model selection without a separate validation set: a seeded fifth of each class held out.

The app and the accuracy protocol share this rule. A class needs :data:`HOLD_OUT_MINIMUM`
training images before a fifth of them (at least one) is kept aside to choose the best epoch;
when any class has fewer, or the labels are multi-label (an image belongs to several classes at
once), nothing is held out and the run trains for its fixed step budget. Pure Python: no torch.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

HOLD_OUT_MINIMUM = 5
"""Training images a class needs before a fifth of them is held out for model selection."""


def held_out_sizes(class_counts: Sequence[int], hold_out: bool, single_label: bool) -> list[int]:
    """How many training images of each class :func:`held_out_indices` keeps aside (0s: none)."""
    enough = bool(class_counts) and min(class_counts) >= HOLD_OUT_MINIMUM
    if not hold_out or not single_label or not enough:
        return [0] * len(class_counts)
    return [max(1, count // 5) for count in class_counts]


def held_out_indices(
    targets: Sequence[Hashable], hold_out: bool, seed: int, single_label: bool
) -> set[int]:
    """The positions of ``targets`` to hold out: a seeded fifth of each class, or none."""
    by_class: dict[Hashable, list[int]] = {}
    for index, target in enumerate(targets):
        by_class.setdefault(target, []).append(index)
    classes = sorted(by_class, key=str)
    sizes = held_out_sizes([len(by_class[c]) for c in classes], hold_out, single_label)
    rng = random.Random(seed)
    held: set[int] = set()
    for target, size in zip(classes, sizes, strict=True):
        if size:
            held.update(rng.sample(sorted(by_class[target]), size))
    return held


def calibration_half(targets: Sequence[Hashable], seed: int) -> set[int]:
    """The positions of ``targets`` to calibrate on: a seeded half (rounded down) of each target
    value's images, so the other half of every class is left to score."""
    by_target: dict[Hashable, list[int]] = {}
    for index, target in enumerate(targets):
        by_target.setdefault(target, []).append(index)
    rng = random.Random(seed)
    chosen: set[int] = set()
    for target in sorted(by_target, key=str):
        members = by_target[target]
        chosen.update(rng.sample(members, len(members) // 2))
    return chosen
