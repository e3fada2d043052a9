"""Visual Prompt Tuning (Jia et al. 2022), deep and shallow.

Token order ``[CLS, prompts, patches]``. Shallow inserts learnable tokens once, before the first block;
deep also replaces the prompt positions before every later block by that block's own prompts.
Init ``uniform(-v, v)`` with ``v = sqrt(6 / (3 * patch * patch + width))``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
from torch import nn

from ept_studio.core.methods.base import (
    Backbone,
    MethodConfig,
    MethodName,
    TuningMethod,
    freeze,
)
from ept_studio.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class VptConfig(MethodConfig):
    """VPT settings: ``length`` prompt tokens, in every block (deep) or the first only."""

    method = MethodName.VPT
    length: int = 10
    deep: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.length, int) or self.length < 1:
            raise ConfigError(f"VPT length must be a whole number >= 1, got {self.length}")


class VptPrompts(nn.Module):
    """The learnable prompt tokens ``[layers, length, width]`` and the hooks that place them."""

    def __init__(self, layers: int, length: int, width: int, patch: int, prefix: int) -> None:
        super().__init__()
        bound = math.sqrt(6.0 / (3 * patch * patch + width))
        self.tokens = nn.Parameter(torch.empty(layers, length, width).uniform_(-bound, bound))
        self.prefix = prefix

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
        backbone.vpt = prompts
        backbone.blocks[0].register_forward_pre_hook(_inserter(prompts))
        if self.config.deep:
            for layer in range(1, depth):
                backbone.blocks[layer].register_forward_pre_hook(_replacer(prompts, layer))


def _inserter(prompts: VptPrompts) -> Any:
    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (prompts.insert(args[0]), *args[1:])

    return hook


def _replacer(prompts: VptPrompts, layer: int) -> Any:
    def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return (prompts.replace(args[0], layer), *args[1:])

    return hook
