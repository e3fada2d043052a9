"""What a caller holding files, folders or a model file can do without a project: backbones,
folder training, inference with a prompt file or an ONNX model, export to ONNX.

The desktop app, the command line and the evidence harness import from here; the modules beside
this file are the service's parts. Qt-free; torch is imported only when a task needs it.
"""

from __future__ import annotations

from ept_studio.services.model.backbone_setup import (
    BackboneReady,
    get_offline_backbone,
    offline_backbone_status,
)
from ept_studio.services.model.backbones import (
    BackboneChoice,
    BackboneStatus,
    LicenceNotice,
    backbone_choices,
    backbone_licence,
    doctor,
    get_backbone,
    list_backbones,
)
from ept_studio.services.model.cluster import (
    LOCAL_RAY,
    RAY_MISSING,
    connect_ray,
    gpus_per_task,
    require_ray,
)
from ept_studio.services.model.export import (
    check_images,
    export_prompt_to_onnx,
    reference_check_files,
)
from ept_studio.services.model.images import (
    query_cap_problem,
)
from ept_studio.services.model.inference import (
    evaluate_folder,
    load_tuned_model,
    predict_files,
)
from ept_studio.services.model.metric_names import (
    metric_tooltip,
    plain_metric_name,
)
from ept_studio.services.model.onnx_inference import (
    BatchPredicted,
    InferenceEvent,
    InferenceFinished,
    InferenceStarted,
    OverlayOptions,
    iter_predictions,
    open_onnx_model,
    predict_paths,
)
from ept_studio.services.model.onnx_ray import (
    predict_onnx_on_ray,
)
from ept_studio.services.model.run_record import (
    RUN_RECORD_FORMAT,
    TrainingRecord,
    read_run_record,
)
from ept_studio.services.model.stages import (
    StageStarted,
)
from ept_studio.services.model.training import (
    DataReady,
    TrainingSaved,
    TrainRequest,
    train_on_folder,
)
from ept_studio.services.model.training_options import (
    DEFAULT_SLICES_PER_SERIES,
    DEFAULT_TRAINED_SHARE,
    METHOD_CHOICES,
    PROTOTYPE_START_RECIPES,
    RECIPE_CHOICES,
    TrainingOptions,
    coverage_error,
    device_choices,
    method_choice,
    parse_blocks,
)

__all__ = [
    "DEFAULT_SLICES_PER_SERIES",
    "DEFAULT_TRAINED_SHARE",
    "LOCAL_RAY",
    "METHOD_CHOICES",
    "PROTOTYPE_START_RECIPES",
    "RAY_MISSING",
    "RECIPE_CHOICES",
    "RUN_RECORD_FORMAT",
    "BackboneChoice",
    "BackboneReady",
    "BackboneStatus",
    "BatchPredicted",
    "DataReady",
    "InferenceEvent",
    "InferenceFinished",
    "InferenceStarted",
    "LicenceNotice",
    "OverlayOptions",
    "StageStarted",
    "TrainRequest",
    "TrainingOptions",
    "TrainingRecord",
    "TrainingSaved",
    "backbone_choices",
    "backbone_licence",
    "check_images",
    "connect_ray",
    "coverage_error",
    "device_choices",
    "doctor",
    "evaluate_folder",
    "export_prompt_to_onnx",
    "get_backbone",
    "get_offline_backbone",
    "gpus_per_task",
    "iter_predictions",
    "list_backbones",
    "load_tuned_model",
    "method_choice",
    "metric_tooltip",
    "offline_backbone_status",
    "open_onnx_model",
    "parse_blocks",
    "plain_metric_name",
    "predict_files",
    "predict_onnx_on_ray",
    "predict_paths",
    "query_cap_problem",
    "read_run_record",
    "reference_check_files",
    "require_ray",
    "train_on_folder",
]
