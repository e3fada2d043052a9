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
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ept_studio.core.model import LabelMode

EXPLODE_FACTOR = 5.0
EXPLODE_PATIENCE = 3
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

    @property
    def limit(self) -> float:
        return EXPLODE_FACTOR * max(self.first or 0.0, self.chance)

    def check(self, loss: float, step: int, lr: float) -> str | None:
        if not math.isfinite(loss):
            kind = "NaN" if math.isnan(loss) else "inf"
            return f"the training loss became {kind} at step {step} (learning rate {lr:.3g})"
        if self.first is None:
            self.first = loss
        self.high_steps = self.high_steps + 1 if loss > self.limit else 0
        if self.high_steps >= self.patience:
            return (
                f"the training loss exploded to {loss:.3g} at step {step}, above "
                f"{EXPLODE_FACTOR:g} x its start for {self.patience} steps "
                f"(learning rate {lr:.3g})"
            )
        return None


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
