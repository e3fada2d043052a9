"""Training as the desktop app shows it: plain progress updates, cancel, and the device freed after.

:func:`tune_project` wraps :func:`~ept_studio.services.project_training.train_on_project` for a
caller that must not import torch (the GUI): the engine's events become the dataclasses below, a
cancel becomes :class:`TuningCancelled` (the run is recorded as cancelled; labels are untouched),
and accelerator memory is given back however the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ept_studio.common.errors import EptStudioError, TrainingCancelled
from ept_studio.services.project_training import (
    ProjectDataReady,
    ProjectTrainingSaved,
    train_on_project,
)
from ept_studio.services.training_options import TrainingOptions

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone


@dataclasses.dataclass(frozen=True)
class TuningStarted:
    """The model is on its device and about to take its first step."""

    run_id: int
    total_steps: int
    total_epochs: int
    device: str
    trainable_parameters: int


@dataclasses.dataclass(frozen=True)
class TuningStep:
    """One optimiser step; ``eta_s`` is the engine's estimate of the seconds left."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    learning_rate: float
    elapsed_s: float
    eta_s: float

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 1.0


@dataclasses.dataclass(frozen=True)
class TuningEpoch:
    """One pass over the training images; ``val_metrics`` only when a validation split exists."""

    epoch: int
    train_loss: float
    val_metrics: dict[str, float] | None
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class TuningRestarted:
    """The loss exploded (or the model collapsed): training starts again at a lower rate."""

    attempt: int
    reason: str
    lr_scale: float


@dataclasses.dataclass(frozen=True)
class TuningWarnings:
    """Problems the finished run found that a person should read (e.g. one class for all)."""

    warnings: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class TuningCancelled:
    """The user cancelled: the run is recorded as cancelled and nothing else changed."""

    run_id: int | None
    steps_done: int


TuningUpdate = (
    ProjectDataReady
    | TuningStarted
    | TuningStep
    | TuningEpoch
    | TuningRestarted
    | TuningWarnings
    | ProjectTrainingSaved
)


def tune_project(
    folder: Path,
    options: TrainingOptions,
    *,
    backbone: LoadedBackbone | None = None,
    cancel: Callable[[], bool] | None = None,
    locations_dir: Path | None = None,
) -> Iterator[TuningUpdate | TuningCancelled]:
    """Train on the project's labels with ``options``; ends with the saved run or the cancel.

    A cancel is checked before every step (so it takes effect within one step). Errors other than a
    cancel propagate as :class:`~ept_studio.common.errors.EptStudioError` with a message for the user.
    """
    from ept_studio.core.device import free_device_memory, resolve_device
    from ept_studio.core.training import (
        EpochFinished,
        RunFinished,
        RunRestarted,
        RunStarted,
        StepFinished,
    )

    run_id: int | None = None
    steps = 0
    events = train_on_project(
        folder,
        options.method_config(),
        options.recipe_overrides(),
        options.seed,
        backbone=backbone,
        cancel=cancel,
        locations_dir=locations_dir,
        hold_out=options.hold_out,
    )
    try:
        for event in events:
            if isinstance(event, ProjectDataReady):
                run_id = event.run_id
                yield event
            elif isinstance(event, RunStarted):
                yield TuningStarted(
                    run_id or 0,
                    event.total_steps,
                    event.total_epochs,
                    event.device,
                    event.trainable_parameters,
                )
            elif isinstance(event, StepFinished):
                steps = event.step
                yield TuningStep(
                    event.step,
                    event.total_steps,
                    event.epoch,
                    event.loss,
                    event.lr,
                    event.elapsed_s,
                    event.eta_s,
                )
            elif isinstance(event, EpochFinished):
                yield TuningEpoch(event.epoch, event.train_loss, event.val_metrics, event.elapsed_s)
            elif isinstance(event, RunRestarted):
                yield TuningRestarted(event.attempt, event.reason, event.lr_scale)
            elif isinstance(event, RunFinished) and event.warnings:
                yield TuningWarnings(tuple(event.warnings))
            elif isinstance(event, ProjectTrainingSaved):
                yield event
    except TrainingCancelled:
        yield TuningCancelled(run_id, steps)
    finally:
        events.close()
        with contextlib.suppress(EptStudioError):
            free_device_memory(resolve_device(options.device))
