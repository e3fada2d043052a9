"""EPT's maths in one place: the prompt forms, their compact form, and attention that takes them.

Embedded Prompt Tuning (Zu et al., Medical Image Analysis 2024). Per prompted block, with attention
logits ``U = q k^T / sqrt(d)`` of shape ``[N, N]`` per head:

- Pure_Cat (Eq. 5; every block for EPT-DEEP, Eq. 8): a prompt ``P`` of shape ``[N, L]`` is
  concatenated in front of ``U`` along the key axis, the softmax runs over all ``L + N`` columns and
  the prompt columns are dropped, ``A = softmax([P; U])[:, L:]``, rows summing to less than 1. The
  same ``P`` serves every head and every sample (:class:`ConcatPrompt`).
- The other embedding ways of the ablation (Fig. 5): Add, ``softmax(U + P)``; Multi,
  ``softmax(U * P)``, both with ``P`` of shape ``[N, N]``; Multi_Cat, Pure_Cat with ``alpha * P``
  where ``alpha_i = max_j u_ij - min_j u_ij`` (:class:`AddPrompt`, :class:`MultiPrompt`,
  :class:`ScaledConcatPrompt`).
- Patch-wise scaling (Eq. 10): ``softmax([p; u])[L:] = softmax(u) * sigmoid(lse(u) - lse(p))``, so
  Pure_Cat depends on a prompt row only through its logsumexp. :func:`prompt_logsumexp` is that one
  column per row; it gives the fast path (one zero key and value whose logit is ``lse(P)``, through
  ``scaled_dot_product_attention``, exact in outputs and gradients), the compact form a prompt file
  stores (:func:`compact_prompts`) and the form the ONNX export traces (:class:`LogsumexpPrompt`).

:class:`PromptableAttention` replaces timm's ``Attention``. It takes over the original module's
sub-modules under the same names (``qkv``, ``proj``, ...), so the backbone's state-dict keys do not
change. Without a prompt and without capture it runs the same fused ``scaled_dot_product_attention``
call as timm; with a prompt it runs the fast path when the prompt has one, else the reference path
(the equations above, written out), which is also the path that can return its weights.
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


def concat_weights(
    prompt: torch.Tensor, logits: torch.Tensor, scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 5: ``softmax([P; U])[..., L:]`` with ``P [N, L]`` shared over batch and heads.

    ``scale`` (``[B, H, N, 1]``) multiplies the prompt columns first (Multi_Cat's ``alpha``).
    """
    B, H, N, _ = logits.shape
    length = prompt.shape[-1]
    columns = prompt.to(logits.dtype).expand(B, H, N, length)
    if scale is not None:
        columns = scale * columns
    return torch.cat([columns, logits], dim=-1).softmax(dim=-1)[..., length:]


def prompt_logsumexp(prompt: torch.Tensor) -> torch.Tensor:
    """Eq. 10: ``lse(P[i, :])`` as one column ``[N, 1]``, all of a Pure_Cat prompt that matters."""
    return torch.logsumexp(prompt, dim=-1, keepdim=True)


class ConcatPrompt(nn.Module):
    """Pure_Cat: ``softmax([P; U])[:, L:]`` with ``P`` of shape ``[N, L]``."""

    def __init__(self, tokens: int, length: int, init_std: float) -> None:
        super().__init__()
        self.prompt = nn.Parameter(torch.randn(tokens, length) * init_std)

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return concat_weights(self.prompt, logits)

    def fast_bias(self) -> torch.Tensor | None:
        return prompt_logsumexp(self.prompt)


class ScaledConcatPrompt(ConcatPrompt):
    """Multi_Cat: concat ``alpha * P`` where ``alpha_i = max_j u_ij - min_j u_ij`` (per head and row)."""

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        alpha = logits.amax(dim=-1, keepdim=True) - logits.amin(dim=-1, keepdim=True)
        return concat_weights(self.prompt, logits, scale=alpha)

    def fast_bias(self) -> torch.Tensor | None:
        return None


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


def compact_prompts(prompts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Collapse Pure_Cat prompts ``[N, L]`` to their exact inference form ``[N, 1]`` (the logsumexp)."""
    return {name: prompt_logsumexp(t.float()) for name, t in prompts.items()}


class LogsumexpPrompt(nn.Module):
    """A Pure_Cat prompt in its compact form: one column per row, a buffer rather than a parameter.

    It gives the same weights as the ``L`` columns it stands for, with a softmax over ``N + 1``
    columns instead of ``N + L``.
    """

    def __init__(self, prompt: ConcatPrompt) -> None:
        super().__init__()
        self.lse: torch.Tensor
        self.register_buffer("lse", prompt_logsumexp(prompt.prompt.detach()))

    def weights(self, logits: torch.Tensor) -> torch.Tensor:
        return concat_weights(self.lse, logits)

    def fast_bias(self) -> torch.Tensor | None:
        return self.lse


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
