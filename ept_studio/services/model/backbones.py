"""Backbones as the user sees them: what is supported, what is on this machine, getting one."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class BackboneStatus:
    """A manifest entry and whether its weights are on this machine."""

    name: str
    timm_name: str
    licence: str
    default: bool
    available: bool
    description: str


def list_backbones() -> list[BackboneStatus]:
    """Every supported backbone, and whether it can be loaded offline now."""
    from ept_studio.core.backbones import load_manifest, models_dir, user_cache_dir

    statuses = []
    for spec in load_manifest().values():
        available = any(
            (folder / spec.weights_file).is_file() for folder in (models_dir(), user_cache_dir())
        )
        statuses.append(
            BackboneStatus(
                spec.name,
                spec.timm_name,
                spec.licence,
                spec.default,
                available,
                spec.description,
            )
        )
    return statuses


def get_backbone(name: str) -> Path:
    """Download (or, for the offline default, set up) a backbone: an explicit user action."""
    from ept_studio.core.backbones import download_backbone

    return download_backbone(name)


@dataclasses.dataclass(frozen=True)
class DoctorReport:
    """What ``ept-studio doctor`` found: the default backbone loads, and where it would run."""

    backbone: str
    weights_sha256: str
    tokens: int
    width: int
    parameters: int
    device: str
    forward_seconds: float
    onnx_providers: list[str]
    bf16: str = ""
    """Whether ``bf16 = auto`` trains in bfloat16 here, and why (``on: this CPU has ...``)."""


def doctor() -> DoctorReport:
    """Load the offline default backbone (checksum verified) and run one forward pass; decide
    ``bf16 = auto`` for this machine (timing the bfloat16 check once if it has not run here)."""
    import torch

    from ept_studio.core.backbones import load_backbone
    from ept_studio.core.device import bf16_decision, describe_device, resolve_device

    loaded = load_backbone()
    device = resolve_device("auto")
    model: Any = loaded.model.to(device)
    size = loaded.spec.input_size
    pixels = torch.zeros(1, 3, size, size, device=device)
    start = time.perf_counter()
    with torch.inference_mode():
        tokens = model.forward_features(pixels)
    elapsed = time.perf_counter() - start
    return DoctorReport(
        loaded.spec.name,
        loaded.weights_sha256,
        int(tokens.shape[1]),
        int(tokens.shape[2]),
        sum(p.numel() for p in model.parameters()),
        describe_device(device),
        elapsed,
        _onnx_providers(),
        bf16_decision("auto", device).reason,
    )


def _onnx_providers() -> list[str]:
    """The ONNX Runtime providers an exported model would use here, with the reason if no GPU."""
    from ept_studio.core.onnx_runtime import choose_providers

    providers, notes = choose_providers("auto")
    return providers + [f"({note})" for note in notes]
