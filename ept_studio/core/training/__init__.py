"""Training a tuned model: the recipe, the event-yielding loop, the transforms and evaluation."""

from __future__ import annotations

from ept_studio.core.training.events import (
    EpochFinished,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    TrainEvent,
)
from ept_studio.core.training.loop import (
    SELECTION_METRIC,
    CancelCheck,
    EvalResult,
    Sample,
    Target,
    build_optimizer,
    evaluate,
    learning_rate_factor,
    predict_probabilities,
    seed_everything,
    target_tensor,
    train,
)
from ept_studio.core.training.recipe import (
    PAPER_RECIPE,
    RECIPES,
    Bf16Mode,
    LrSchedule,
    OptimizerName,
    TrainRecipe,
)
from ept_studio.core.training.transforms import (
    CropBox,
    ImageTransform,
    batch_tensors,
    eval_transform,
    sample_crop,
    train_transform,
)

__all__ = [
    "PAPER_RECIPE",
    "RECIPES",
    "SELECTION_METRIC",
    "Bf16Mode",
    "CancelCheck",
    "CropBox",
    "EpochFinished",
    "EvalResult",
    "ImageTransform",
    "LrSchedule",
    "OptimizerName",
    "RunFailed",
    "RunFinished",
    "RunStarted",
    "Sample",
    "StepFinished",
    "Target",
    "TrainEvent",
    "TrainRecipe",
    "batch_tensors",
    "build_optimizer",
    "eval_transform",
    "evaluate",
    "learning_rate_factor",
    "predict_probabilities",
    "sample_crop",
    "seed_everything",
    "target_tensor",
    "train",
    "train_transform",
]
