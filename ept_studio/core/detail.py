"""The second look at fine detail: the tuned model's class probabilities averaged with those of
the untrained nearest-centroid prototype on the same backbone built for a larger input.

The tuned model sees the image at the backbone's own size (224 px for the offline ViT-S/14: 16 x
16 patches of 14 px). Fine texture that 224 px blurs survives at 448 px (32 x 32 patches), where
the frozen backbone's class token, compared with the class centres of the training images at that
size (:mod:`ept_studio.core.training.prototype`), needs no training at all. The two views are
combined in probability space, each with weight 1/2:

``p = (softmax(z_tuned) + softmax(z_detail)) / 2``

returned as logits ``log p`` (``softmax(log p) = p``), so everything that reads logits (the
temperature, the prediction sets, the reports) works unchanged. Single-label only: a multi-label
model's per-label sigmoids are not combined here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ept_studio.common.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.model import LabelMode, TunedModel

DETAIL_FACTOR = 2
"""The detail view sees the image at this many times the backbone's own input size (448 px for
the offline backbone's 224: 32 x 32 patches of 14 px). A multiple of the size is a multiple of
the patch."""
DETAIL_PREFIX = "detail."
DETAIL_WEIGHT = "detail.weight"
DETAIL_BIAS = "detail.bias"
"""The detail view's prototype head in a prompt file, beside the tuned model's tensors."""


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax`` over the last axis, in float64 (stable for any logit range)."""
    values = np.asarray(logits, dtype=np.float64)
    shifted = values - values.max(axis=-1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


def combine_logits(tuned: np.ndarray, detail: np.ndarray) -> np.ndarray:
    """``log((softmax(tuned) + softmax(detail)) / 2)`` ``[B, C]`` float32, from two ``[B, C]``
    logit arrays of the same images and classes."""
    tuned_array, detail_array = np.asarray(tuned), np.asarray(detail)
    if tuned_array.shape != detail_array.shape or tuned_array.ndim != 2:
        raise ConfigError(
            "the tuned and the detail logits must both be [images, classes] of one shape, got "
            f"{tuned_array.shape} and {detail_array.shape}"
        )
    combined = np.logaddexp(log_softmax(tuned_array), log_softmax(detail_array)) - math.log(2.0)
    result: np.ndarray = combined.astype(np.float32)
    return result


def scored_logits(
    tuned: TunedModel,
    detail: TunedModel | None,
    images: Sequence[torch.Tensor],
    *,
    input_size: int,
    detail_size: int | None,
    mean: Sequence[float],
    std: Sequence[float],
    label_mode: LabelMode,
    batch_size: int = 16,
) -> np.ndarray:
    """The logits ``[n, C]`` a model scores rendered images (uint8 ``[3, H, W]``) with: the tuned
    model's at ``input_size``, combined with the detail view's at ``detail_size`` when there is
    one (each view resizes the images to its own size)."""
    from ept_studio.core.training.evaluation import predict_probabilities

    def logits_of(view: TunedModel, size: int) -> np.ndarray:
        return predict_probabilities(
            view,
            images,
            input_size=size,
            mean=mean,
            std=std,
            label_mode=label_mode,
            batch_size=batch_size,
            raw_logits=True,
        )

    own = logits_of(tuned, input_size)
    if detail is None or detail_size is None or not len(images):
        return own
    return combine_logits(own, logits_of(detail, detail_size))


def combine_logits_torch(tuned: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """:func:`combine_logits` in torch (for the exported graph): ``[B, C]`` each, same dtype."""
    import torch

    both = torch.logaddexp(torch.log_softmax(tuned, dim=-1), torch.log_softmax(detail, dim=-1))
    return both - math.log(2.0)


def split_detail(
    tensors: Mapping[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A prompt file's tensors as (the tuned model's, the detail view's head)."""
    tuned = {name: t for name, t in tensors.items() if not name.startswith(DETAIL_PREFIX)}
    detail = {name: t for name, t in tensors.items() if name.startswith(DETAIL_PREFIX)}
    return tuned, detail


def detail_tensors(view: TunedModel) -> dict[str, torch.Tensor]:
    """The detail view's head as prompt-file tensors (``detail.weight``, ``detail.bias``)."""
    return {
        DETAIL_WEIGHT: view.head.weight.detach().float().cpu().clone(),
        DETAIL_BIAS: view.head.bias.detach().float().cpu().clone(),
    }


def detail_view(loaded: LoadedBackbone, num_classes: int) -> TunedModel:
    """An untrained view on ``loaded`` (the backbone built for the detail size): the frozen
    backbone and a linear head, to be set by :func:`fit_detail_view` or :func:`load_detail_view`."""
    from ept_studio.core.methods import LinearConfig
    from ept_studio.core.model import TunedModel

    view = TunedModel(loaded.model, LinearConfig(), num_classes)
    for parameter in view.parameters():
        parameter.requires_grad_(False)
    return view.eval()


def fit_detail_view(
    loaded: LoadedBackbone,
    images: Sequence[torch.Tensor],
    labels: Sequence[int],
    num_classes: int,
    scale: float,
    device: str = "cpu",
) -> TunedModel:
    """The detail view of the training ``images`` (uint8 ``[3, H, W]``) and their class indices:
    the nearest-centroid prototype head on the frozen backbone at ``loaded``'s input size."""
    import torch

    from ept_studio.core.model import LabelMode
    from ept_studio.core.training.prototype import init_prototype_head

    view = detail_view(loaded, num_classes).to(device)
    spec = loaded.spec
    init_prototype_head(
        view,
        images,
        torch.as_tensor(list(labels), dtype=torch.long),
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        label_mode=LabelMode.SINGLE,
        scale=scale,
    )
    return view


def load_detail_view(
    loaded: LoadedBackbone, tensors: Mapping[str, torch.Tensor], num_classes: int
) -> TunedModel:
    """The detail view stored in a prompt file (its ``detail.*`` tensors) on ``loaded``."""
    import torch

    view = detail_view(loaded, num_classes)
    with torch.no_grad():
        view.head.weight.copy_(tensors[DETAIL_WEIGHT])
        view.head.bias.copy_(tensors[DETAIL_BIAS])
    return view
