"""Checkpoint converters and the hub backbones of the manifest, offline.

No test downloads: each converter runs on a state dict this file builds with the publisher's key
names and the right shapes (tiny seeded tensors where values are checked, the real configuration on
the meta device where only keys and shapes are), and the result is checked against timm's model.
The Hugging Face names are those of a ``transformers`` 4 ``Dinov2Model`` file (RAD-DINO's) and of
``transformers`` 5 (``q_proj``...); the open_clip ones those of a CLIP with a timm vision tower.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

from ept_studio.common.errors import BackboneError
from ept_studio.core.backbones import HubSource, load_manifest
from ept_studio.core.backbones.converters import (
    convert_checkpoint,
    convert_hf_dinov2,
    convert_open_clip_trunk,
    native_img_size,
    shape_model,
)
from ept_studio.core.backbones.loader import build_model

TINY = {"embed_dim": 64, "depth": 2, "num_heads": 4}
REFERENCE = Path(__file__).resolve().parent / "reference"
HUB_NAMES = ["vit-b16-in21k", "vit-b16-augreg-in21k", "dinov2-vits14-reg4", "dinov2-vitb14-reg4"]
NEW_NAMES = ["dinov2-vits14-reg4", "dinov2-vitb14-reg4", "rad-dino", "biomedclip-vitb16"]


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def hf_dinov2_state(
    width: int,
    depth: int,
    grid: int,
    *,
    patch: int = 14,
    registers: int = 0,
    naming: str = "v4",
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """A Hugging Face ``Dinov2Model`` state dict: its names, its shapes, seeded random values."""
    generator = torch.Generator().manual_seed(0) if device == "cpu" else None

    def rand(*shape: int) -> torch.Tensor:
        if device == "meta":
            return torch.empty(*shape, device="meta")
        return torch.randn(*shape, generator=generator)

    state = {
        "embeddings.cls_token": rand(1, 1, width),
        "embeddings.mask_token": rand(1, width),
        "embeddings.position_embeddings": rand(1, 1 + grid * grid, width),
        "embeddings.patch_embeddings.projection.weight": rand(width, 3, patch, patch),
        "embeddings.patch_embeddings.projection.bias": rand(width),
        "layernorm.weight": rand(width),
        "layernorm.bias": rand(width),
    }
    if registers:
        state["embeddings.register_tokens"] = rand(1, registers, width)
    attention = {
        "v4": ("attention.attention.query", "attention.attention.key", "attention.attention.value"),
        "v5": ("attention.q_proj", "attention.k_proj", "attention.v_proj"),
    }[naming]
    output = {"v4": "attention.output.dense", "v5": "attention.o_proj"}[naming]
    for block in range(depth):
        layer = f"encoder.layer.{block}."
        for part, out_features, in_features in (
            *((name, width, width) for name in (*attention, output)),
            ("mlp.fc1", 4 * width, width),
            ("mlp.fc2", width, 4 * width),
        ):
            state[layer + part + ".weight"] = rand(out_features, in_features)
            state[layer + part + ".bias"] = rand(out_features)
        for norm in ("norm1", "norm2"):
            state[layer + norm + ".weight"] = rand(width)
            state[layer + norm + ".bias"] = rand(width)
        state[layer + "layer_scale1.lambda1"] = rand(width)
        state[layer + "layer_scale2.lambda1"] = rand(width)
    return state


def open_clip_state(trunk: dict[str, torch.Tensor], width: int) -> dict[str, torch.Tensor]:
    """An open_clip checkpoint around a timm trunk: projection, text tower and logit scale too."""
    state = {f"visual.trunk.{key}": value for key, value in trunk.items()}
    state["visual.head.proj.weight"] = torch.zeros(512, width)
    state["text.transformer.embeddings.word_embeddings.weight"] = torch.zeros(10, 8)
    state["text.proj.0.weight"] = torch.zeros(8, 8)
    state["logit_scale"] = torch.tensor(4.6)
    return state


def _published_size(timm_name: str) -> int:
    """The input size the publisher's weights were saved at (timm's default configuration)."""
    return int(timm.models.get_pretrained_cfg(timm_name).input_size[-1])


def _meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value for key, value in model.state_dict().items()}


# --- Hugging Face DINOv2 (RAD-DINO) -----------------------------------------------------------------


@pytest.mark.parametrize("naming", ["v4", "v5"])
def test_hf_dinov2_tensors_land_where_timm_wants_them(naming: str) -> None:
    state = hf_dinov2_state(64, 2, grid=4, naming=naming)
    converted = convert_checkpoint(
        "hf-dinov2", state, "vit_base_patch14_dinov2", origin="test", **TINY
    )
    query, key, value = (
        state[f"encoder.layer.1.{name}.weight"]
        for name in (
            ("attention.attention.query", "attention.attention.key", "attention.attention.value")
            if naming == "v4"
            else ("attention.q_proj", "attention.k_proj", "attention.v_proj")
        )
    )
    assert torch.equal(converted["blocks.1.attn.qkv.weight"], torch.cat([query, key, value]))
    assert converted["blocks.1.attn.qkv.bias"].shape == (192,)
    output = "attention.output.dense" if naming == "v4" else "attention.o_proj"
    assert torch.equal(
        converted["blocks.0.attn.proj.weight"], state[f"encoder.layer.0.{output}.weight"]
    )
    assert torch.equal(
        converted["blocks.0.ls2.gamma"], state["encoder.layer.0.layer_scale2.lambda1"]
    )
    assert torch.equal(converted["pos_embed"], state["embeddings.position_embeddings"])
    assert torch.equal(converted["norm.bias"], state["layernorm.bias"])
    assert "mask_token" not in " ".join(converted)
    model = build_model("vit_base_patch14_dinov2", img_size=56, **TINY)
    model.load_state_dict(converted, strict=True)
    tokens = model.eval().forward_features(torch.zeros(1, 3, 56, 56))
    assert tokens.shape == (1, 17, 64)


@pytest.mark.parametrize(
    ("file", "timm_name", "tokens"),
    [
        ("hf_dinov2_tiny.safetensors", "vit_base_patch14_dinov2", 5),
        ("hf_dinov2_reg4_tiny.safetensors", "vit_base_patch14_reg4_dinov2", 9),
    ],
)
def test_converted_dinov2_reproduces_the_hugging_face_models_tokens(
    file: str, timm_name: str, tokens: int
) -> None:
    """Tiny seeded transformers models and their outputs (made by reference/make_*.py)."""
    reference = load_file(REFERENCE / file)
    published = {k[len("state.") :]: v for k, v in reference.items() if k.startswith("state.")}
    assert "encoder.layer.0.attention.attention.query.weight" in published
    options = {"embed_dim": 32, "depth": 2, "num_heads": 2}
    state = convert_checkpoint("hf-dinov2", published, timm_name, origin=file, **options)
    model = build_model(timm_name, img_size=28, **options).eval()
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        ours = model.forward_features(reference["pixels"])
    assert ours.shape == reference["expected"].shape == (2, tokens, 32)
    assert (ours - reference["expected"]).abs().max().item() < 1e-5
    assert reference["expected"].abs().max().item() > 0.5


def test_hf_dinov2_with_registers_folds_the_class_position_into_the_class_token() -> None:
    state = hf_dinov2_state(64, 2, grid=4, registers=4)
    converted = convert_hf_dinov2(state)
    position = state["embeddings.position_embeddings"]
    assert torch.equal(converted["reg_token"], state["embeddings.register_tokens"])
    torch.testing.assert_close(
        converted["cls_token"], state["embeddings.cls_token"] + position[:, :1], rtol=0, atol=0
    )
    assert torch.equal(converted["pos_embed"], position[:, 1:])
    model = build_model("vit_base_patch14_reg4_dinov2", img_size=56, **TINY)
    model.load_state_dict(converted, strict=True)
    assert model.eval().forward_features(torch.zeros(1, 3, 56, 56)).shape == (1, 21, 64)


def test_rad_dinos_real_configuration_converts_to_every_timm_key() -> None:
    """ViT-B/14 at 518 px (RAD-DINO's Dinov2Model): 223 tensors in, timm's 174 out."""
    state = hf_dinov2_state(768, 12, grid=37, device="meta")
    assert len(state) == 223
    spec = load_manifest()["rad-dino"]
    converted = convert_checkpoint("hf-dinov2", state, spec.timm_name, origin="rad-dino")
    expected = shape_model(spec.timm_name, img_size=518).state_dict()
    assert set(converted) == set(expected)
    assert len(converted) == 174
    assert converted["pos_embed"].shape == (1, 1370, 768)
    assert native_img_size(spec.timm_name, converted) == 518


# --- open_clip (BiomedCLIP) ---------------------------------------------------------------------------


def test_open_clip_trunk_is_the_timm_vit_without_text_or_projection() -> None:
    torch.manual_seed(0)
    trunk = build_model("vit_base_patch16_224", img_size=32, patch_size=8, **TINY)
    state = open_clip_state(trunk.state_dict(), 64)
    converted = convert_open_clip_trunk(state)
    assert set(converted) == set(trunk.state_dict())
    assert torch.equal(
        converted["blocks.1.mlp.fc2.weight"], trunk.state_dict()["blocks.1.mlp.fc2.weight"]
    )


def test_biomedclips_real_configuration_converts_to_every_timm_key() -> None:
    spec = load_manifest()["biomedclip-vitb16"]
    trunk = _meta_state(shape_model(spec.timm_name, img_size=224))
    converted = convert_checkpoint(
        "open-clip-trunk", open_clip_state(trunk, 768), spec.timm_name, origin="biomedclip"
    )
    assert set(converted) == set(trunk)
    assert len(converted) == 150  # 4 embedding tensors, 12 per block, 2 of the final norm


# --- timm hub files ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HUB_NAMES)
def test_timm_hub_files_keep_their_keys_and_lose_only_a_head(name: str) -> None:
    spec = load_manifest()[name]
    size = _published_size(spec.timm_name)
    published = _meta_state(shape_model(spec.timm_name, img_size=size))
    published["head.weight"] = torch.empty(1000, published["norm.weight"].shape[0], device="meta")
    converted = convert_checkpoint("timm", published, spec.timm_name, origin=name)
    assert "head.weight" not in converted
    assert len(converted) == len(published) - 1
    assert native_img_size(spec.timm_name, converted) == size


# --- the wrong checkpoint -------------------------------------------------------------------------


def test_a_timm_file_given_to_the_dinov2_converter_is_refused() -> None:
    state = build_model("vit_base_patch16_224", img_size=32, patch_size=8, **TINY).state_dict()
    with pytest.raises(BackboneError, match="not a Hugging Face DINOv2 checkpoint"):
        convert_checkpoint("hf-dinov2", state, "vit_base_patch14_dinov2", origin="x", **TINY)


def test_a_dinov2_file_given_to_the_open_clip_converter_is_refused() -> None:
    with pytest.raises(BackboneError, match="not an open_clip checkpoint"):
        convert_open_clip_trunk(hf_dinov2_state(64, 1, grid=2))


def test_a_checkpoint_of_another_size_is_refused_naming_the_tensors() -> None:
    """A ViT-S/14 (width 384) file where RAD-DINO's ViT-B/14 is expected."""
    state = hf_dinov2_state(384, 12, grid=37, device="meta")
    with pytest.raises(BackboneError, match=r"the wrong shape \(blocks\.0\.") as caught:
        convert_checkpoint(
            "hf-dinov2", state, "vit_base_patch14_dinov2", origin="small.safetensors"
        )
    assert "small.safetensors" in str(caught.value)
    assert "0 missing" in str(caught.value)


def test_a_missing_attention_part_and_a_foreign_tensor_are_named() -> None:
    state = hf_dinov2_state(64, 2, grid=4)
    del state["encoder.layer.1.attention.attention.value.weight"]
    with pytest.raises(
        BackboneError, match="Block 1 of the checkpoint lacks its attention value weight"
    ):
        convert_hf_dinov2(state)
    state = hf_dinov2_state(64, 2, grid=4)
    state["encoder.layer.0.mlp.weights_in.weight"] = torch.zeros(2, 2)
    with pytest.raises(BackboneError, match=r"mlp\.weights_in\.weight"):
        convert_hf_dinov2(state)


def test_an_unknown_converter_is_refused() -> None:
    with pytest.raises(BackboneError, match="Unknown checkpoint converter 'onnx'"):
        convert_checkpoint("onnx", {}, "vit_base_patch16_224", origin="x")


# --- the manifest's new entries -------------------------------------------------------------------


@pytest.mark.parametrize("name", NEW_NAMES)
def test_new_entries_state_their_source_licence_and_converter(name: str) -> None:
    spec = load_manifest()[name]
    assert isinstance(spec.source, HubSource)
    assert "licence" in spec.licence_text.lower() or "license" in spec.licence_text.lower()
    expected = {
        "dinov2-vits14-reg4": ("timm/vit_small_patch14_reg4_dinov2.lvd142m", "timm", "Apache-2.0"),
        "dinov2-vitb14-reg4": ("timm/vit_base_patch14_reg4_dinov2.lvd142m", "timm", "Apache-2.0"),
        "rad-dino": ("microsoft/rad-dino", "hf-dinov2", "MIT"),
        "biomedclip-vitb16": (
            "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
            "open-clip-trunk",
            "MIT",
        ),
    }[name]
    assert (spec.source.hub_id, spec.source.converter, spec.licence) == expected


@pytest.mark.parametrize("name", sorted(load_manifest()))
def test_register_count_and_size_agree_with_timms_architecture(name: str) -> None:
    """``registers`` is timm's ``num_reg_tokens``; ``weights_mb`` is 4 bytes per value at the
    published grid (the offline default's file: 88,240,824 bytes, 88.2 MB)."""
    spec = load_manifest()[name]
    model = shape_model(spec.timm_name, img_size=_published_size(spec.timm_name))
    assert int(getattr(model, "num_reg_tokens", 0)) == spec.registers
    values = sum(tensor.numel() for tensor in model.state_dict().values())
    assert spec.weights_mb is not None
    assert abs(values * 4 / 1e6 - spec.weights_mb) < 0.06
