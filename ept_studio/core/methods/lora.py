"""LoRA (Hu et al. 2021) on the query and value projections of timm's fused ``qkv`` linear.

``W x + (alpha / r) * B A x`` added to the q and v thirds only; A Kaiming-uniform, B zeros, so the
model starts exactly at the frozen backbone.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from ept_studio.common.errors import ConfigError
from ept_studio.core.methods.base import (
    Backbone,
    MethodConfig,
    MethodName,
    TuningMethod,
    check_positive,
    freeze,
    resolve_blocks,
)


@dataclasses.dataclass(frozen=True)
class LoraConfig(MethodConfig):
    """LoRA settings: rank ``r``, scale ``alpha / r``, on every block unless ``blocks`` says otherwise."""

    method = MethodName.LORA
    rank: int = 8
    alpha: float = 8.0
    blocks: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if not isinstance(self.rank, int) or self.rank < 1:
            raise ConfigError(f"LoRA rank must be a whole number >= 1, got {self.rank}")
        check_positive("LoRA alpha", self.alpha)


class LoraQkv(nn.Module):
    """A fused qkv linear with low-rank updates on q and v; keeps the frozen ``weight``/``bias`` names."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__()
        self.weight = base.weight
        self.bias = base.bias
        width = base.in_features
        self.out_third = base.out_features // 3
        self.scaling = alpha / rank
        self.lora_a_q = nn.Parameter(_kaiming(rank, width))
        self.lora_b_q = nn.Parameter(torch.zeros(self.out_third, rank))
        self.lora_a_v = nn.Parameter(_kaiming(rank, width))
        self.lora_b_v = nn.Parameter(torch.zeros(self.out_third, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        dq = (x @ self.lora_a_q.t().to(x.dtype)) @ self.lora_b_q.t().to(x.dtype)
        dv = (x @ self.lora_a_v.t().to(x.dtype)) @ self.lora_b_v.t().to(x.dtype)
        delta = torch.cat([dq, torch.zeros_like(dq), dv], dim=-1) * self.scaling
        return out + delta


def _kaiming(rows: int, cols: int) -> torch.Tensor:
    tensor = torch.empty(rows, cols)
    nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))
    return tensor


class Lora(TuningMethod):
    config: LoraConfig

    def __init__(self, config: LoraConfig) -> None:
        self.config = config

    def apply(self, backbone: Backbone) -> None:
        freeze(backbone)
        for index in resolve_blocks(self.config.blocks, len(backbone.blocks)):
            attention = backbone.blocks[index].attn
            attention.qkv = LoraQkv(attention.qkv, self.config.rank, self.config.alpha)
