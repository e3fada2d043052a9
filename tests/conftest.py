"""Shared fixtures: tiny seeded timm ViTs for unit speed."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable

import pytest
import timm
import torch
from torch import nn


def make_tiny_vit(
    seed: int = 0, img_size: int = 32, layer_scale: bool = False, depth: int = 2
) -> nn.Module:
    """A seeded, randomly initialised ViT: 32 px, patch 8 (16 patches + CLS = 17 tokens), width 64."""
    torch.manual_seed(seed)
    model = timm.create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=img_size,
        patch_size=8,
        embed_dim=64,
        depth=depth,
        num_heads=4,
        num_classes=0,
        init_values=1e-1 if layer_scale else None,
    )
    return model.eval()


@pytest.fixture
def tiny_vit() -> Callable[..., nn.Module]:
    return make_tiny_vit
