"""``models list`` and ``models get``: licence, size and presence; the licence asked before a get."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ept_studio.cli import main
from ept_studio.common.files import file_sha256
from ept_studio.core.backbones import load_backbone
from ept_studio.core.backbones.loader import build_model


class _Terminal(io.StringIO):
    """Standard input as a person at a terminal would give it."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


def _line(lines: list[str], name: str) -> str:
    return next(line for line in lines if f" {name} " in line)


def test_models_list_shows_licence_size_presence_and_pinning(
    cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["name", "licence", "size", "sha256"]
    assert len(lines) == 1 + 7
    assert _line(lines, "dinov2-vits14-imgfocus").split() == [
        "here",
        "dinov2-vits14-imgfocus",
        "MIT",
        "88",
        "MB",
        "pinned",
        "(default)",
    ]
    assert _line(lines, "rad-dino").split() == [
        "missing",
        "rad-dino",
        "MIT",
        "346",
        "MB",
        "not",
        "pinned",
    ]
    assert _line(lines, "dinov2-vits14-reg4").split()[1:] == [
        "dinov2-vits14-reg4",
        "Apache-2.0",
        "88",
        "MB",
        "not",
        "pinned",
        "4",
        "register",
        "tokens",
    ]
    assert "343 MB" in _line(lines, "biomedclip-vitb16")


def test_get_without_a_terminal_or_the_flag_refuses_naming_the_licence(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["models", "get", "rad-dino"]) == 2
    err = capsys.readouterr().err
    assert "rad-dino: MIT licence. RAD-DINO by Microsoft Health Futures" in err
    assert "not meant for clinical practice" in err
    assert "under the MIT licence and nobody here can accept it" in err
    assert "ept-studio models get rad-dino --accept-licence" in err
    assert not cache.exists()


def test_get_at_a_terminal_asks_and_a_no_downloads_nothing(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", _Terminal("n\n"))
    assert main(["models", "get", "dinov2-vitb14-reg4"]) == 2
    err = capsys.readouterr().err
    assert "Accept the Apache-2.0 licence and get dinov2-vitb14-reg4? [y/N]" in err
    assert "was not accepted: nothing downloaded" in err
    assert not cache.exists()


def test_a_yes_at_the_terminal_goes_on_to_the_source(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accepted, BiomedCLIP then stops at its publisher's pickle file, before any network."""
    monkeypatch.setattr(sys, "stdin", _Terminal("yes\n"))
    assert main(["models", "get", "biomedclip-vitb16"]) == 2
    err = capsys.readouterr().err
    assert "[y/N]" in err
    assert "only as a Python pickle file" in err


def test_get_from_a_file_installs_a_register_backbone_that_loads_with_261_tokens(
    cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timm ViT-S/14 with 4 registers at its published 518 px grid, seeded, as from the hub."""
    torch.manual_seed(0)
    published = build_model("vit_small_patch14_reg4_dinov2", img_size=518).state_dict()
    source = tmp_path / "model.safetensors"
    save_file(published, source)
    argv = ["models", "get", "dinov2-vits14-reg4", "--accept-licence", "--from-file", str(source)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    weights = cache / "dinov2-vits14-reg4.safetensors"
    assert captured.out.strip() == str(weights)
    assert "its sha256 is not pinned in the backbone list" in captured.err
    record = json.loads(weights.with_name(weights.name + ".source.json").read_text())
    assert record["file_sha256"] == file_sha256(source)
    loaded = load_backbone("dinov2-vits14-reg4")
    assert loaded.weights_sha256 == record["weights_sha256"]
    model = loaded.model
    assert (model.num_reg_tokens, model.pos_embed.shape[1]) == (4, 256)
    assert torch.equal(model.reg_token, published["reg_token"])
    with torch.inference_mode():
        tokens = model.forward_features(torch.zeros(1, 3, 224, 224))
    assert tokens.shape == (1, 261, 384)
    assert main(["models", "list"]) == 0
    assert _line(capsys.readouterr().out.splitlines(), "dinov2-vits14-reg4").startswith("here")
