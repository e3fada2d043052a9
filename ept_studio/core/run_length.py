"""How long a run is: epochs, batches and the step floor, and the presets' numbers for them.

The recipe (:mod:`ept_studio.core.training.recipe`) uses this arithmetic for the run itself; the
Train tab uses it to say before the press how many steps and passes a run will take. It lives
outside :mod:`ept_studio.core.training` because that package imports torch, and drawing the Train
tab must not. Pure Python, like :mod:`ept_studio.core.hold_out`.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class RunLength:
    """Epochs asked for, images a step, and the fewest optimiser steps a run may take.

    ``min_steps`` raises the number of epochs until the run has at least that many steps (a 1-shot
    support set of 3 images is one step an epoch, too few for the head and prompts to move).
    """

    epochs: int
    batch_size: int
    min_steps: int = 0

    def steps_per_epoch(self, train_size: int) -> int:
        """Optimiser steps per epoch: the last batch may be smaller, it is never dropped."""
        return math.ceil(train_size / self.batch_size)

    def epochs_for(self, train_size: int) -> int:
        """Epochs of a run over ``train_size`` samples: ``epochs``, raised to reach ``min_steps``."""
        return max(self.epochs, math.ceil(self.min_steps / self.steps_per_epoch(train_size)))

    def total_steps(self, train_size: int) -> int:
        """Optimiser steps of a full run over ``train_size`` samples."""
        return self.epochs_for(train_size) * self.steps_per_epoch(train_size)


PAPER_LENGTH = RunLength(epochs=20, batch_size=4)
"""Zu et al. 2024: 20 epochs of batches of 4, no step floor."""

DEFAULT_LENGTH = RunLength(epochs=10, batch_size=4, min_steps=50)
"""The few-shot default: 10 epochs of batches of 4, raised to at least 50 steps."""

PRESET_LENGTHS: dict[str, RunLength] = {"paper": PAPER_LENGTH, "default": DEFAULT_LENGTH}
"""The length of each named recipe preset (the same names as ``RECIPES``)."""
