"""A prompt file whose sizes do not fit its backbone is refused before anything is allocated.

Its ``input_size`` builds the backbone's position grid and every image's pixels: a million pixels
would ask for terabytes. The command line says why in one line and exits 2.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import make_tiny_vit

import ept_studio.core.backbones
from ept_studio.cli import main
from ept_studio.common.errors import PromptFileError
from ept_studio.core.backbones import LoadedBackbone, get_spec
from ept_studio.core.methods import LinearConfig
from ept_studio.core.prompt_file import save_prompt_file
from ept_studio.services.model.inference import load_tuned_model

BACKBONE = "dinov2-vits14-imgfocus"


def _linear_file(path: Path, input_size: int) -> Path:
    """A linear probe for the offline backbone's 384-wide features, claiming ``input_size``."""
    from ept_studio.core.prompt_file import PromptFileMetadata

    spec = get_spec(BACKBONE)
    metadata = PromptFileMetadata(
        method=LinearConfig().to_dict(),
        backbone=BACKBONE,
        backbone_sha256=spec.weights_sha256 or hashlib.sha256(b"x").hexdigest(),
        input_size=224,
        mean=spec.mean,
        std=spec.std,
        label_mode="single",
        class_names=("benign", "malignant"),
    )
    generator = torch.Generator().manual_seed(0)
    tensors = {"head.weight": torch.randn(2, 384, generator=generator), "head.bias": torch.zeros(2)}
    save_prompt_file(path, tensors, metadata)
    data = path.read_bytes()
    # Rewrite the one number in place, as a damaged or hostile file would carry it.
    edited = data.replace(b'\\"input_size\\": 224', f'\\"input_size\\": {input_size}'.encode())
    header_growth = len(edited) - len(data)
    length = int.from_bytes(data[:8], "little") + header_growth
    path.write_bytes(length.to_bytes(8, "little") + edited[8:])
    return path


def _refuse_to_load(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a backbone was built for a prompt file that should have been refused")


@pytest.mark.parametrize(
    ("input_size", "reason"),
    [
        (10**6, "input size 1000000 is above the 4096-pixel limit"),
        (448, "input size 448 is not the 224 pixels that backbone dinov2-vits14-imgfocus takes"),
    ],
)
def test_loading_refuses_a_foreign_input_size_before_building_the_backbone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, input_size: int, reason: str
) -> None:
    path = _linear_file(tmp_path / "model.safetensors", input_size)
    monkeypatch.setattr(ept_studio.core.backbones, "load_backbone", _refuse_to_load)
    with pytest.raises(PromptFileError, match=reason):
        load_tuned_model(path)


def test_predict_command_exits_2_with_one_line_naming_the_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _linear_file(tmp_path / "model.safetensors", 448)
    image = tmp_path / "scan.png"
    Image.fromarray(np.full((40, 40, 3), 120, dtype=np.uint8)).save(image)

    assert main(["predict", str(path), str(image)]) == 2
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if "error" in line]
    assert len(lines) == 1
    assert "model.safetensors" in lines[0]
    assert "input size 448" in lines[0]


def test_a_renamed_file_on_a_passed_backbone_is_held_to_that_backbones_size(
    tmp_path: Path,
) -> None:
    """The GUI passes its loaded backbone: a file that names another backbone but carries the
    same weights' checksum must still match the loaded backbone's input size."""
    path = _linear_file(tmp_path / "model.safetensors", 448)
    data = path.read_bytes()
    renamed = data.replace(f'\\"{BACKBONE}\\"'.encode(), b'\\"renamed-vits14-backbon\\"')
    assert len(renamed) == len(data)
    assert renamed != data
    path.write_bytes(renamed)
    spec = get_spec(BACKBONE)
    loaded = LoadedBackbone(
        model=make_tiny_vit(), spec=spec, weights_sha256=str(spec.weights_sha256), weights_path=None
    )
    with pytest.raises(PromptFileError, match="input size 448 is not the 224 pixels"):
        load_tuned_model(path, backbone=loaded)
