"""Embedded Prompt Tuning as a tuning method: its config and how it is put into a backbone.

EPT-DEEP (Eq. 8) prompts every block, EPT-SHALLOW (Eq. 7) the first only; any set of blocks can be
chosen. Each prompted block's attention gets one prompt of the chosen embedding way; the equations
(Eq. 5, Eq. 10, Fig. 5) live in :mod:`ept_studio.core.attention`.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

from torch import nn

from ept_studio.common.errors import ConfigError
from ept_studio.core.attention import (
    AddPrompt,
    ConcatPrompt,
    MultiPrompt,
    PromptableAttention,
    ScaledConcatPrompt,
)
from ept_studio.core.methods.base import (
    Backbone,
    MethodConfig,
    MethodName,
    TuningMethod,
    check_positive,
    freeze,
    resolve_blocks,
)


class EptEmbedding(str, Enum):
    """The paper's "embedding ways" (Fig. 5). ``pure_cat`` is the released method."""

    PURE_CAT = "pure_cat"
    ADD = "add"
    MULTI = "multi"
    MULTI_CAT = "multi_cat"


@dataclasses.dataclass(frozen=True)
class EptConfig(MethodConfig):
    """EPT settings. ``blocks=None`` prompts every block (EPT-DEEP); ``(0,)`` is EPT-SHALLOW.

    ``compact`` marks an inference-only model whose prompts were collapsed to their logsumexp
    (``length`` is then 1); it is set by the prompt-file loader, not by users.
    """

    method = MethodName.EPT
    length: int = 100
    blocks: tuple[int, ...] | None = None
    embedding: EptEmbedding = EptEmbedding.PURE_CAT
    init_std: float = 0.02
    fast_path: bool = True
    compact: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.embedding, str) and not isinstance(self.embedding, EptEmbedding):
            object.__setattr__(self, "embedding", EptEmbedding(self.embedding))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        if not isinstance(self.length, int) or self.length < 1:
            raise ConfigError(f"EPT prompt length must be a whole number >= 1, got {self.length}")
        check_positive("EPT init std", self.init_std)
        if self.compact and self.embedding is not EptEmbedding.PURE_CAT:
            raise ConfigError("only the pure_cat embedding has a compact inference form")

    @classmethod
    def shallow(cls, **kwargs: object) -> EptConfig:
        """EPT-SHALLOW (Eq. 7): the first block only."""
        return cls(blocks=(0,), **kwargs)  # type: ignore[arg-type]


def token_count(backbone: Backbone) -> int:
    """N: the number of tokens every block sees (class and register tokens plus patches)."""
    grid = backbone.patch_embed.grid_size
    return int(grid[0] * grid[1] + backbone.num_prefix_tokens)


class Ept(TuningMethod):
    """EPT bound to its config."""

    config: EptConfig

    def __init__(self, config: EptConfig) -> None:
        self.config = config

    def apply(self, backbone: Backbone) -> None:
        freeze(backbone)
        blocks = resolve_blocks(self.config.blocks, len(backbone.blocks))
        tokens = token_count(backbone)
        for index in blocks:
            block = backbone.blocks[index]
            if not isinstance(block.attn, PromptableAttention):
                block.attn = PromptableAttention(block.attn)
            block.attn.prompt = self._make_prompt(tokens)
            block.attn.use_fast_path = self.config.fast_path

    def _make_prompt(self, tokens: int) -> nn.Module:
        cfg = self.config
        if cfg.embedding is EptEmbedding.PURE_CAT:
            return ConcatPrompt(tokens, cfg.length, cfg.init_std)
        if cfg.embedding is EptEmbedding.MULTI_CAT:
            return ScaledConcatPrompt(tokens, cfg.length, cfg.init_std)
        if cfg.embedding is EptEmbedding.ADD:
            return AddPrompt(tokens, cfg.init_std)
        return MultiPrompt(tokens, cfg.init_std)
