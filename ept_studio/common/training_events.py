"""What a training run reports while it runs: plain, frozen data any thread or process can hold.

A run yields :class:`RunStarted` first, then one :class:`StepFinished` per optimiser step and one
:class:`EpochFinished` per epoch, and ends with exactly one :class:`RunFinished` or
:class:`RunFailed`. A diverged or collapsed attempt yields :class:`RunRestarted`, after which
steps and epochs count from 1 again (at lower learning rates, from the initial tensors).
Epochs and steps count from 1; times are seconds of wall clock since the run started.
"""

from __future__ import annotations

import dataclasses
from typing import TypeAlias


@dataclasses.dataclass(frozen=True)
class RunStarted:
    """The run is set up: the model is on ``device``; ``trainable_parameters`` values learn."""

    total_steps: int
    total_epochs: int
    device: str
    trainable_parameters: int
    bf16: bool = False
    """Whether the steps run under bfloat16 autocast."""
    bf16_reason: str = ""
    """Why, in plain words (``on: NVIDIA GPU with bfloat16``)."""


@dataclasses.dataclass(frozen=True)
class StepFinished:
    """One optimiser step: its loss and learning rate (the method's; the head's if it has none)."""

    epoch: int
    step: int
    total_steps: int
    loss: float
    lr: float
    elapsed_s: float
    eta_s: float


@dataclasses.dataclass(frozen=True)
class EpochFinished:
    """One pass over the training set; ``val_metrics`` is None without a validation set."""

    epoch: int
    train_loss: float
    val_metrics: dict[str, float] | None
    elapsed_s: float
    eta_s: float


@dataclasses.dataclass(frozen=True)
class RunFinished:
    """The run ended normally; the model holds the weights of ``best_epoch``.

    ``metrics`` are the validation metrics of that epoch (None without a validation set);
    ``stopped_early`` says early stopping ended the run before the last epoch. ``lr_scale`` is the
    factor on the recipe's learning rates of the attempt that finished (below 1 after restarts);
    ``warnings`` are problems a person should see, such as a model that predicts one class for
    every support image.
    """

    epochs_run: int
    best_epoch: int
    metrics: dict[str, float] | None
    stopped_early: bool
    elapsed_s: float
    lr_scale: float = 1.0
    warnings: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RunRestarted:
    """An attempt went wrong (``reason``); the run starts again from its initial tensors with the
    recipe's learning rates times ``lr_scale``. ``attempt`` counts the restarts from 1."""

    attempt: int
    reason: str
    lr_scale: float


@dataclasses.dataclass(frozen=True)
class RunFailed:
    """The run cannot go on (for example the loss became NaN); ``message`` says what to change."""

    message: str


TrainEvent: TypeAlias = (
    RunStarted | StepFinished | EpochFinished | RunRestarted | RunFinished | RunFailed
)
"""Any event a training run yields."""
