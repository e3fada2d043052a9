"""Visual Prompt Tuning (Jia et al. 2022), deep and shallow.

Token order ``[CLS, prompts, patches]``. Shallow inserts learnable tokens once, before the first block;
deep also replaces the prompt positions before every later block by that block's own prompts.

Init: VPT's ``uniform(-v, v)`` with ``v = sqrt(6 / (3 * patch * patch + width))`` (``init="uniform"``),
or, the default, ``init="tokens"``: each layer's prompts start at the mean patch token entering that
block for a mean-colour image (all zeros after normalisation) plus the same uniform noise. Why: every
block's LayerNorm makes a prompt's scale irrelevant to attention and leaves only its direction, and
on the DINOv2 ViT-S/14 backbone a random direction is far from the tokens the model knows: at init
the CLS token put up to 68 % of its attention on ten uniform prompts, and its final feature had a
cosine of 0.06 with the frozen model's (0.999 with the token init), so training began from
features that no longer told images apart. The prompts are still free, learnable input tokens in
every layer, as VPT defines them; only their starting point moves.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from ept_studio.common.errors import ConfigError
from ept_studio.core.methods.base import (
    Backbone,
    MethodConfig,
    MethodName,
    TuningMethod,
    freeze,
)

PROMPT_INITS = ("tokens", "uniform")


@dataclasses.dataclass(frozen=True)
class VptConfig(MethodConfig):
    """VPT settings: ``length`` prompt tokens, in every block (deep) or the first only; ``init``
    ``"tokens"`` (default) or ``"uniform"`` (the VPT paper's), see the module docstring."""

    method = MethodName.VPT
    length: int = 10
    deep: bool = True
    init: str = "tokens"

    def __post_init__(self) -> None:
        if not isinstance(self.length, int) or self.length < 1:
            raise ConfigError(f"VPT length must be a whole number >= 1, got {self.length}")
        if self.init not in PROMPT_INITS:
            raise ConfigError(f"VPT init must be 'tokens' or 'uniform', got {self.init!r}")


class VptPrompts(nn.Module):
    """The learnable prompt tokens ``[layers, length, width]`` and the hooks that place them."""

    def __init__(self, layers: int, length: int, width: int, patch: int, prefix: int) -> None:
        super().__init__()
        self.bound = math.sqrt(6.0 / (3 * patch * patch + width))
        self.tokens = nn.Parameter(
            torch.empty(layers, length, width).uniform_(-self.bound, self.bound)
        )
        self.prefix = prefix

    @torch.no_grad()
    def shift_to_tokens(self, centres: torch.Tensor) -> None:
        """Move each layer's prompts by that layer's mean patch token ``centres[layer]``."""
        self.tokens.add_(centres[: self.tokens.shape[0], None, :].to(self.tokens))

    def insert(self, x: torch.Tensor) -> torch.Tensor:
        """``[CLS, patches]`` -> ``[CLS, prompts, patches]`` with the first layer's prompts."""
        prompts = self.tokens[0].to(x.dtype).expand(x.shape[0], -1, -1)
        return torch.cat([x[:, : self.prefix], prompts, x[:, self.prefix :]], dim=1)

    def replace(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Swap the prompt positions for ``layer``'s own prompts."""
        length = self.tokens.shape[1]
        prompts = self.tokens[layer].to(x.dtype).expand(x.shape[0], -1, -1)
        return torch.cat([x[:, : self.prefix], prompts, x[:, self.prefix + length :]], dim=1)


class Vpt(TuningMethod):
    config: VptConfig

    def __init__(self, config: VptConfig) -> None:
        self.config = config

    @property
    def extra_prefix_tokens(self) -> int:
        return self.config.length

    def apply(self, backbone: Backbone) -> None:
        freeze(backbone)
        depth = len(backbone.blocks)
        patch = int(backbone.patch_embed.patch_size[0])
        prompts = VptPrompts(
            depth if self.config.deep else 1,
            self.config.length,
            int(backbone.embed_dim),
            patch,
            int(backbone.num_prefix_tokens),
        )
        if self.config.init == "tokens":
            prompts.shift_to_tokens(mean_patch_tokens(backbone, prompts.prefix))
        backbone.vpt = prompts
        backbone.blocks[0].register_forward_pre_hook(_inserter(prompts))
        if self.config.deep:
            for layer in range(1, depth):
                backbone.blocks[layer].register_forward_pre_hook(_replacer(prompts, layer))


@torch.no_grad()
def mean_patch_tokens(backbone: Backbone, prefix: int) -> torch.Tensor:
    """``[blocks, width]``: the mean patch token entering each block for an all-zero input image."""
    height, width = (int(side) for side in backbone.patch_embed.img_size)
    parameter = next(backbone.parameters())
    means: list[torch.Tensor] = []
    hooks = [
        block.register_forward_pre_hook(
            lambda _m, args: means.append(args[0][0, prefix:].float().mean(0))
        )
        for block in backbone.blocks
    ]
    was_training = backbone.training
    backbone.eval()
    try:
        backbone.forward_features(
            torch.zeros(1, 3, height, width, dtype=parameter.dtype, device=parameter.device)
        )
    finally:
        backbone.train(was_training)
        for hook in hooks:
            hook.remove()
    return torch.stack(means)


def _inserter(prompts: VptPrompts) -> Any:
    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (prompts.insert(args[0]), *args[1:])

    return hook


def _replacer(prompts: VptPrompts, layer: int) -> Any:
    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (prompts.replace(args[0], layer), *args[1:])

    return hook
