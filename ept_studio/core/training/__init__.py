"""Training a tuned model: the recipe, the event-yielding loop, the transforms and evaluation."""

from __future__ import annotations

from ept_studio.core.training.evaluation import (
    EvalResult,
    Sample,
    Target,
    evaluate,
    predict_probabilities,
    target_tensor,
)
from ept_studio.core.training.events import (
    EpochFinished,
    RunFailed,
    RunFinished,
    RunRestarted,
    RunStarted,
    StepFinished,
    TrainEvent,
)
from ept_studio.core.training.loop import (
    SELECTION_METRIC,
    CancelCheck,
    build_optimizer,
    learning_rate_factor,
    seed_everything,
    train,
)
from ept_studio.core.training.prototype import (
    Prototypes,
    fit_prototypes,
    init_prototype_head,
    nearest_centroid_predict,
    set_prototype_head,
    support_features,
)
from ept_studio.core.training.recipe import (
    DEFAULT_CANDIDATE_RECIPE,
    PAPER_RECIPE,
    RECIPES,
    Bf16Mode,
    HeadInit,
    LrSchedule,
    OptimizerName,
    TrainRecipe,
    recipe_from_settings,
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
    "DEFAULT_CANDIDATE_RECIPE",
    "PAPER_RECIPE",
    "RECIPES",
    "SELECTION_METRIC",
    "Bf16Mode",
    "CancelCheck",
    "CropBox",
    "EpochFinished",
    "EvalResult",
    "HeadInit",
    "ImageTransform",
    "LrSchedule",
    "OptimizerName",
    "Prototypes",
    "RunFailed",
    "RunFinished",
    "RunRestarted",
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
    "fit_prototypes",
    "init_prototype_head",
    "learning_rate_factor",
    "nearest_centroid_predict",
    "predict_probabilities",
    "recipe_from_settings",
    "sample_crop",
    "seed_everything",
    "set_prototype_head",
    "support_features",
    "target_tensor",
    "train",
    "train_transform",
]
