"""The tuned model: a frozen timm ViT with a tuning method injected, and a linear head on the CLS token."""

from __future__ import annotations

import copy
from enum import Enum

import torch
from torch import nn

from ept_studio.common.errors import ConfigError, PromptFileError
from ept_studio.core.attention import PromptableAttention
from ept_studio.core.methods import MethodConfig, TuningMethod, build_method
from ept_studio.core.methods.base import Backbone
from ept_studio.core.methods.lora import LoraQkv
from ept_studio.core.methods.vpt import VptPrompts


class LabelMode(str, Enum):
    """Single-label (softmax, cross-entropy) or multi-label (sigmoid, BCE) classification."""

    SINGLE = "single"
    MULTI = "multi"


def private_copy(backbone: Backbone) -> Backbone:
    """A deep copy of a plain backbone for one tuned model to inject its method into.

    The services and the GUI keep one loaded backbone and build every model on it; a method injected
    in place would stay in the next model built on it (an EPT prompt inside a linear probe) and no
    prompt file could reproduce that model. The tensors are copied too, not shared, because full
    fine-tuning and BitFit train backbone tensors in place. The copy costs about 140 ms and 87 MB per
    model on the default DINOv2 ViT-S/14 (its load takes 1.4 s, one 224-pixel forward pass on one
    core 0.5 s), and 210 ms and 343 MB on ViT-B/16.
    """
    if carries_a_method(backbone):
        raise ConfigError(
            "this backbone already carries a tuning method (prompts or LoRA); build the model on "
            "the plain loaded backbone, not on another tuned model's"
        )
    return copy.deepcopy(backbone)


def carries_a_method(backbone: Backbone) -> bool:
    """Whether a tuning method was injected into ``backbone`` (EPT prompts, VPT tokens, LoRA)."""
    return any(
        isinstance(module, (LoraQkv, VptPrompts))
        or (isinstance(module, PromptableAttention) and module.prompt is not None)
        for module in backbone.modules()
    )


def make_attention_promptable(backbone: Backbone) -> None:
    """Swap every block's attention for a :class:`PromptableAttention` (same tensors, same names)."""
    for block in backbone.blocks:
        if not isinstance(block.attn, PromptableAttention):
            block.attn = PromptableAttention(block.attn)


class TunedModel(nn.Module):
    """``backbone`` (a timm ``VisionTransformer`` built with ``num_classes=0``) + method + head.

    The model works on its own copy of ``backbone`` (see :func:`private_copy`): the module passed in
    is never changed. The backbone always stays in eval mode (no dropout, no drop-path), even while
    the head trains.
    """

    def __init__(
        self,
        backbone: Backbone,
        method: MethodConfig | TuningMethod,
        num_classes: int,
        head_init_std: float = 0.01,
    ) -> None:
        super().__init__()
        tuning = build_method(method) if isinstance(method, MethodConfig) else method
        backbone = private_copy(backbone)
        make_attention_promptable(backbone)
        tuning.apply(backbone)
        self.backbone: Backbone = backbone
        self.method_config: MethodConfig = tuning.config
        self.prefix_tokens = int(backbone.num_prefix_tokens) + tuning.extra_prefix_tokens
        self.head = nn.Linear(int(backbone.embed_dim), num_classes)
        nn.init.normal_(self.head.weight, std=head_init_std)
        nn.init.zeros_(self.head.bias)
        self.backbone.eval()

    @property
    def num_classes(self) -> int:
        return int(self.head.out_features)

    def train(self, mode: bool = True) -> TunedModel:
        super().train(mode)
        self.backbone.eval()
        return self

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """The CLS token after the final norm, ``[B, width]``."""
        tokens: torch.Tensor = self.backbone.forward_features(pixels)
        return tokens[:, 0]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(pixels))
        return logits

    def forward_with_attention(
        self, pixels: torch.Tensor, blocks: tuple[int, ...] = (-1,)
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and, per requested block, the full post-method attention weights ``[B, H, N, N]``."""
        attentions = [self.backbone.blocks[i].attn for i in blocks]
        for attention in attentions:
            attention.capture = True
        try:
            logits = self.forward(pixels)
            weights = [a.last_weights for a in attentions]
        finally:
            for attention in attentions:
                attention.capture = False
                attention.last_weights = None
        return logits, weights

    def cls_attention(self, weights: torch.Tensor) -> torch.Tensor:
        """The CLS row over the patch tokens, ``[B, H, patches]``, from ``[B, H, N, N]`` weights."""
        return weights[:, :, 0, self.prefix_tokens :]

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors that learn, by their parameter names (what a prompt file stores)."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split into the head and the method's own tensors."""
        groups: dict[str, list[nn.Parameter]] = {"head": [], "method": []}
        for name, parameter in self.named_parameters():
            if parameter.requires_grad:
                groups["head" if name.startswith("head.") else "method"].append(parameter)
        return groups

    def trainable_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def method_parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameter_groups()["method"])

    def load_trainable_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Copy saved trainable tensors in; names and shapes must match exactly."""
        own = dict(self.named_parameters())
        expected = {n for n, p in own.items() if p.requires_grad}
        missing, unexpected = expected - set(tensors), set(tensors) - expected
        if missing or unexpected:
            raise PromptFileError(
                f"the prompt file does not fit this model: missing {sorted(missing)[:5]}, "
                f"unexpected {sorted(unexpected)[:5]}"
            )
        with torch.no_grad():
            for name, tensor in tensors.items():
                if tuple(tensor.shape) != tuple(own[name].shape):
                    raise PromptFileError(
                        f"tensor {name} has shape {tuple(tensor.shape)}, "
                        f"this model needs {tuple(own[name].shape)}"
                    )
                own[name].copy_(tensor.to(own[name].dtype))
