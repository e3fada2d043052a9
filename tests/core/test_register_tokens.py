"""Register tokens (DINOv2 "with registers"): EPT counts them, and prompts sit after them.

A tiny seeded ViT with 4 registers: 28 px, patch 7, so 16 patches + 1 class + 4 registers = 21
tokens in every block, in the order [class, registers, patches].
"""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from ept_studio.core.methods import EptConfig, VptConfig
from ept_studio.core.methods.ept import token_count
from ept_studio.core.model import TunedModel

REGISTERS = 4
PATCHES = 16
TOKENS = 1 + REGISTERS + PATCHES


def _tiny_register_vit(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(
        "vit_small_patch14_reg4_dinov2",
        pretrained=False,
        img_size=28,
        patch_size=7,
        embed_dim=64,
        depth=2,
        num_heads=4,
        num_classes=0,
    )
    return model.eval()


def _pixels(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 28, 28, generator=torch.Generator().manual_seed(1))


def test_the_token_count_includes_the_register_tokens() -> None:
    backbone = _tiny_register_vit()
    assert (backbone.num_reg_tokens, backbone.num_prefix_tokens) == (REGISTERS, 1 + REGISTERS)
    assert token_count(backbone) == TOKENS
    model = TunedModel(backbone, EptConfig(length=6), 3)
    shapes = {tuple(t.shape) for n, t in model.trainable_state().items() if "prompt" in n}
    assert shapes == {(TOKENS, 6)}
    assert model.prefix_tokens == 1 + REGISTERS


@pytest.mark.parametrize("fast_path", [True, False])
def test_ept_runs_forward_and_backward_on_a_register_backbone(fast_path: bool) -> None:
    torch.manual_seed(3)
    model = TunedModel(_tiny_register_vit(), EptConfig(length=6, fast_path=fast_path), 3)
    logits, weights = model.forward_with_attention(_pixels())
    assert logits.shape == (2, 3)
    assert weights[0].shape == (2, 4, TOKENS, TOKENS)
    # The overlay's row skips the class and the register columns: one value per patch.
    assert model.cls_attention(weights[0]).shape == (2, 4, PATCHES)
    logits.square().sum().backward()
    prompts = [p for n, p in model.named_parameters() if "prompt" in n]
    assert len(prompts) == 2
    assert all(p.grad is not None and p.grad.abs().max().item() > 0 for p in prompts)


def test_each_prompt_row_belongs_to_its_token_registers_included() -> None:
    """Raising the prompt row of register 2 (token 3) lowers only that token's attention."""
    torch.manual_seed(5)
    model = TunedModel(_tiny_register_vit(), EptConfig(length=4, blocks=(0,)), 3)
    pixels = _pixels(batch=1)
    _, before = model.forward_with_attention(pixels, blocks=(0,))
    prompt = model.backbone.blocks[0].attn.prompt.prompt
    with torch.no_grad():
        prompt[3].add_(8.0)
    _, after = model.forward_with_attention(pixels, blocks=(0,))
    row_mass = (before[0] - after[0]).sum(-1)[0]  # [heads, tokens]
    changed = (row_mass.abs() > 1e-6).any(0).nonzero().flatten().tolist()
    assert changed == [3]
    assert row_mass[:, 3].min().item() > 0.1


def test_vpt_places_its_prompts_after_the_class_and_register_tokens() -> None:
    """VPT-deep with 3 tokens: block inputs are [class, 4 registers, 3 prompts, 16 patches]."""
    torch.manual_seed(2)
    model = TunedModel(_tiny_register_vit(), VptConfig(length=3), 3)
    seen: list[torch.Tensor] = []
    hook = model.backbone.blocks[1].register_forward_pre_hook(
        lambda _m, args: seen.append(args[0].detach())
    )
    try:
        logits, weights = model.forward_with_attention(_pixels(batch=1))
    finally:
        hook.remove()
    assert seen[0].shape == (1, TOKENS + 3, 64)
    block_prompts = model.backbone.vpt.tokens[1].detach()
    torch.testing.assert_close(seen[0][0, 1 + REGISTERS : 1 + REGISTERS + 3], block_prompts)
    assert model.prefix_tokens == 1 + REGISTERS + 3
    assert model.cls_attention(weights[0]).shape == (1, 4, PATCHES)
    logits.sum().backward()
