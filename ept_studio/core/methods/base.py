"""The anatomy every tuning method shares: a validated config and an ``apply`` that injects and freezes."""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any, ClassVar, TypeAlias

from torch import nn

from ept_studio.common.config import to_json_dict
from ept_studio.common.errors import ConfigError

Backbone: TypeAlias = Any
"""A timm ``VisionTransformer``; its sub-modules are reached by attribute, which nn.Module cannot type."""


class MethodName(str, Enum):
    """The tuning methods EPT Studio offers."""

    EPT = "ept"
    LINEAR = "linear"
    FULL = "full"
    BIAS = "bias"
    VPT = "vpt"
    LORA = "lora"


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base of the method configs; subclasses are frozen dataclasses validated in ``__post_init__``."""

    method: ClassVar[MethodName]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, including the method name."""
        return {"method": self.method.value, **to_json_dict(self)}


class TuningMethod(ABC):
    """A tuning method bound to its config.

    ``apply`` freezes every backbone tensor, then injects the method's modules and marks only the method's
    own tensors trainable. The head is not the method's business: the tuned model owns it.
    """

    config: MethodConfig

    @abstractmethod
    def apply(self, backbone: Backbone) -> None:
        """Inject the method into ``backbone`` in place (a timm ``VisionTransformer``)."""

    @property
    def extra_prefix_tokens(self) -> int:
        """How many tokens the method inserts between the class token and the patches."""
        return 0


def freeze(module: nn.Module) -> None:
    """Mark every parameter of ``module`` frozen."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)


def check_positive(name: str, value: float) -> None:
    """Raise a :class:`ConfigError` unless ``value`` > 0."""
    if not value > 0:
        raise ConfigError(f"{name} must be greater than 0, got {value}")


def resolve_blocks(blocks: tuple[int, ...] | None, depth: int) -> tuple[int, ...]:
    """The sorted, validated block indices a method touches (None: every block)."""
    if blocks is None:
        return tuple(range(depth))
    if not blocks:
        raise ConfigError("choose at least one block to prompt")
    bad = [b for b in blocks if not 0 <= b < depth]
    if bad:
        raise ConfigError(f"block indices {bad} are outside this backbone's 0..{depth - 1}")
    return tuple(sorted(set(blocks)))
