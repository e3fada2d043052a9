"""Nearest-centroid prototypes on the tuned model's own features, and the linear head that equals them.

The features are the ones the head sees at step 0: the CLS token after the final norm, with the
tuning method at its initial state (EPT's and VPT's prompts as initialised, LoRA's zero update),
computed in eval mode on the test-time transform (no augmentation), in float32. So a head set by
:func:`set_prototype_head` predicts, before any training, exactly what the nearest-centroid
classifier of :func:`nearest_centroid_predict` predicts, on the support set and on any other image.

Single-label: centred cosine nearest-centroid (SimpleShot's CL2N, with centring on the mean of
the class means so an unbalanced support does not tilt it). With ``m`` that centre and ``u_c`` the
unit direction of class ``c``'s centred mean, ``argmax_c cos(f - m, u_c) = argmax_c (f - m) . u_c``
because ``||f - m||`` is the same for every class, so the head ``w_c = s u_c / r``,
``b_c = -s m . u_c / r`` is exact; ``r`` (the support's mean ``||f - m||``) only sets the softmax
temperature: logits are about ``s`` times a cosine.

Multi-label: per label, two centroids, the images carrying it and the rest; the logit is positive
exactly when an image is nearer (Euclidean) to the carrying centroid: ``w = s d / (r ||d||)``,
``d = mu_pos - mu_neg``, ``b = -w . (mu_pos + mu_neg) / 2``. A label that every (or no) support
image carries has no second centroid: its row keeps the normal init.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ept_studio.common.errors import DatasetError
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training.transforms import batch_tensors, eval_transform

FEATURE_BATCH = 16


@dataclasses.dataclass(frozen=True)
class Prototypes:
    """A linear nearest-centroid rule: ``logits = features @ weight.T + bias``.

    ``fitted`` marks the classes (labels) that got a prototype; the others keep the head's init.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    fitted: torch.Tensor


@torch.no_grad()
def support_features(
    model: TunedModel,
    images: Sequence[torch.Tensor],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
) -> torch.Tensor:
    """The head's inputs ``[n, width]`` (float32) for ``images``, in eval mode, without augmentation."""
    transform = eval_transform(input_size, mean, std)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model.features(batch_tensors(images[i : i + FEATURE_BATCH], transform).to(device))
            for i in range(0, len(images), FEATURE_BATCH)
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks).float().cpu()


def fit_prototypes(
    features: torch.Tensor,
    targets: torch.Tensor,
    label_mode: LabelMode,
    scale: float,
    num_classes: int,
) -> Prototypes:
    """The nearest-centroid head of the module docstring for ``features`` ``[n, width]``.

    ``targets``: class indices ``[n]`` (at least two classes present), or multi-hot ``[n, C]``.
    A class without support images is left unfitted.
    """
    features = features.double()
    if LabelMode(label_mode) is LabelMode.MULTI:
        return _per_label(features, targets.double(), scale)
    return _centred_cosine(features, targets, scale, num_classes)


def _centred_cosine(
    features: torch.Tensor, labels: torch.Tensor, scale: float, num_classes: int
) -> Prototypes:
    present = torch.bincount(labels, minlength=num_classes) > 0
    if int(present.sum()) < 2:
        raise DatasetError("a prototype head needs support images of at least two classes")
    classes = torch.nonzero(present).flatten()
    means = torch.stack([features[labels == c].mean(0) for c in classes.tolist()])
    centre = means.mean(0)
    weight = torch.zeros(num_classes, features.shape[1], dtype=torch.float64)
    weight[classes] = scale * F.normalize(means - centre, dim=-1) / _radius(features - centre)
    bias = -(weight @ centre)
    return Prototypes(weight.float(), bias.float(), present)


def _per_label(features: torch.Tensor, targets: torch.Tensor, scale: float) -> Prototypes:
    count = targets.sum(0)
    fitted = (count > 0) & (count < targets.shape[0])
    weight = torch.zeros(targets.shape[1], features.shape[1], dtype=torch.float64)
    bias = torch.zeros(targets.shape[1], dtype=torch.float64)
    radius = _radius(features - features.mean(0))
    for label in torch.nonzero(fitted).flatten().tolist():
        carries = targets[:, label] > 0.5
        positive, negative = features[carries].mean(0), features[~carries].mean(0)
        weight[label] = scale * F.normalize(positive - negative, dim=0) / radius
        bias[label] = -weight[label] @ (positive + negative) / 2
    return Prototypes(weight.float(), bias.float(), fitted)


def _radius(centred: torch.Tensor) -> torch.Tensor:
    """The mean distance to the centre (1 if the features are all equal), for the temperature."""
    radius = centred.norm(dim=-1).mean()
    return radius if bool(radius > 0) else torch.ones((), dtype=centred.dtype)


def set_prototype_head(model: TunedModel, prototypes: Prototypes) -> None:
    """Copy the fitted rows of ``prototypes`` into ``model.head`` (the others keep their init)."""
    head = model.head
    if tuple(prototypes.weight.shape) != tuple(head.weight.shape):
        raise DatasetError(
            f"prototypes for {prototypes.weight.shape[0]} classes do not fit a head of "
            f"{head.out_features}"
        )
    rows = prototypes.fitted.to(head.weight.device)
    with torch.no_grad():
        head.weight[rows] = prototypes.weight.to(head.weight)[rows]
        head.bias[rows] = prototypes.bias.to(head.bias)[rows]


def init_prototype_head(
    model: TunedModel,
    images: Sequence[torch.Tensor],
    targets: torch.Tensor,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    label_mode: LabelMode,
    scale: float,
) -> None:
    """Set ``model.head`` to the nearest-centroid rule of the support ``images`` and ``targets``."""
    features = support_features(model, images, input_size=input_size, mean=mean, std=std)
    prototypes = fit_prototypes(features, targets, label_mode, scale, model.num_classes)
    set_prototype_head(model, prototypes)


def nearest_centroid_predict(
    support: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor
) -> torch.Tensor:
    """The centred cosine nearest-centroid class of each query feature (the reference rule)."""
    classes = int(labels.max()) + 1
    means = torch.stack([support[labels == c].double().mean(0) for c in range(classes)])
    centre = means.mean(0)
    similarity = (
        F.normalize(queries.double() - centre, dim=-1) @ F.normalize(means - centre, dim=-1).T
    )
    return similarity.argmax(dim=-1)
