"""Shared test helpers: tiny seeded timm ViTs and the method matrix (import as ``support``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import skimage.data
import timm
import torch
from PIL import Image
from torch import nn

from ept_studio.core.backbones import LoadedBackbone, random_backbone
from ept_studio.core.methods import (
    BiasConfig,
    EptConfig,
    FullConfig,
    LinearConfig,
    LoraConfig,
    MethodConfig,
    VptConfig,
)
from ept_studio.core.model import TunedModel
from ept_studio.core.prompt_file import PromptFileMetadata


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


def write_class_folders(root: Path, per_class: int = 6, size: int = 160, seed: int = 0) -> Path:
    """Two classes of real medical pixels: fundus photograph crops vs immunohistochemistry crops.

    Sources: scikit-image's ``retina`` (a fundus photograph) and ``immunohistochemistry`` images,
    both shipped inside the scikit-image wheel (offline).
    """
    rng = np.random.default_rng(seed)
    sources = {"fundus": skimage.data.retina(), "histology": skimage.data.immunohistochemistry()}
    for name, image in sources.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        height, width = image.shape[:2]
        side = int(min(height, width) * 0.4)
        for index in range(per_class):
            top, left = rng.integers(0, height - side), rng.integers(0, width - side)
            crop = image[top : top + side, left : left + side]
            Image.fromarray(crop).resize((size, size)).save(folder / f"img{index:02d}.png")
    return root


METHOD_MATRIX: list[MethodConfig] = [
    EptConfig(),
    EptConfig.shallow(),
    EptConfig(blocks=(1,)),
    EptConfig(embedding="add"),
    EptConfig(embedding="multi"),
    EptConfig(embedding="multi_cat"),
    LinearConfig(),
    BiasConfig(),
    FullConfig(),
    VptConfig(),
    VptConfig(deep=False),
    LoraConfig(rank=4),
]
"""Every method and variant, for the tests that must hold for all of them."""


BLOCK_TORCH = """
import sys

class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "timm", "torchvision"}:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, BlockTorch())
"""
"""Prepend to a ``python -c`` script to make importing torch, timm or torchvision fail."""


def tiny_tuned_model(classes: int, *, seed: int = 0, head_seed: int = 1) -> TunedModel:
    """A tiny EPT model (L = 4) whose head is large enough to give distinct scores."""
    model = TunedModel(make_tiny_vit(seed), EptConfig(length=4), classes).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(head_seed))
    return model


def tiny_metadata(model: TunedModel, class_names: tuple[str, ...]) -> PromptFileMetadata:
    """Prompt-file metadata for a tiny test model (32 px, a made-up backbone checksum)."""
    return PromptFileMetadata(
        method=model.method_config.to_dict(),
        backbone="tiny-test-vit",
        backbone_sha256="ab" * 32,
        input_size=32,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        label_mode="single",
        class_names=class_names,
    )


def tiny_backbone() -> LoadedBackbone:
    """A fresh tiny random ViT (32 px, 2 blocks) as a loaded backbone, with its weights' sha256."""
    return random_backbone(
        "vit_tiny_patch16_224",
        seed=0,
        img_size=32,
        patch_size=8,
        depth=2,
        embed_dim=64,
        num_heads=4,
    )
