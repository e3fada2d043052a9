"""Training as the desktop app runs it: the engine's own events, a quiet cancel, the device freed.

:func:`tune_project` wraps :func:`~ept_studio.services.project.training.train_on_project` for a
caller that must not import torch (the GUI). The training events it passes on are the torch-free
ones of :mod:`ept_studio.common.training_events`, so the app and the command line render the same
types. A cancel ends the run with :class:`TuningCancelled` rather than an error (the run is
recorded as cancelled; labels are untouched), and accelerator memory is given back however the
run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ept_studio.common.errors import EptStudioError, TrainingCancelled
from ept_studio.common.training_events import (
    EpochFinished,
    RunFailed,
    RunFinished,
    RunRestarted,
    RunStarted,
    StepFinished,
    TrainEvent,
)
from ept_studio.services.model.training_options import SHARE_MINIMUM, TrainingOptions
from ept_studio.services.project.training import (
    ProjectDataReady,
    ProjectTrainingSaved,
    train_on_project,
)

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone


@dataclasses.dataclass(frozen=True)
class TuningCancelled:
    """The user cancelled: the run is recorded as cancelled and nothing else changed."""

    run_id: int | None
    steps_done: int


_PASSED_ON = (
    ProjectDataReady,
    RunStarted,
    StepFinished,
    EpochFinished,
    RunRestarted,
    RunFinished,
    RunFailed,
    ProjectTrainingSaved,
)

TuningUpdate = ProjectDataReady | TrainEvent | ProjectTrainingSaved
"""What a run shows: its data, the engine's own training events, the saved run."""


def tune_project(
    folder: Path,
    options: TrainingOptions,
    *,
    backbone: LoadedBackbone | None = None,
    backbone_name: str | None = None,
    cancel: Callable[[], bool] | None = None,
    locations_dir: Path | None = None,
) -> Iterator[TuningUpdate | TuningCancelled]:
    """Train on the project's labels with ``options``; ends with the saved run or the cancel.

    ``backbone_name`` names the manifest backbone to load (None: the offline default);
    ``backbone``, an already loaded one, replaces it.

    A cancel is checked before every step (so it takes effect within one step). Errors other than a
    cancel propagate as :class:`~ept_studio.common.errors.EptStudioError` with a message for the user.
    """
    from ept_studio.core.device import free_device_memory, resolve_device

    run_id: int | None = None
    steps = 0
    events = train_on_project(
        folder,
        options.method_config(),
        options.recipe_overrides(),
        options.seed,
        backbone=backbone,
        backbone_name=backbone_name,
        cancel=cancel,
        locations_dir=locations_dir,
        hold_out=options.hold_out,
        coverage=options.coverage,
        calibrate_on_test=options.calibrate_on_test,
        slices_per_series=options.slices_per_series,
        share_minimum=SHARE_MINIMUM,
        detail=options.detail,
    )
    try:
        for event in events:
            if isinstance(event, ProjectDataReady):
                run_id = event.run_id
            elif isinstance(event, StepFinished):
                steps = event.step
            if isinstance(event, _PASSED_ON):
                yield event
    except TrainingCancelled:
        yield TuningCancelled(run_id, steps)
    finally:
        events.close()
        with contextlib.suppress(EptStudioError):
            free_device_memory(resolve_device(options.device))
