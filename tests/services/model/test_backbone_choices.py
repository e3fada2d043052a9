"""The backbone list the app shows: read from the manifest without torch, each backbone's command
to get it, and a broken manifest named in the error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ept_studio.common.errors import BackboneError
from ept_studio.services.model import backbone_choices

ROOT = Path(__file__).resolve().parents[3]


def test_every_backbone_is_listed_default_first_with_the_command_that_gets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPT_STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "vit-b16-in21k.safetensors").write_bytes(b"")
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text(encoding="utf-8"))
    choices = backbone_choices()
    assert [c.name for c in choices] == [b["name"] for b in manifest["backbones"]]
    assert [c.default for c in choices] == [True] + [False] * (len(choices) - 1)
    assert [c.name for c in choices if c.available] == ["vit-b16-in21k"]
    by_name = {c.name: c for c in choices}
    assert by_name["vit-b16-in21k"].size_mb == 343.2
    assert by_name["dinov2-vitb14-reg4"].get_command == (
        "ept-studio models get dinov2-vitb14-reg4 --accept-licence"
    )
    assert by_name["dinov2-vitb14-reg4"].get_note == ""
    assert by_name["biomedclip-vitb16"].get_command.endswith("--from-file FILE.safetensors")


def test_a_broken_manifest_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "manifest.json"
    broken.write_text('{"backbones": [{"name": "x"}]}', encoding="utf-8")
    with pytest.raises(BackboneError, match=f"The backbone list {broken} cannot be read"):
        backbone_choices(broken)


def test_listing_loads_no_torch() -> None:
    code = (
        "import sys; from ept_studio.services.model import backbone_choices; "
        "backbone_choices(); print(sorted({'torch', 'timm'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
