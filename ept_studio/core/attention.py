"""A drop-in replacement for timm's ``Attention`` whose logits can be prompted and whose weights can be read.

The replacement takes over the original module's sub-modules under the same names (``qkv``, ``proj``,
...), so the backbone's state-dict keys do not change. Without a prompt and without capture it runs the
same fused ``scaled_dot_product_attention`` call as timm.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn


class LogitPrompt(Protocol):
    """How a tuning method changes one block's attention logits ``U = q k^T / sqrt(d)``."""

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        """Attention weights ``[B, H, N, N]`` from logits ``[B, H, N, N]`` (the reference path)."""
        ...

    def fast_bias(self) -> torch.Tensor | None:
        """``[N, K]`` logits of K extra keys whose values are zero, or None if the prompt has no fast path."""
        ...


class PromptableAttention(nn.Module):
    """timm ``Attention`` with an optional :class:`LogitPrompt` and optional capture of its weights.

    ``capture`` makes the block keep its post-prompt attention weights in ``last_weights``
    (``[B, H, N, N]``); the tuned model reads them for overlays and ONNX export.
    """

    def __init__(self, base: Any, prompt: nn.Module | None = None) -> None:
        super().__init__()
        self.num_heads: int = int(base.num_heads)
        self.head_dim: int = int(base.head_dim)
        self.attn_dim: int = int(getattr(base, "attn_dim", self.num_heads * self.head_dim))
        self.scale: float = float(base.scale)
        self.qkv: nn.Module = base.qkv
        self.q_norm: nn.Module = base.q_norm
        self.k_norm: nn.Module = base.k_norm
        self.attn_drop: nn.Module = base.attn_drop
        self.norm: nn.Module = getattr(base, "norm", nn.Identity())
        self.gate: nn.Module | None = getattr(base, "gate", None)
        self.proj: nn.Module = base.proj
        self.proj_drop: nn.Module = base.proj_drop
        self.prompt = prompt
        self.use_fast_path = True
        self.capture = False
        self.last_weights: torch.Tensor | None = None

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
    ) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise NotImplementedError("masked or causal attention is not supported by tuned models")
        B, N, _ = x.shape
        gate = self.gate(x).sigmoid() if self.gate is not None else None
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        out = self._attend(q, k, v)
        out = out.transpose(1, 2).reshape(B, N, self.attn_dim)
        out = self.norm(out)
        if gate is not None:
            out = out * gate
        projected: torch.Tensor = self.proj_drop(self.proj(out))
        return projected

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        bias = None
        if self.prompt is not None and self.use_fast_path and not self.capture:
            bias = self.prompt.fast_bias()  # type: ignore[operator]
        if self.prompt is None and not self.capture:
            out: torch.Tensor = F.scaled_dot_product_attention(q, k, v, dropout_p=self._dropout_p())
            return out
        if bias is not None:
            return _attend_with_zero_keys(q, k, v, bias, self._dropout_p())
        return self._attend_reference(q, k, v)

    def _attend_reference(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if self.prompt is None:
            weights = logits.softmax(dim=-1)
        else:
            weights = self.prompt.weights(logits)  # type: ignore[operator]
        if self.capture:
            self.last_weights = weights
        mixed: torch.Tensor = self.attn_drop(weights) @ v
        return mixed

    def _dropout_p(self) -> float:
        p = getattr(self.attn_drop, "p", 0.0)
        return float(p) if self.training else 0.0


def _attend_with_zero_keys(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, dropout_p: float
) -> torch.Tensor:
    """EPT's exact fast path: K extra keys and values that are all zero, their logits given as a bias.

    A zero key has logit 0, so logit + bias = the prompt; a zero value adds nothing to the output, which
    is the same as dropping the prompt columns after the softmax.
    """
    B, H, N, D = k.shape
    extra = bias.shape[-1]
    zeros = k.new_zeros(B, H, extra, D)
    keys = torch.cat([zeros, k], dim=2)
    values = torch.cat([zeros, v], dim=2)
    mask = torch.cat([bias.to(q.dtype), q.new_zeros(N, N)], dim=-1)
    out: torch.Tensor = F.scaled_dot_product_attention(
        q, keys, values, attn_mask=mask, dropout_p=dropout_p
    )
    return out
