"""Load a prompt file onto its backbone, then evaluate a labelled folder or predict on files."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ept_studio.common.errors import DatasetError
from ept_studio.data.folders import scan_class_folders
from ept_studio.services.model.images import (
    SkippedFile,
    load_images,
    rendering_spec,
    split_class_folders,
)

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model import LabelMode, TunedModel
    from ept_studio.core.prompt_file import PromptFileMetadata


@dataclasses.dataclass(frozen=True)
class TunedHandle:
    """A tuned model ready for inference, with the metadata of the prompt file it came from."""

    model: TunedModel
    metadata: PromptFileMetadata
    prompt_file: Path

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.metadata.class_names


def load_tuned_model(
    prompt_file: Path, *, weights: Path | None = None, backbone: LoadedBackbone | None = None
) -> TunedHandle:
    """Rebuild the tuned model of ``prompt_file``; refuses a backbone whose checksum differs."""
    from ept_studio.core.backbones import load_backbone
    from ept_studio.core.model import TunedModel
    from ept_studio.core.prompt_file import check_backbone, read_prompt_file

    tensors, metadata = read_prompt_file(prompt_file)
    loaded = backbone or load_backbone(
        metadata.backbone, weights=weights, img_size=metadata.input_size
    )
    check_backbone(metadata, loaded.spec.name, loaded.weights_sha256)
    model = TunedModel(loaded.model, metadata.method_config, len(metadata.class_names))
    model.load_trainable_state(tensors)
    return TunedHandle(model.eval(), metadata, prompt_file)


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
    from ept_studio.core.training import predict_probabilities
    from ept_studio.services.model.images import collect_files

    meta = handle.metadata
    files, missing = collect_files(paths)
    images, skipped = load_images(files, rendering_spec(meta.rendering))
    skipped = [SkippedFile(item.path, item.reason) for item in missing] + skipped
    if not images:
        return [], skipped
    probabilities = predict_probabilities(
        handle.model,
        [image.pixels for image in images],
        input_size=meta.input_size,
        mean=meta.mean,
        std=meta.std,
        label_mode=_label_mode(meta),
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
    from ept_studio.core.training import evaluate

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
    meta = handle.metadata
    result = evaluate(
        handle.model,
        samples,
        input_size=meta.input_size,
        mean=meta.mean,
        std=meta.std,
        label_mode=_label_mode(meta),
    )
    matrix = confusion_matrix(
        result.targets, result.probabilities.argmax(axis=1), len(handle.class_names)
    )
    return EvaluationReport(
        handle.class_names, dict(result.metrics), matrix.tolist(), len(samples), split.skipped
    )


def _label_mode(metadata: PromptFileMetadata) -> LabelMode:
    from ept_studio.core.model import LabelMode

    return LabelMode(metadata.label_mode)
