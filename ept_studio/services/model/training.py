"""Train a tuned model on a folder whose sub-folders are classes; save the prompt file and run record.

``train_on_folder`` is a generator: it yields :class:`DataReady`, then the engine's training events,
then :class:`TrainingSaved`. Any caller (CLI, GUI worker, test) iterates it and renders the events.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import platform
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common.errors import TrainingError
from ept_studio.data.folders import check_shots, scan_class_folders
from ept_studio.data.render import RenderingSpec
from ept_studio.services.model.images import LabelledSplit, SkippedFile, split_class_folders
from ept_studio.services.model.same_image import SameImage

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model import TunedModel

RUN_RECORD_FORMAT = "ept-studio-run/1"


@dataclasses.dataclass(frozen=True)
class TrainRequest:
    """Everything one training run needs. ``method`` and ``recipe`` are plain dicts (JSON-ready).

    ``method`` is a method config dict such as ``{"method": "ept", "length": 100}``; ``recipe`` holds
    overrides of the paper recipe (``{"epochs": 5}``). ``shots`` images per class train the model
    and the rest evaluate it: every class must keep at least one for evaluation.
    """

    data_dir: Path
    output: Path
    backbone: str | None = None
    backbone_weights: Path | None = None
    method: dict[str, Any] = dataclasses.field(default_factory=lambda: {"method": "ept"})
    recipe: dict[str, Any] = dataclasses.field(default_factory=dict)
    shots: int = 5
    seed: int = 0
    max_query_per_class: int | None = None
    compact: bool = False


@dataclasses.dataclass(frozen=True)
class DataReady:
    """The support and query sets are decoded: counts per class, what was skipped, and the files
    left out as the same image as another (``duplicates``)."""

    classes: tuple[str, ...]
    support_counts: dict[str, int]
    query_counts: dict[str, int]
    skipped: list[SkippedFile]
    duplicates: list[SameImage] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class TrainingSaved:
    """The run finished and its files are written; ``model`` is the tuned model, for in-app use."""

    prompt_file: Path
    prompt_sha256: str
    run_record: Path
    compact_file: Path | None
    metrics: dict[str, float]
    model: TunedModel = dataclasses.field(repr=False, compare=False)


def run_record_path(prompt_file: Path) -> Path:
    """Where the run record of a prompt file goes: next to it, ``NAME.run.json``."""
    return prompt_file.with_name(prompt_file.name.removesuffix(".safetensors") + ".run.json")


def train_on_folder(
    request: TrainRequest,
    cancel: Callable[[], bool] | None = None,
    backbone: LoadedBackbone | None = None,
) -> Iterator[object]:
    """Train on ``request.data_dir``; yields events (see the module docstring).

    ``backbone`` replaces the one named in the request (tests pass a small random one).
    """
    from ept_studio.core.backbones import load_backbone
    from ept_studio.core.methods import config_from_dict
    from ept_studio.core.model import LabelMode, TunedModel
    from ept_studio.core.training import (
        RunFailed,
        RunFinished,
        RunStarted,
        recipe_from_settings,
        seed_everything,
        train,
    )

    recipe = recipe_from_settings({**request.recipe, "seed": request.seed})
    method = config_from_dict(request.method)
    split = split_class_folders(
        scan_class_folders(request.data_dir),
        check_shots(request.shots),
        request.seed,
        request.max_query_per_class,
    )
    yield _data_ready(split)
    loaded = backbone or load_backbone(request.backbone, weights=request.backbone_weights)
    seed_everything(request.seed)
    model = TunedModel(loaded.model, method, num_classes=len(split.classes))
    finished: RunFinished | None = None
    device = "unknown"
    for event in train(
        model,
        [(image.pixels, label) for image, label in split.support],
        recipe,
        input_size=loaded.spec.input_size,
        mean=loaded.spec.mean,
        std=loaded.spec.std,
        label_mode=LabelMode.SINGLE,
        cancel=cancel,
    ):
        yield event
        if isinstance(event, RunFailed):
            raise TrainingError(event.message)
        if isinstance(event, RunStarted):
            device = event.device
        if isinstance(event, RunFinished):
            finished = event
    evaluation = _evaluate_query(model, split, loaded)
    training = {"device": device, **(dataclasses.asdict(finished) if finished else {})}
    yield _save(FinishedRun(request, model, loaded, split, recipe.to_dict(), evaluation, training))


def _data_ready(split: LabelledSplit) -> DataReady:
    def counts(items: list[tuple[Any, int]]) -> dict[str, int]:
        return {name: sum(1 for _, y in items if y == i) for i, name in enumerate(split.classes)}

    return DataReady(
        split.classes,
        counts(split.support),
        counts(split.query),
        split.skipped,
        split.duplicates,
    )


def _evaluate_query(
    model: TunedModel, split: LabelledSplit, loaded: LoadedBackbone
) -> dict[str, Any]:
    """Metrics and confusion matrix on the query set (empty when there is none)."""
    from ept_studio.core.metrics import confusion_matrix
    from ept_studio.core.model import LabelMode
    from ept_studio.core.training import evaluate

    if not split.query:
        return {"metrics": {}, "confusion_matrix": None, "query_size": 0}
    result = evaluate(
        model,
        [(image.pixels, label) for image, label in split.query],
        input_size=loaded.spec.input_size,
        mean=loaded.spec.mean,
        std=loaded.spec.std,
        label_mode=LabelMode.SINGLE,
    )
    predictions = result.probabilities.argmax(axis=1)
    matrix = confusion_matrix(result.targets, predictions, len(split.classes))
    return {
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "confusion_matrix": matrix.tolist(),
        "query_size": len(split.query),
    }


@dataclasses.dataclass(frozen=True)
class FinishedRun:
    """What a finished run knows before its files are written."""

    request: TrainRequest
    model: TunedModel
    loaded: LoadedBackbone
    split: LabelledSplit
    recipe: dict[str, Any]
    evaluation: dict[str, Any]
    training: dict[str, Any]


def _save(run: FinishedRun) -> TrainingSaved:
    from ept_studio.core.prompt_file import (
        PromptFileMetadata,
        backbone_fields,
        save_prompt_file,
        to_compact,
    )

    request, model, loaded, split = run.request, run.model, run.loaded, run.split

    metadata = PromptFileMetadata(
        method=model.method_config.to_dict(),
        **backbone_fields(loaded),
        label_mode="single",
        class_names=split.classes,
        rendering=RenderingSpec().to_dict(),
        metrics=run.evaluation["metrics"],
        seed=request.seed,
    )
    request.output.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.cpu() for k, v in model.trainable_state().items()}
    sha = save_prompt_file(request.output, tensors, metadata)
    compact_file = None
    if request.compact:
        compact_file = request.output.with_name(
            request.output.name.removesuffix(".safetensors") + ".compact.safetensors"
        )
        save_prompt_file(compact_file, *to_compact(tensors, metadata))
    record = _run_record(run, sha)
    record_path = run_record_path(request.output)
    record_path.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return TrainingSaved(
        request.output, sha, record_path, compact_file, run.evaluation["metrics"], model
    )


def _run_record(run: FinishedRun, prompt_sha256: str) -> dict[str, Any]:
    """Everything needed to re-run exactly. Images are identified by content hash, never by path."""
    import timm
    import torch

    request, model, loaded, split = run.request, run.model, run.loaded, run.split

    def images(items: list[tuple[Any, int]]) -> list[dict[str, str]]:
        return [{"sha256": image.sha256, "class": split.classes[y]} for image, y in items]

    return {
        "format": RUN_RECORD_FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "notice": RESEARCH_USE_NOTICE,
        "versions": {
            "ept_studio": __version__,
            "torch": torch.__version__,
            "timm": timm.__version__,
            "python": platform.python_version(),
        },
        "machine": {"platform": platform.platform(), "processor": platform.machine()},
        "seed": request.seed,
        "method": model.method_config.to_dict(),
        "recipe": run.recipe,
        "trainable_parameters": model.trainable_parameter_count(),
        "backbone": {"name": loaded.spec.name, "sha256": loaded.weights_sha256},
        "data": {
            "classes": list(split.classes),
            "shots": request.shots,
            "support": images(split.support),
            "query": images(split.query),
            "skipped_files": len(split.skipped),
            "copies_left_out": sum(len(same.dropped) for same in split.duplicates),
        },
        "training": run.training,
        "evaluation": run.evaluation,
        "prompt_file": {"name": request.output.name, "sha256": prompt_sha256},
    }
