"""The baselines that only choose which existing tensors learn: linear probe, BitFit, full fine-tune."""

from __future__ import annotations

import dataclasses

from ept_studio.core.methods.base import Backbone, MethodConfig, MethodName, TuningMethod, freeze


@dataclasses.dataclass(frozen=True)
class LinearConfig(MethodConfig):
    """Linear probing: the backbone stays frozen, only the head learns."""

    method = MethodName.LINEAR


@dataclasses.dataclass(frozen=True)
class BiasConfig(MethodConfig):
    """BitFit: every bias of the backbone (attention, MLP, norms, patch embedding) plus the head."""

    method = MethodName.BIAS


@dataclasses.dataclass(frozen=True)
class FullConfig(MethodConfig):
    """Full fine-tuning: every backbone tensor learns."""

    method = MethodName.FULL


class Linear(TuningMethod):
    def __init__(self, config: LinearConfig) -> None:
        self.config = config

    def apply(self, backbone: Backbone) -> None:
        freeze(backbone)


class Bias(TuningMethod):
    def __init__(self, config: BiasConfig) -> None:
        self.config = config

    def apply(self, backbone: Backbone) -> None:
        freeze(backbone)
        for name, parameter in backbone.named_parameters():
            if name.endswith("bias"):
                parameter.requires_grad_(True)


class Full(TuningMethod):
    def __init__(self, config: FullConfig) -> None:
        self.config = config

    def apply(self, backbone: Backbone) -> None:
        for parameter in backbone.parameters():
            parameter.requires_grad_(True)
