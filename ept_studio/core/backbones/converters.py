"""Checkpoint converters: a published state dict in, timm ``VisionTransformer`` tensors out.

Each converter is a pure function over tensors (no file, no network), chosen by the manifest's
``converter`` name; :func:`convert_checkpoint` runs one and checks the result against the timm
model's own keys and shapes, at the checkpoint's native position grid, so a wrong checkpoint is
refused with the tensors that do not fit before anything is written.

- ``timm``: already timm's layout (the ``timm/...`` hub repositories); a classifier is dropped.
- ``hf-dinov2``: a Hugging Face ``Dinov2Model`` (RAD-DINO), under transformers 4's names
  (``attention.attention.query``, ``attention.output.dense``, as published files are) or 5's
  (``attention.q_proj``, ``attention.o_proj``): names mapped, query, key and value fused into ``qkv``; with ``embeddings.register_tokens`` the class token takes its position
  embedding in, as timm's DINOv2-with-registers models keep no position for class and registers.
- ``open-clip-trunk``: an open_clip checkpoint whose vision tower is a timm ViT under
  ``visual.trunk.`` (BiomedCLIP); the text tower and the projection are left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ept_studio.common.errors import BackboneError
from ept_studio.core.backbones.loader import build_model, check_state_dict

StateDict = dict[str, torch.Tensor]
OPEN_CLIP_TRUNK = "visual.trunk."
HF_DINOV2_PATCH = "embeddings.patch_embeddings.projection.weight"
_HF_PREFIXES = ("dinov2.", "model.")
_QKV = ("query", "key", "value")
_QKV_SHORT = {"q": "query", "k": "key", "v": "value"}
_HF_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.position_embeddings$", "pos_embed"),
    (r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$", r"patch_embed.proj.\1"),
    (r"^layernorm\.(weight|bias)$", r"norm.\1"),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)$", r"blocks.\1.norm\2.\3"),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$",
        r"blocks.\1.attn.proj.\2",
    ),
    (r"^encoder\.layer\.(\d+)\.attention\.o_proj\.(weight|bias)$", r"blocks.\1.attn.proj.\2"),
    (r"^encoder\.layer\.(\d+)\.mlp\.(fc[12])\.(weight|bias)$", r"blocks.\1.mlp.\2.\3"),
)
_HF_QKV = re.compile(
    r"^encoder\.layer\.(\d+)\.attention\.(?:attention\.(query|key|value)|([qkv])_proj)\.(\w+)$"
)
_HF_DROPPED = frozenset({"embeddings.mask_token"})


def convert_timm(tensors: Mapping[str, torch.Tensor]) -> StateDict:
    """A timm checkpoint as it is, less any classifier head."""
    return {key: value for key, value in tensors.items() if not key.startswith("head.")}


def convert_hf_dinov2(tensors: Mapping[str, torch.Tensor]) -> StateDict:
    """A Hugging Face ``Dinov2Model`` (or ``Dinov2WithRegistersModel``) state dict in timm's names."""
    source = _strip_hf_prefix(tensors)
    if HF_DINOV2_PATCH not in source:
        raise BackboneError(
            f"This is not a Hugging Face DINOv2 checkpoint: it has no {HF_DINOV2_PATCH} "
            f"(its first tensors: {', '.join(sorted(tensors)[:4])})."
        )
    state: StateDict = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unmapped: list[str] = []
    for name, tensor in source.items():
        fused = _HF_QKV.match(name)
        if fused:
            role = fused.group(2) or _QKV_SHORT[fused.group(3)]
            qkv.setdefault((fused.group(1), fused.group(4)), {})[role] = tensor
        elif name == "embeddings.register_tokens":
            state["reg_token"] = tensor
        elif name not in _HF_DROPPED:
            target = _hf_rename(name)
            if target is None:
                unmapped.append(name)
            else:
                state[target] = tensor
    if unmapped:
        raise BackboneError(
            f"These DINOv2 tensors have no place in a timm ViT: {', '.join(sorted(unmapped)[:8])}."
        )
    state.update(_fuse_qkv(qkv))
    if "reg_token" in state:
        _fold_class_position(state)
    return dict(sorted(state.items()))


