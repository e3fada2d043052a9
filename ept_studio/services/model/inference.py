"""Load a prompt file onto its backbone, then evaluate a labelled folder or predict on files.

A prompt file with a detail view (:mod:`ept_studio.core.detail`) loads it too, on the same weights
built for its larger input; predictions and evaluations then use the two views' combined logits,
as the exported model does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ept_studio.common.errors import DatasetError
from ept_studio.data.folders import scan_class_folders
from ept_studio.services.model.images import (
    SkippedFile,
    load_images,
    rendering_spec,
    split_class_folders,
)

if TYPE_CHECKING:
    import torch

    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model import LabelMode, TunedModel
    from ept_studio.core.prompt_file import PromptFileMetadata
    from ept_studio.core.training import EvalResult


@dataclasses.dataclass(frozen=True)
class TunedHandle:
    """A tuned model ready for inference, with the metadata of the prompt file it came from.

    ``detail``: the file's detail view (the frozen backbone at ``metadata.detail_input_size`` with
    its prototype head), None when it has none; whatever runs the model combines the two.
    """

    model: TunedModel
    metadata: PromptFileMetadata
    prompt_file: Path
    detail: TunedModel | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names


def load_tuned_model(
    prompt_file: Path,
    *,
    weights: Path | None = None,
    backbone: LoadedBackbone | None = None,
    detail_backbone: LoadedBackbone | None = None,
) -> TunedHandle:
    """Rebuild the tuned model of ``prompt_file``; refuses a backbone whose checksum differs.

    A file with a detail view gets it on the same weights built for its detail size:
    ``detail_backbone`` when given, else ``backbone`` rebuilt at that size, else the weights
    loaded at that size; its checksum is checked like the backbone's.
    """
    from ept_studio.core.backbones import backbone_at_size, load_backbone
    from ept_studio.core.detail import load_detail_view, split_detail
    from ept_studio.core.model import TunedModel
    from ept_studio.core.prompt_file import check_backbone, read_prompt_file

    tensors, metadata = read_prompt_file(prompt_file)
    tuned_tensors, detail_tensors = split_detail(tensors)
    loaded = backbone or load_backbone(
        metadata.backbone, weights=weights, img_size=metadata.input_size
    )
    check_backbone(metadata, loaded.spec.name, loaded.weights_sha256)
    detail = None
    size = metadata.detail_input_size
    if size is not None:  # from the backbone as loaded, before the tuned model wraps it
        if detail_backbone is not None:
            at_size = detail_backbone
        elif backbone is not None:
            at_size = backbone_at_size(backbone, size)
        else:
            at_size = load_backbone(metadata.backbone, weights=weights, img_size=size)
        _check_detail_backbone(metadata, at_size)
        detail = load_detail_view(at_size, detail_tensors, len(metadata.class_names))
    model = TunedModel(loaded.model, metadata.method_config, len(metadata.class_names))
    model.load_trainable_state(tuned_tensors)
    return TunedHandle(model.eval(), metadata, prompt_file, detail)


def _check_detail_backbone(metadata: PromptFileMetadata, loaded: LoadedBackbone) -> None:
    """The detail view's backbone: the file's weights, built for its detail size."""
    from ept_studio.common.errors import BackboneMismatchError
    from ept_studio.core.prompt_file import check_backbone

    check_backbone(metadata, loaded.spec.name, loaded.weights_sha256)
    if loaded.spec.input_size != metadata.detail_input_size:
        raise BackboneMismatchError(
            f"the detail view's backbone is built for {loaded.spec.input_size} px but the prompt "
            f"file's detail view takes {metadata.detail_input_size} px; load it at that size"
        )


def handle_scores(
    handle: TunedHandle,
    images: Sequence[torch.Tensor],
    *,
    batch_size: int = 16,
    raw_logits: bool = False,
) -> np.ndarray:
    """The model's probabilities ``[n, C]`` on rendered images (uint8 ``[3, H, W]``), or its
    logits with ``raw_logits``; with a detail view, the two views' combined logits (each view
    resizes the images to its own size) and their softmax."""
    from ept_studio.core.detail import log_softmax, scored_logits
    from ept_studio.core.training import predict_probabilities

    meta = handle.metadata
    mode = _label_mode(meta)
    if handle.detail is None or meta.detail_input_size is None:
        return predict_probabilities(
            handle.model,
            images,
            input_size=meta.input_size,
            mean=meta.mean,
            std=meta.std,
            label_mode=mode,
            batch_size=batch_size,
            raw_logits=raw_logits,
        )
    combined = scored_logits(
        handle.model,
        handle.detail,
        images,
        input_size=meta.input_size,
        detail_size=meta.detail_input_size,
        mean=meta.mean,
        std=meta.std,
        label_mode=mode,
        batch_size=batch_size,
    )
    if raw_logits:
        return combined
    probabilities: np.ndarray = np.exp(log_softmax(combined)).astype(np.float32)
    return probabilities


@dataclasses.dataclass(frozen=True)
class Prediction:
    """The predicted class of one image and the model score of every class (calibrated when the
    prompt file carries a temperature); ``prediction_set`` when it carries set thresholds."""

    path: Path
    sha256: str
    predicted_class: str
    scores: dict[str, float]
    prediction_set: tuple[str, ...] | None = None


def predict_files(
    handle: TunedHandle, paths: Iterable[Path], batch_size: int = 16
) -> tuple[list[Prediction], list[SkippedFile]]:
    """Model scores for every decodable file; the others are reported, not fatal.

    ``paths`` are gathered as the ONNX runner gathers them: folders expanded recursively, hidden
    files left out, each file once, a path that is not there reported.
    """
    from ept_studio.core.conformal import prediction_set
    from ept_studio.core.temperature import apply_temperature
    from ept_studio.services.model.images import collect_files

    meta = handle.metadata
    files, missing = collect_files(paths)
    images, skipped = load_images(files, rendering_spec(meta.rendering))
    skipped = [SkippedFile(item.path, item.reason) for item in missing] + skipped
    if not images:
        return [], skipped
    probabilities = handle_scores(
        handle,
        [image.pixels for image in images],
        batch_size=batch_size,
        raw_logits=meta.calibration is not None,
    )
    if meta.calibration is not None:
        probabilities = apply_temperature(
            probabilities, meta.calibration.temperature, meta.label_mode
        )
    names = meta.class_names
    conformal = meta.conformal
    predictions = [
        Prediction(
            image.path,
            image.sha256,
            names[int(row.argmax())],
            {name: float(score) for name, score in zip(names, row, strict=True)},
            None
            if conformal is None
            else tuple(names[c] for c in prediction_set(row, conformal.thresholds)),
        )
        for image, row in zip(images, probabilities, strict=True)
    ]
    return predictions, skipped


@dataclasses.dataclass(frozen=True)
class EvaluationReport:
    """Metrics of a tuned model on a labelled folder."""

    class_names: tuple[str, ...]
    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    images: int
    skipped: list[SkippedFile]


def evaluate_folder(handle: TunedHandle, data_dir: Path) -> EvaluationReport:
    """Evaluate on every image of a class-folder set whose class names the model knows."""
    from ept_studio.core.metrics import confusion_matrix

    scan = scan_class_folders(data_dir)
    unknown = sorted(set(scan.classes) - set(handle.class_names))
    if unknown:
        raise DatasetError(
            f"{data_dir}: the model was not trained on the classes {unknown}; it knows "
            f"{list(handle.class_names)}"
        )
    split = split_class_folders(scan, None, 0, spec=rendering_spec(handle.metadata.rendering))
    index = {name: i for i, name in enumerate(handle.class_names)}
    samples = [(image.pixels, index[scan.classes[y]]) for image, y in split.support]
    result = _evaluate(handle, samples)
    matrix = confusion_matrix(
        result.targets, result.probabilities.argmax(axis=1), len(handle.class_names)
    )
    return EvaluationReport(
        handle.class_names, dict(result.metrics), matrix.tolist(), len(samples), split.skipped
    )


def _evaluate(handle: TunedHandle, samples: Sequence[tuple[torch.Tensor, int]]) -> EvalResult:
    """Probabilities and metrics of the handle (with its detail view, when it has one)."""
    from ept_studio.core.metrics import classification_metrics
    from ept_studio.core.training import EvalResult, evaluate, target_tensor

    meta = handle.metadata
    mode = _label_mode(meta)
    if handle.detail is None:
        return evaluate(
            handle.model,
            samples,
            input_size=meta.input_size,
            mean=meta.mean,
            std=meta.std,
            label_mode=mode,
        )
    if not samples:
        raise DatasetError("the evaluation set is empty: add labelled images first")
    targets = target_tensor([t for _, t in samples], mode, handle.model.num_classes).numpy()
    probabilities = handle_scores(handle, [image for image, _ in samples])
    return EvalResult(probabilities, targets, classification_metrics(probabilities, targets, mode))


def _label_mode(metadata: PromptFileMetadata) -> LabelMode:
    from ept_studio.core.model import LabelMode

    return LabelMode(metadata.label_mode)
