"""The tuning methods: EPT per Eq. 5 (both paths), its variants, and the baselines' anatomy."""

from __future__ import annotations

import pytest
import timm
import torch
from support import METHOD_MATRIX, make_tiny_vit

from ept_studio.common.errors import ConfigError
from ept_studio.core.attention import ConcatPrompt
from ept_studio.core.methods import (
    EptConfig,
    FullConfig,
    LinearConfig,
    LoraConfig,
    MethodConfig,
    VptConfig,
    config_from_dict,
)
from ept_studio.core.model import TunedModel


def _pixels(seed: int = 1, batch: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _randomise_prompts(model: TunedModel, std: float = 0.5) -> None:
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.requires_grad and not name.startswith("head."):
                parameter.add_(torch.randn(parameter.shape, generator=generator) * std)


def test_prompt_equation_matches_definition() -> None:
    """softmax([P; U])[L:] per head, P shared over heads and batch, rows summing to < 1."""
    torch.manual_seed(0)
    prompt = ConcatPrompt(tokens=5, length=3, init_std=0.5)
    logits = torch.randn(2, 4, 5, 5)
    weights = prompt.weights(logits)
    for b in range(2):
        for h in range(4):
            full = torch.cat([prompt.prompt, logits[b, h]], dim=-1).softmax(-1)
            torch.testing.assert_close(weights[b, h], full[:, 3:], rtol=0, atol=1e-7)
    row_sums = weights.sum(-1)
    assert torch.all(row_sums < 1.0)
    assert torch.all(row_sums > 0.0)


def test_patch_wise_scaling_identity() -> None:
    """softmax([p; u])[L:] == softmax(u) * sigmoid(lse(u) - lse(p)) (paper Eq. 10)."""
    generator = torch.Generator().manual_seed(3)
    u = torch.randn(6, 9, generator=generator, dtype=torch.float64) * 3
    p = torch.randn(6, 100, generator=generator, dtype=torch.float64) * 0.02
    left = torch.cat([p, u], -1).softmax(-1)[:, 100:]
    right = u.softmax(-1) * torch.sigmoid(u.logsumexp(-1, True) - p.logsumexp(-1, True))
    assert (left - right).abs().max().item() < 1e-14


@pytest.mark.parametrize("layer_scale", [False, True])
@pytest.mark.parametrize("blocks", [None, (0,), (1,)])
def test_fast_path_matches_reference_in_outputs_and_gradients(
    layer_scale: bool, blocks: tuple[int, ...] | None
) -> None:
    models = {}
    for fast in (True, False):
        torch.manual_seed(11)
        backbone = make_tiny_vit(seed=5, layer_scale=layer_scale)
        models[fast] = TunedModel(backbone, EptConfig(blocks=blocks, fast_path=fast), 3)
        _randomise_prompts(models[fast])
    pixels = _pixels()
    outputs = {}
    grads = {}
    for fast, model in models.items():
        logits = model(pixels)
        (logits.square().sum() + logits[:, 0].sum()).backward()
        outputs[fast] = logits.detach()
        grads[fast] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert (outputs[True] - outputs[False]).abs().max().item() <= 1e-5
    assert grads[True].keys() == grads[False].keys()
    for name in grads[True]:
        diff = (grads[True][name] - grads[False][name]).abs().max().item()
        assert diff <= 1e-5, name
        assert grads[True][name].abs().max().item() > 0, f"{name} got no gradient"


def test_ept_parameter_count_on_vit_b16() -> None:
    """12 x 197 x 100 = 236,400 prompt values on ViT-B/16, plus the head."""
    backbone = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
    model = TunedModel(backbone, EptConfig(), num_classes=4)
    assert model.method_parameter_count() == 236_400
    assert model.trainable_parameter_count() == 236_400 + 768 * 4 + 4
    shapes = {tuple(t.shape) for n, t in model.trainable_state().items() if "prompt" in n}
    assert shapes == {(197, 100)}


def test_ept_on_layer_scale_backbone_uses_all_tokens() -> None:
    """DINOv2 layout at 224 px with patch 14: 16 x 16 patches + CLS = 257 tokens."""
    backbone = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=224, depth=2
    )
    model = TunedModel(backbone, EptConfig(length=7), 2)
    assert {tuple(t.shape) for n, t in model.trainable_state().items() if "prompt" in n} == {
        (257, 7)
    }


def test_ept_is_not_identity_at_init_and_attention_is_post_prompt() -> None:
    frozen = TunedModel(make_tiny_vit(seed=2), LinearConfig(), 3)
    torch.manual_seed(0)
    tuned = TunedModel(make_tiny_vit(seed=2), EptConfig(), 3)
    tuned.head.load_state_dict(frozen.head.state_dict())
    pixels = _pixels()
    frozen_logits, frozen_weights = frozen.forward_with_attention(pixels)
    tuned_logits, tuned_weights = tuned.forward_with_attention(pixels)
    assert (frozen_logits - tuned_logits).abs().max().item() > 1e-4
    frozen_rows = frozen_weights[0].sum(-1)
    tuned_rows = tuned_weights[0].sum(-1)
    torch.testing.assert_close(frozen_rows, torch.ones_like(frozen_rows))
    # With L = 100 zero-mean prompts and 17 keys, the prompt columns take most of each row's mass.
    assert tuned_rows.max().item() < 0.5
    assert tuned.cls_attention(tuned_weights[0]).shape == (2, 4, 16)