def convert_open_clip_trunk(tensors: Mapping[str, torch.Tensor]) -> StateDict:
    """The timm ViT inside an open_clip checkpoint (``visual.trunk.*``), its head left out."""
    prefix = next(
        (
            p
            for p in (OPEN_CLIP_TRUNK, "module." + OPEN_CLIP_TRUNK)
            if any(k.startswith(p) for k in tensors)
        ),
        None,
    )
    if prefix is None:
        raise BackboneError(
            "This is not an open_clip checkpoint with a timm vision tower: no tensor is named "
            f"{OPEN_CLIP_TRUNK}... (its first tensors: {', '.join(sorted(tensors)[:4])})."
        )
    trunk = {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}
    return convert_timm(trunk)


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "timm": convert_timm,
    "hf-dinov2": convert_hf_dinov2,
    "open-clip-trunk": convert_open_clip_trunk,
}


def convert_checkpoint(
    converter: str,
    tensors: Mapping[str, torch.Tensor],
    timm_name: str,
    *,
    origin: str,
    **model_options: Any,
) -> StateDict:
    """Convert ``tensors`` to ``timm_name``'s layout (float32) and check every key and shape.

    ``model_options`` change timm's configuration (tests pass a tiny one).
    """
    try:
        convert = CONVERTERS[converter]
    except KeyError:
        raise BackboneError(
            f"Unknown checkpoint converter {converter!r}; known: {', '.join(sorted(CONVERTERS))}."
        ) from None
    state = {
        key: value.detach().to(torch.float32).contiguous()
        for key, value in convert(tensors).items()
    }
    size = native_img_size(timm_name, state, **model_options)
    check_state_dict(shape_model(timm_name, img_size=size, **model_options), state, origin=origin)
    return state


def native_img_size(timm_name: str, state: Mapping[str, torch.Tensor], **model_options: Any) -> int:
    """The input size whose position grid the checkpoint's ``pos_embed`` holds (square grids)."""
    probe = shape_model(timm_name, img_size=224, **model_options)
    patch = _patch_size(probe)
    pos_embed = state.get("pos_embed")
    if pos_embed is None or pos_embed.ndim != 3:
        return 224
    prefix = (
        0
        if getattr(probe, "no_embed_class", False)
        else int(getattr(probe, "num_prefix_tokens", 1))
    )
    side = round(max(pos_embed.shape[1] - prefix, 0) ** 0.5)
    if side == 0 or side * side != pos_embed.shape[1] - prefix:
        return 224  # not a square grid: the key and shape check names pos_embed
    return int(side * patch)


def shape_model(timm_name: str, *, img_size: int, **model_options: Any) -> nn.Module:
    """The timm model's structure without its weights (on the meta device: no memory, no time)."""
    with torch.device("meta"):
        return build_model(timm_name, img_size=img_size, **model_options)


def _patch_size(model: nn.Module) -> int:
    size: Any = getattr(model.patch_embed, "patch_size", 16)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


def _strip_hf_prefix(tensors: Mapping[str, torch.Tensor]) -> StateDict:
    for prefix in _HF_PREFIXES:
        if any(key.startswith(prefix + "embeddings.") for key in tensors):
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    return dict(tensors)


def _hf_rename(name: str) -> str | None:
    for pattern, replacement in _HF_RENAMES:
        renamed, count = re.subn(pattern, replacement, name)
        if count:
            return renamed
    return None


def _fuse_qkv(parts: Mapping[tuple[str, str], Mapping[str, torch.Tensor]]) -> StateDict:
    fused: StateDict = {}
    for (block, kind), found in parts.items():
        if set(found) != set(_QKV):
            missing = ", ".join(sorted(set(_QKV) - set(found)))
            raise BackboneError(
                f"Block {block} of the checkpoint lacks its attention {missing} {kind}."
            )
        fused[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([found[role] for role in _QKV], dim=0)
    return fused


def _fold_class_position(state: StateDict) -> None:
    """timm keeps no position for class and register tokens: add the class one into the token."""
    pos_embed = state["pos_embed"]
    state["cls_token"] = state["cls_token"] + pos_embed[:, :1]
    state["pos_embed"] = pos_embed[:, 1:]
