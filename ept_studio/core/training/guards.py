"""Catching runs that go wrong: a loss that diverges, and a model that predicts one class for all.

A loss diverges when it is not finite, or when it stays above ``EXPLODE_FACTOR`` times its
reference for ``patience`` steps in a row: at least ``EXPLODE_PATIENCE``, and at least one epoch's
steps, so that every batch of a pass must be bad. The reference is the larger of the first step's
loss and the chance-level loss (``ln C``, or ``ln 2`` per label for multi-label), so a
prototype-initialised head, whose first loss can be far below chance, is not flagged for a loss
that merely climbs back to chance. A single spike is not flagged: few-shot losses are noisy. Nor is
a run of bad batches within one epoch: a confident head meets augmented crops that lost what their
class is about (a textile defect cropped away) as losses near 10 on some batches, at any learning
rate, which no restart at a lower rate can cure.

A streak is divergence only when the updates caused it: the loop passes ``start_loss``, the
starting tensors' loss on the streak's last batch (the same augmented pixels), and the streak is
forgiven unless the current loss is at least ``UPDATES_FACTOR`` times that. With one image a class
(K = 1, one step an epoch) a whole epoch is a single batch, and crops of the single support image
gave losses of 8-18 that came back identical at learning rates of 1e-4, 1e-5 and 1e-6 (textiles,
linear, default preset): the data, not the updates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from ept_studio.core.model import LabelMode

EXPLODE_FACTOR = 5.0
EXPLODE_PATIENCE = 3
UPDATES_FACTOR = 2.0
"""A streak of high losses is divergence only if the current tensors' loss on the last batch is
at least this many times the starting tensors' loss on the same batch."""
LR_BACKOFF = 0.1
"""Each restart multiplies the recipe's learning rates by this."""

LOSS_ROSE_FACTOR = 1.25
"""A collapsed run restarts at a lower rate only if its last epoch's loss is this much above its
first step's: otherwise it under-trained, and a lower rate would not help."""


def chance_loss(label_mode: LabelMode, num_classes: int) -> float:
    """The loss of uniform predictions: ``ln C`` (cross-entropy) or ``ln 2`` (BCE per label)."""
    return math.log(2.0) if LabelMode(label_mode) is LabelMode.MULTI else math.log(num_classes)


@dataclasses.dataclass
class LossWatch:
    """Watches one attempt's step losses; :meth:`check` returns a message once they diverge."""

    chance: float
    patience: int = EXPLODE_PATIENCE
    first: float | None = None
    high_steps: int = 0
    forgiven: int = 0
    """Streaks that the starting tensors found as hard (see ``start_loss`` in :meth:`check`)."""

    @property
    def limit(self) -> float:
        return EXPLODE_FACTOR * max(self.first or 0.0, self.chance)

    def check(
        self, loss: float, step: int, lr: float, start_loss: Callable[[], float] | None = None
    ) -> str | None:
        """None, or the divergence message. ``start_loss`` (asked only when a streak reaches the
        patience) gives the starting tensors' loss on the current batch: a streak is forgiven
        when the current loss is below ``UPDATES_FACTOR`` times it."""
        if not math.isfinite(loss):
            kind = "NaN" if math.isnan(loss) else "inf"
            return f"the training loss became {kind} at step {step} (learning rate {lr:.3g})"
        if self.first is None:
            self.first = loss
        self.high_steps = self.high_steps + 1 if loss > self.limit else 0
        if self.high_steps < self.patience:
            return None
        if start_loss is None:
            versus_start = ""
        else:
            at_start = start_loss()
            if loss < UPDATES_FACTOR * at_start:
                self.high_steps = 0
                self.forgiven += 1
                return None
            versus_start = f" and {loss / at_start:.3g} x the starting model's on the same images"
        return (
            f"the training loss exploded to {loss:.3g} at step {step}, above "
            f"{EXPLODE_FACTOR:g} x its start for {self.patience} steps{versus_start} "
            f"(learning rate {lr:.3g})"
        )


def explode_patience(steps_per_epoch: int) -> int:
    """Steps in a row above the limit that count as divergence: ``EXPLODE_PATIENCE`` or an epoch."""
    return max(EXPLODE_PATIENCE, steps_per_epoch)


def collapse_message(probabilities: np.ndarray, labels: np.ndarray) -> str | None:
    """A message if every support image is predicted as the same class while the support has at
    least two classes (single-label); None otherwise."""
    if len(np.unique(labels)) < 2 or len(probabilities) == 0:
        return None
    predicted = probabilities.argmax(axis=1)
    if len(np.unique(predicted)) > 1:
        return None
    return (
        f"the model predicts class {int(predicted[0])} for every one of the {len(labels)} "
        "training images: it has not learned to tell the classes apart (try more steps, a "
        "prototype-initialised head, or a different learning rate)"
    )


def final_failure(message: str, restarts: int) -> str:
    """The message of a run that diverged on its last attempt."""
    tried = f" after {restarts} restarts at lower learning rates" if restarts else ""
    return (
        f"{message}{tried}: lower the learning rate, set a gradient clip, or check the images "
        "for broken pixel values"
    )
