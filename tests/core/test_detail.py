"""The detail view's combination: the mean of two softmaxes, returned as logits."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from support import make_tiny_vit

from ept_studio.common.errors import ConfigError, PromptFileError
from ept_studio.core.backbones import random_backbone
from ept_studio.core.backbones.loader import LoadedBackbone, freeze
from ept_studio.core.detail import (
    DETAIL_BIAS,
    DETAIL_WEIGHT,
    combine_logits,
    combine_logits_torch,
    detail_tensors,
    fit_detail_view,
    load_detail_view,
    log_softmax,
    split_detail,
)
from ept_studio.core.methods import LinearConfig
from ept_studio.core.prompt_file import PromptFileMetadata, read_prompt_file, save_prompt_file
from ept_studio.core.training import nearest_centroid_predict, support_features
from ept_studio.core.training.transforms import eval_transform


def softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_the_combined_logits_give_the_mean_of_the_two_probabilities() -> None:
    rng = np.random.default_rng(0)
    tuned, detail = rng.normal(0, 3, (6, 4)), rng.normal(0, 3, (6, 4))
    combined = combine_logits(tuned, detail)
    assert combined.dtype == np.float32
    np.testing.assert_allclose(
        softmax(combined.astype(np.float64)), (softmax(tuned) + softmax(detail)) / 2, atol=1e-6
    )
    # log p itself: the probabilities sum to 1 without renormalising
    np.testing.assert_allclose(np.exp(combined.astype(np.float64)).sum(axis=1), 1.0, atol=1e-6)


def test_the_torch_combination_is_the_numpy_one() -> None:
    rng = np.random.default_rng(1)
    tuned, detail = rng.normal(0, 4, (5, 3)), rng.normal(0, 4, (5, 3))
    np.testing.assert_allclose(
        combine_logits_torch(torch.from_numpy(tuned), torch.from_numpy(detail)).numpy(),
        combine_logits(tuned, detail),
        atol=1e-6,
    )


def test_a_confident_detail_view_overturns_a_hesitant_tuned_model() -> None:
    tuned = np.array([[0.2, 0.0]])  # 55 % class 0
    detail = np.array([[0.0, 4.0]])  # 98 % class 1
    assert int(combine_logits(tuned, detail).argmax()) == 1
    assert int(combine_logits(tuned, -detail).argmax()) == 0


def test_huge_logits_stay_finite() -> None:
    combined = combine_logits(np.array([[1e4, -1e4]]), np.array([[-1e4, 1e4]]))
    assert np.isfinite(combined).all()
    np.testing.assert_allclose(np.exp(combined), [[0.5, 0.5]], atol=1e-6)
    np.testing.assert_allclose(np.exp(log_softmax(np.array([[800.0, 0.0]]))), [[1.0, 0.0]])


def test_logits_of_other_shapes_are_refused() -> None:
    with pytest.raises(ConfigError, match="one shape"):
        combine_logits(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ConfigError, match="one shape"):
        combine_logits(np.zeros(3), np.zeros(3))


# ---------------------------------------------------------------------------------------------
# The detail view in a prompt file

SHA = "ab" * 32


def _metadata(**overrides: Any) -> PromptFileMetadata:
    fields: dict[str, Any] = {
        "method": LinearConfig().to_dict(),
        "backbone": "tiny-vit-test",
        "backbone_sha256": SHA,
        "input_size": 32,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "label_mode": "single",
        "class_names": ("a", "b", "c"),
    }
    fields.update(overrides)
    return PromptFileMetadata(**fields)


def _tensors(detail: bool = True, width: int = 8) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "head.weight": torch.randn(3, width, generator=generator),
        "head.bias": torch.randn(3, generator=generator),
    }
    if detail:
        tensors[DETAIL_WEIGHT] = torch.randn(3, width, generator=generator)
        tensors[DETAIL_BIAS] = torch.randn(3, generator=generator)
    return tensors


def test_a_prompt_file_keeps_its_detail_view(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_prompt_file(path, _tensors(), _metadata(detail_input_size=64))
    tensors, metadata = read_prompt_file(path)
    assert metadata.detail_input_size == 64
    tuned, detail = split_detail(tensors)
    assert set(tuned) == {"head.weight", "head.bias"}
    torch.testing.assert_close(detail[DETAIL_WEIGHT], _tensors()[DETAIL_WEIGHT])
    # a file without one says nothing about it
    save_prompt_file(path, _tensors(detail=False), _metadata())
    _, plain = read_prompt_file(path)
    assert plain.detail_input_size is None
    assert "detail_input_size" not in plain.to_dict()


@pytest.mark.parametrize(
    ("tensors", "metadata", "reason"),
    [
        (_tensors(detail=False), {"detail_input_size": 64}, "needs the tensors"),
        (_tensors(), {}, "but no detail size"),
        (
            {**_tensors(), DETAIL_BIAS: torch.zeros(4)},
            {"detail_input_size": 64},
            "has shape",
        ),
    ],
)
def test_a_damaged_detail_view_is_refused(
    tmp_path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any], reason: str
) -> None:
    path = tmp_path / "m.safetensors"
    with pytest.raises(PromptFileError, match=reason):
        save_prompt_file(path, tensors, _metadata(**metadata))


def test_the_detail_size_is_checked() -> None:
    with pytest.raises(PromptFileError, match="detail_input_size"):
        _metadata(detail_input_size=32)
    with pytest.raises(PromptFileError, match="single-label"):
        _metadata(detail_input_size=64, label_mode="multi")


def test_a_stored_detail_view_predicts_what_was_fitted(tmp_path: Path) -> None:
    spec = random_backbone("vit_tiny_patch16_224", seed=0).spec
    loaded = LoadedBackbone(
        freeze(make_tiny_vit(img_size=64)), dataclasses.replace(spec, input_size=64), "tiny", None
    )
    generator = torch.Generator().manual_seed(3)
    images = [
        torch.randint(0, 256, (3, 40, 40), generator=generator, dtype=torch.uint8) for _ in range(6)
    ]
    view = fit_detail_view(loaded, images, [0, 0, 1, 1, 2, 2], 3, scale=10.0)
    assert not any(p.requires_grad for p in view.parameters())
    stored = detail_tensors(view)
    again = load_detail_view(loaded, stored, 3)
    pixels = torch.randn(2, 3, 64, 64, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(again(pixels), view(pixels))
    # the nearest-centroid rule: each class centre's own images mostly score their class
    features = support_features(view, images, input_size=64, mean=spec.mean, std=spec.std)
    predicted = nearest_centroid_predict(features, torch.tensor([0, 0, 1, 1, 2, 2]), features)
    with torch.no_grad():
        logits = torch.cat([view(p.unsqueeze(0)) for p in _normalised(images, spec)])
    assert logits.argmax(-1).tolist() == predicted.tolist()


def _normalised(images: list[torch.Tensor], spec: Any) -> list[torch.Tensor]:
    transform = eval_transform(64, spec.mean, spec.std)
    return [transform(image) for image in images]
