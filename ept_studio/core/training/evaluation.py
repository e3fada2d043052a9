"""Targets as tensors, and evaluation of a tuned model: probabilities and metrics on a sample set."""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence

import numpy as np
import torch

from ept_studio.common.errors import DatasetError
from ept_studio.core.device import resolve_device
from ept_studio.core.metrics import classification_metrics
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training.transforms import batch_tensors, eval_transform

Target = int | torch.Tensor | Sequence[float]
"""A class index (single-label) or a multi-hot vector of 0/1 (multi-label)."""

Sample = tuple[torch.Tensor, Target]
"""An RGB image ``[3, H, W]`` (uint8, or float in [0, 1]) and its target."""


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Probabilities ``[n, C]``, targets (``[n]`` indices or ``[n, C]`` 0/1) and their metrics."""

    probabilities: np.ndarray
    targets: np.ndarray
    metrics: dict[str, float]


def target_tensor(
    targets: Sequence[Target], label_mode: LabelMode, num_classes: int
) -> torch.Tensor:
    """Class indices ``[n]`` (int64) or multi-hot ``[n, C]`` (float32), checked against the head."""
    if LabelMode(label_mode) is LabelMode.MULTI:
        return _multi_hot(targets, num_classes)
    labels: list[int] = []
    for index, target in enumerate(targets):
        try:
            label = operator.index(target)  # type: ignore[arg-type]
        except TypeError as err:
            raise DatasetError(
                f"sample {index}: a single-label target must be a class index"
            ) from err
        if not 0 <= label < num_classes:
            raise DatasetError(
                f"sample {index} has class {label}, outside this model's 0..{num_classes - 1}"
            )
        labels.append(label)
    return torch.tensor(labels, dtype=torch.int64)


def _multi_hot(targets: Sequence[Target], num_classes: int) -> torch.Tensor:
    rows = [torch.as_tensor(target, dtype=torch.float32).flatten() for target in targets]
    for index, row in enumerate(rows):
        if row.numel() != num_classes:
            raise DatasetError(
                f"sample {index} has {row.numel()} labels, this model has {num_classes}"
            )
        if not bool(((row == 0) | (row == 1)).all()):
            raise DatasetError(f"sample {index}: multi-label targets must be 0 or 1")
    return torch.stack(rows)


def _probabilities(logits: torch.Tensor, label_mode: LabelMode) -> torch.Tensor:
    return logits.sigmoid() if label_mode is LabelMode.MULTI else logits.softmax(dim=-1)


@torch.no_grad()
def predict_probabilities(
    model: TunedModel,
    images: Sequence[torch.Tensor],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    label_mode: LabelMode,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    bf16: bool = False,
    raw_logits: bool = False,
) -> np.ndarray:
    """Class probabilities ``[n, C]`` (float32): softmax, or per-label sigmoid for multi-label.

    ``raw_logits``: the logits instead, for a caller that applies a stored temperature.

    Uses the test-time transform, in eval mode (the model's mode is put back afterwards). With
    ``device`` the model is moved there first; otherwise it runs where the model is.
    """
    target_device = _model_device(model, device)
    transform = eval_transform(input_size, mean, std)
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        for start in range(0, len(images), batch_size):
            pixels = batch_tensors(images[start : start + batch_size], transform)
            with torch.autocast(target_device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(pixels.to(target_device))
            scores = logits.float()
            if not raw_logits:
                scores = _probabilities(scores, LabelMode(label_mode))
            chunks.append(scores.cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, model.num_classes), dtype=np.float32)
    return torch.cat(chunks).numpy()


def evaluate(
    model: TunedModel,
    samples: Sequence[Sample],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    label_mode: LabelMode,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    bf16: bool = False,
) -> EvalResult:
    """Probabilities and :func:`~ept_studio.core.metrics.classification_metrics` on ``samples``."""
    if not samples:
        raise DatasetError("the evaluation set is empty: add labelled images first")
    mode = LabelMode(label_mode)
    targets = target_tensor([t for _, t in samples], mode, model.num_classes).numpy()
    probabilities = predict_probabilities(
        model,
        [image for image, _ in samples],
        input_size=input_size,
        mean=mean,
        std=std,
        label_mode=mode,
        batch_size=batch_size,
        device=device,
        bf16=bf16,
    )
    return EvalResult(probabilities, targets, classification_metrics(probabilities, targets, mode))


def _model_device(model: TunedModel, device: torch.device | str | None) -> torch.device:
    if device is None:
        return next(model.parameters()).device
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    model.to(resolved)
    return resolved