@pytest.mark.parametrize("config", METHOD_MATRIX, ids=lambda c: str(c.to_dict()))
def test_attention_capture_does_not_change_logits(config: MethodConfig) -> None:
    model = TunedModel(make_tiny_vit(seed=4, layer_scale=True), config, 3)
    _randomise_prompts(model, std=0.1)
    pixels = _pixels()
    plain = model(pixels)
    logits, weights = model.forward_with_attention(pixels, blocks=(0, -1))
    assert (plain - logits).abs().max().item() < 1e-5
    cls = model.cls_attention(weights[-1])
    assert cls.shape == (2, 4, 16)
    assert torch.all(cls >= 0)
    assert all(w.shape[-1] == w.shape[-2] for w in weights)


def test_trainable_tensors_per_method() -> None:
    counts = {}
    for config in METHOD_MATRIX:
        model = TunedModel(make_tiny_vit(), config, 3)
        counts[str(config.to_dict())] = model.method_parameter_count()
        frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
        if not isinstance(config, FullConfig):
            assert frozen, config
        assert model.head.weight.requires_grad
    tokens, depth, width = 17, 2, 64
    assert counts[str(EptConfig().to_dict())] == depth * tokens * 100
    assert counts[str(EptConfig.shallow().to_dict())] == tokens * 100
    assert counts[str(EptConfig(embedding="add").to_dict())] == depth * tokens * tokens
    assert counts[str(LinearConfig().to_dict())] == 0
    assert counts[str(VptConfig().to_dict())] == depth * 10 * width
    assert counts[str(VptConfig(deep=False).to_dict())] == 10 * width
    assert counts[str(LoraConfig(rank=4).to_dict())] == depth * 4 * 4 * width


def test_vpt_token_order_and_replacement() -> None:
    model = TunedModel(make_tiny_vit(seed=3), VptConfig(length=5), 3)
    seen: list[torch.Tensor] = []
    for block in model.backbone.blocks:
        block.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    model(_pixels())
    tokens = model.backbone.vpt.tokens
    assert seen[0].shape == (2, 1 + 5 + 16, 64)
    for layer, block_input in enumerate(seen):
        torch.testing.assert_close(block_input[0, 1:6], tokens[layer].detach())
    assert model.prefix_tokens == 6


def test_vpt_uniform_init_is_the_papers_bound() -> None:
    model = TunedModel(make_tiny_vit(seed=3), VptConfig(length=5, init="uniform"), 3)
    tokens = model.backbone.vpt.tokens
    bound = (6 / (3 * 8 * 8 + 64)) ** 0.5
    assert tokens.abs().max().item() <= bound
    assert tokens.abs().max().item() > 0.8 * bound


def test_vpt_token_init_starts_at_each_blocks_mean_patch_token() -> None:
    torch.manual_seed(0)
    uniform = TunedModel(make_tiny_vit(seed=3, layer_scale=True), VptConfig(init="uniform"), 3)
    torch.manual_seed(0)
    tokens = TunedModel(make_tiny_vit(seed=3, layer_scale=True), VptConfig(), 3)
    frozen = make_tiny_vit(seed=3, layer_scale=True)
    seen: list[torch.Tensor] = []
    for block in frozen.blocks:
        block.register_forward_pre_hook(lambda _m, args: seen.append(args[0][0, 1:].mean(0)))
    with torch.no_grad():
        frozen.forward_features(torch.zeros(1, 3, 32, 32))
    shift = tokens.backbone.vpt.tokens - uniform.backbone.vpt.tokens
    for layer, centre in enumerate(seen):
        torch.testing.assert_close(shift[layer], centre.expand(10, -1).detach())


def test_lora_starts_at_the_frozen_model_and_touches_only_q_and_v() -> None:
    pixels = _pixels()
    torch.manual_seed(0)
    frozen = TunedModel(make_tiny_vit(seed=9), LinearConfig(), 3)
    torch.manual_seed(0)
    lora = TunedModel(make_tiny_vit(seed=9), LoraConfig(rank=2), 3)
    lora.head.load_state_dict(frozen.head.state_dict())
    assert (frozen(pixels) - lora(pixels)).abs().max().item() == 0.0
    qkv = lora.backbone.blocks[0].attn.qkv
    with torch.no_grad():
        qkv.lora_b_q.fill_(0.1)
        qkv.lora_b_v.fill_(0.1)
    x = torch.randn(1, 3, 64)
    delta = qkv(x) - torch.nn.functional.linear(x, qkv.weight, qkv.bias)
    assert delta[..., :64].abs().min().item() > 0
    assert delta[..., 64:128].abs().max().item() == 0.0
    assert delta[..., 128:].abs().min().item() > 0
    assert "backbone.blocks.0.attn.qkv.weight" in dict(lora.named_parameters())


def test_config_round_trip_and_validation() -> None:
    for config in METHOD_MATRIX:
        assert config_from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="length"):
        EptConfig(length=0)
    with pytest.raises(ConfigError, match="unknown"):
        config_from_dict({"method": "ept", "lenght": 5})
    with pytest.raises(ConfigError, match="unknown tuning method"):
        config_from_dict({"method": "magic"})
    with pytest.raises(ConfigError, match="outside"):
        TunedModel(make_tiny_vit(), EptConfig(blocks=(5,)), 2)
