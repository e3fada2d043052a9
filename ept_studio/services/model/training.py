"""Train a tuned model on a folder whose sub-folders are classes; save the prompt file and run record.

``train_on_folder`` is a generator: it yields :class:`DataReady`, then the engine's training events,
then :class:`TrainingSaved`. Any caller (CLI, GUI worker, test) iterates it and renders the events.
It gathers the images; fitting, evaluating and saving are the pipeline every route shares
(:mod:`~ept_studio.services.model.fitting`): the support images train, the query images test.
Every support image trains (none is held out), so a folder run's scores stay uncalibrated and its
run record and prompt file say why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ept_studio.data.folders import check_shots, scan_class_folders
from ept_studio.data.render import RenderingSpec
from ept_studio.services.model import fitting
from ept_studio.services.model.images import LabelledSplit, SkippedFile, split_class_folders
from ept_studio.services.model.run_record import RecordedData, RecordedImage
from ept_studio.services.model.same_image import SameImage

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model import TunedModel


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
    coverage: float = 0.90
    """How often a prediction set should contain the true class."""


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
    from ept_studio.core.model import TunedModel
    from ept_studio.core.training import recipe_from_settings, seed_everything

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
    support = [(image.pixels, label) for image, label in split.support]
    training = yield from fitting.fit(model, support, recipe, loaded, "single", cancel)
    calibrated = fitting.calibrate(
        model, [], loaded, "single", source="held-out support images", coverage=request.coverage
    )
    query = [(image.pixels, label) for image, label in split.query]
    evaluation, _ = fitting.evaluate_samples(
        model, query, loaded, "single", temperature=calibrated.temperature
    )
    run = fitting.FittedRun(
        source="folder",
        model=model,
        loaded=loaded,
        recipe=recipe.to_dict(),
        data=_recorded_data(request, split),
        training=training,
        evaluation=evaluation,
        rendering=RenderingSpec().to_dict(),
        calibrated=calibrated,
    )
    compact = None
    if request.compact:
        compact = request.output.with_name(
            request.output.name.removesuffix(".safetensors") + ".compact.safetensors"
        )
    record_path = run_record_path(request.output)
    files = fitting.save_run(run, request.output, record_path, compact_path=compact)
    yield TrainingSaved(
        request.output,
        files.prompt_sha256,
        record_path,
        files.compact_file,
        evaluation.metrics,
        model,
    )


def _recorded_data(request: TrainRequest, split: LabelledSplit) -> RecordedData:
    """The run record's data: support images train, query images test; by content hash only."""

    def images(items: list[tuple[Any, int]]) -> tuple[RecordedImage, ...]:
        return tuple(RecordedImage(image.sha256, int(y)) for image, y in items)

    return RecordedData(
        classes=tuple(split.classes),
        label_mode="single",
        train=images(split.support),
        test=images(split.query),
        shots=request.shots,
        skipped_files=len(split.skipped),
        copies_left_out=sum(len(same.dropped) for same in split.duplicates),
    )


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
