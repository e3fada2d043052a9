"""Embedded Prompt Tuning (Zu et al., Medical Image Analysis 2024, Eq. 5 and 8).

For each prompted block, a prompt ``P`` of shape ``[N, L]`` is concatenated in front of the attention
logits along the key axis; the softmax runs over all ``L + N`` columns and the prompt columns are
dropped before multiplying by the values. The same ``P`` serves every head and every sample.

Because ``softmax([p; u])[L:] = softmax(u) * sigmoid(lse(u) - lse(p))``, the forward pass depends on a
prompt row only through its logsumexp. The fast path uses that: one zero key per block whose logit is
``lse(P)``, through ``scaled_dot_product_attention``. It is exact, gradients included.
"""

from __future__ import annotations

import dataclasses
from enum import Enum

import torch
from torch import nn

from ept_studio.common.errors import ConfigError
from ept_studio.core.attention import PromptableAttention
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


class ConcatPrompt(nn.Module):
    """Pure_Cat: ``softmax([P; U])[:, L:]`` with ``P`` of shape ``[N, L]``."""

    def __init__(self, tokens: int, length: int, init_std: float) -> None:
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(tokens, length) * init_std)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        B, H, N, _ = logits.shape
        length = self.prompt.shape[-1]
        prompt = self.prompt.to(logits.dtype).expand(B, H, N, length)
        return torch.cat([prompt, logits], dim=-1).softmax(dim=-1)[..., length:]

    def fast_bias(self) -> torch.Tensor | None:
        return torch.logsumexp(self.prompt, dim=-1, keepdim=True)


class AddPrompt(nn.Module):
    """Add: ``softmax(U + P)`` with ``P`` of shape ``[N, N]``."""

    def __init__(self, tokens: int, init_std: float) -> None:
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(tokens, tokens) * init_std)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits + self.prompt.to(logits.dtype)).softmax(dim=-1)

    def fast_bias(self) -> torch.Tensor | None:
        return None


class MultiPrompt(nn.Module):
    """Multi: ``softmax(U * P)`` with ``P`` of shape ``[N, N]``.

    Initialised at ``1 + N(0, std)``: at ``N(0, std)`` alone the product would wipe out the frozen
    logits and start from uniform attention.
    """

    def __init__(self, tokens: int, init_std: float) -> None:
        super().__init__()
        self.prompt = nn.Parameter(1.0 + torch.randn(tokens, tokens) * init_std)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return (logits * self.prompt.to(logits.dtype)).softmax(dim=-1)

    def fast_bias(self) -> torch.Tensor | None:
        return None


class ScaledConcatPrompt(ConcatPrompt):
    """Multi_Cat: concat ``alpha * P`` where ``alpha_i = max_j u_ij - min_j u_ij`` (per head and row)."""

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        B, H, N, _ = logits.shape
        length = self.prompt.shape[-1]
        alpha = logits.amax(dim=-1, keepdim=True) - logits.amin(dim=-1, keepdim=True)
        prompt = alpha * self.prompt.to(logits.dtype).expand(B, H, N, length)
        return torch.cat([prompt, logits], dim=-1).softmax(dim=-1)[..., length:]

    def fast_bias(self) -> torch.Tensor | None:
        return None


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


def compact_prompts(prompts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collapse Pure_Cat prompts ``[N, L]`` to their exact inference form ``[N, 1]`` (the logsumexp)."""
    return {name: torch.logsumexp(t.float(), dim=-1, keepdim=True) for name, t in prompts.items()}
