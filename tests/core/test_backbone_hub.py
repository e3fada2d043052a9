"""Installing a hub backbone offline: pins, pickle refusal, licence, the source record.

Nothing downloads: the network step is refused before it starts (a pickle source, a licence not
accepted), or a file is installed from disk as ``models get NAME --from-file`` does.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ept_studio.common.errors import BackboneError, BackboneNotAvailableError, ChecksumMismatchError
from ept_studio.common.files import file_sha256
from ept_studio.core.backbones import HubSource, load_manifest, models_dir
from ept_studio.core.backbones.download import download_backbone
from ept_studio.core.backbones.hub import (
    SOURCE_RECORD_FORMAT,
    install_backbone_file,
    local_file,
    source_record_path,
)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


class _Touch:
    """Unpickling this creates ``marker``: proof that a pickle was (or was not) opened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_a_licence_not_accepted_downloads_nothing(cache: Path) -> None:
    with pytest.raises(BackboneError, match="under the MIT licence, which has not been accepted"):
        download_backbone("rad-dino", licence_accepted=False)
    assert not cache.exists()


def test_a_pickle_source_is_refused_before_any_download(cache: Path) -> None:
    with pytest.raises(BackboneNotAvailableError, match="only as a Python pickle file") as caught:
        download_backbone("biomedclip-vitb16", licence_accepted=True)
    message = str(caught.value)
    assert "open_clip_pytorch_model.bin" in message
    assert "ept-studio models get biomedclip-vitb16 --from-file FILE.safetensors" in message
    assert not cache.exists()


def test_a_pickle_given_as_the_file_is_never_unpickled(cache: Path, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    hostile = tmp_path / "open_clip_pytorch_model.bin"
    hostile.write_bytes(pickle.dumps({"visual.trunk.cls_token": _Touch(marker)}))
    with pytest.raises(BackboneError, match="not a readable safetensors file"):
        download_backbone("biomedclip-vitb16", licence_accepted=True, file=hostile)
    assert not marker.exists()
    assert not (cache / "biomedclip-vitb16.safetensors").exists()


def test_a_file_that_differs_from_the_pinned_sha256_is_refused(cache: Path, tmp_path: Path) -> None:
    spec = load_manifest()["rad-dino"]
    assert isinstance(spec.source, HubSource)
    pinned = dataclasses.replace(
        spec, source=dataclasses.replace(spec.source, file_sha256="0" * 64)
    )
    path = tmp_path / "model.safetensors"
    save_file({"embeddings.cls_token": torch.zeros(1, 1, 768)}, path)
    with pytest.raises(ChecksumMismatchError, match="expected 0000") as caught:
        install_backbone_file(pinned, local_file(path), cache)
    assert file_sha256(path) in str(caught.value)
    assert not (cache / spec.weights_file).exists()


def test_the_wrong_checkpoint_writes_nothing(cache: Path, tmp_path: Path) -> None:
    """The offline default's ViT-S/14 file offered as RAD-DINO (a Hugging Face ViT-B/14)."""
    default = models_dir() / load_manifest()["dinov2-vits14-imgfocus"].weights_file
    with pytest.raises(BackboneError, match="not a Hugging Face DINOv2 checkpoint"):
        download_backbone("rad-dino", licence_accepted=True, file=default)
    assert not cache.exists() or not any(cache.iterdir())


def test_a_local_file_installs_with_a_record_that_says_nothing_was_pinned(
    cache: Path, tmp_path: Path
) -> None:
    """An open_clip file with a ViT-B/16 trunk, as BiomedCLIP's would be once in safetensors."""
    from ept_studio.core.backbones.loader import build_model

    torch.manual_seed(0)
    trunk = build_model("vit_base_patch16_224", img_size=224).state_dict()
    state = {f"visual.trunk.{key}": value for key, value in trunk.items()}
    state["visual.head.proj.weight"] = torch.zeros(512, 768)
    state["logit_scale"] = torch.tensor(4.6)
    path = tmp_path / "biomedclip.safetensors"
    save_file(state, path)
    weights = download_backbone("biomedclip-vitb16", licence_accepted=True, file=path)
    assert weights == cache / "biomedclip-vitb16.safetensors"
    record = json.loads(source_record_path(weights).read_text())
    assert record["format"] == SOURCE_RECORD_FORMAT
    assert record["file_sha256"] == file_sha256(path)
    assert record["weights_sha256"] == file_sha256(weights)
    assert (record["commit"], record["from_local_file"]) == (None, True)
    assert (record["revision_pinned"], record["file_sha256_pinned"]) == (False, False)
    assert (record["converter"], record["licence"]) == ("open-clip-trunk", "MIT")
    sidecar = weights.with_name(weights.name + ".sha256").read_text().strip()
    assert sidecar == record["weights_sha256"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("registers", -1, "registers must be a whole number"),
        ("converter", "onnx", "converter must be one of"),
        ("format", "zip", "format must be one of"),
        ("file_sha256", "abc", "file_sha256 must be 64"),
        ("revision", "", "revision must be a non-empty string"),
        ("weights_mb", 0, "weights_mb must be a positive number"),
    ],
)
def test_a_bad_hub_entry_is_refused_naming_the_field(
    tmp_path: Path, field: str, value: object, reason: str
) -> None:
    document = json.loads((models_dir() / "manifest.json").read_text())
    entry = next(e for e in document["backbones"] if e["name"] == "rad-dino")
    (entry if field in ("registers", "weights_mb") else entry["source"])[field] = value
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(document))
    with pytest.raises(BackboneError, match=rf"manifest\.json is malformed: rad-dino: {reason}"):
        load_manifest(path)
