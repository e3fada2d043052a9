"""The rule a project must meet before a run can start, in one place.

The Train tab's checklist shows these reasons before the press and keeps Train disabled while any
holds; the training service enforces the same rule after rendering (when an unreadable file may
have taken a class's last training image). One function for both, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Sequence

NO_TRAINING_IMAGE = "no labelled image has the train role: label some images first"


def series_split_reason(count: int) -> str:
    """Why ``count`` series with slices in train and in test stop a run (the checklist's item and
    the training service's refusal start with it)."""
    which = "1 series has" if count == 1 else f"{count} series have"
    return (
        f"{which} slices in both train and test: neighbouring slices look almost the same, so "
        "the accuracy would look better than it is"
    )


def training_blockers(
    classes: Sequence[str], single_label: bool, train_counts: Sequence[int]
) -> list[str]:
    """Every reason a run cannot start, in the order a user fixes them (empty: it can start).

    ``train_counts[k]`` is the number of training images of ``classes[k]`` (multi-label: images
    that carry it).
    """
    if not classes:
        return ["the project has no class yet: add the classes you want the model to tell apart"]
    reasons: list[str] = []
    if single_label and len(classes) < 2:
        reasons.append(
            "a single-label project needs at least 2 classes to train: add another class"
        )
    if not any(train_counts):
        return [*reasons, NO_TRAINING_IMAGE]
    if single_label:
        reasons += [
            f"class {name!r} has no training image: label at least one image of it with the "
            "train role, or delete the class"
            for name, count in zip(classes, train_counts, strict=True)
            if count == 0
        ]
    return reasons
