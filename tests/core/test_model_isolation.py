"""A tuned model never changes the backbone it is built on, so one loaded backbone serves many models.

The services and the GUI keep one :class:`LoadedBackbone` and build every model on it; each model,
and the prompt file it saves, must be the same as if its backbone had been loaded fresh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from support import METHOD_MATRIX, tiny_backbone

from ept_studio.common.errors import ConfigError
from ept_studio.core.backbones import LoadedBackbone
from ept_studio.core.methods import MethodConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.prompt_file import PromptFileMetadata, backbone_fields, save_prompt_file
from ept_studio.services.model.inference import load_tuned_model

torch.set_num_threads(1)

CLASSES = ("benign", "malignant")
PAIRS = [(METHOD_MATRIX[i - 1], METHOD_MATRIX[i]) for i in range(len(METHOD_MATRIX))]
"""Every method once as the first model on a backbone and once as the second (cyclic neighbours)."""


def _pair_id(pair: tuple[MethodConfig, MethodConfig]) -> str:
    return " then ".join(_method_id(config) for config in pair)


def _method_id(config: MethodConfig) -> str:
    return "-".join(f"{v}" for v in config.to_dict().values() if v is not None)


def _pixels() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def _build(backbone: LoadedBackbone, config: MethodConfig, seed: int) -> TunedModel:
    """A model whose trainable tensors are all seeded noise, so every method changes the output."""
    torch.manual_seed(seed)
    model = TunedModel(backbone.model, config, num_classes=len(CLASSES))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model.eval()


@torch.no_grad()
def _plain_features(backbone: LoadedBackbone) -> torch.Tensor:
    plain: Any = backbone.model
    tokens: torch.Tensor = plain.forward_features(_pixels())
    return tokens[:, 0].clone()


def _anatomy(backbone: LoadedBackbone) -> dict[str, object]:
    """What a method could change in place: module types, tensor names, which tensors learn."""
    model = backbone.model
    return {
        "modules": [(name, type(m).__name__) for name, m in model.named_modules()],
        "state": sorted(model.state_dict()),
        "learning": [n for n, p in model.named_parameters() if p.requires_grad],
        "hooks": [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()],
    }


@pytest.mark.parametrize("pair", PAIRS, ids=[_pair_id(p) for p in PAIRS])
def test_building_models_leaves_the_plain_backbone_exactly_as_it_was(
    pair: tuple[MethodConfig, MethodConfig],
) -> None:
    backbone = tiny_backbone()
    before, anatomy = _plain_features(backbone), _anatomy(backbone)
    for seed, config in enumerate(pair, start=1):
        _build(backbone, config, seed)
    assert torch.equal(_plain_features(backbone), before)
    assert _anatomy(backbone) == anatomy


@pytest.mark.parametrize("pair", PAIRS, ids=[_pair_id(p) for p in PAIRS])
def test_second_model_equals_one_built_on_a_fresh_backbone(
    pair: tuple[MethodConfig, MethodConfig],
) -> None:
    first, second = pair
    shared = tiny_backbone()
    _build(shared, first, seed=1)
    on_shared = _build(shared, second, seed=2)
    on_fresh = _build(tiny_backbone(), second, seed=2)
    with torch.no_grad():
        shared_features = on_shared.features(_pixels())
        fresh_features = on_fresh.features(_pixels())
    assert torch.equal(shared_features, fresh_features)


@pytest.mark.parametrize("pair", PAIRS, ids=[_pair_id(p) for p in PAIRS])
def test_second_models_prompt_file_reproduces_it_on_shared_and_fresh_backbones(
    tmp_path: Path, pair: tuple[MethodConfig, MethodConfig]
) -> None:
    first, second = pair
    shared = tiny_backbone()
    _build(shared, first, seed=1)
    model = _build(shared, second, seed=2)
    with torch.no_grad():
        expected = model(_pixels())
    metadata = PromptFileMetadata(
        method=second.to_dict(),
        **backbone_fields(shared),
        label_mode="single",
        class_names=CLASSES,
    )
    path = tmp_path / "model.safetensors"
    save_prompt_file(path, model.trainable_state(), metadata)

    for backbone in (shared, tiny_backbone()):
        handle = load_tuned_model(path, backbone=backbone)
        with torch.no_grad():
            reloaded = handle.model(_pixels())
        torch.testing.assert_close(reloaded, expected, rtol=0, atol=1e-6)
    assert (expected[:, 0] - expected[:, 1]).abs().max().item() > 1e-3  # the logits say something


def test_a_tuned_models_backbone_is_refused_as_a_base() -> None:
    """Its prompts would be copied into the next model, which no prompt file could then reproduce."""
    tuned = TunedModel(tiny_backbone().model, METHOD_MATRIX[0], num_classes=2)
    with pytest.raises(ConfigError, match="already carries a tuning method"):
        TunedModel(tuned.backbone, METHOD_MATRIX[0], num_classes=2)
