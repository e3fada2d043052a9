"""The GPU bf16 check's half copy: the offline backbone in 44 MB, widened back to what it was."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import save_file

from ept_studio.core.backbones import load_backbone

ROOT = Path(__file__).resolve().parents[2]


def _check_script() -> ModuleType:
    path = ROOT / "packaging" / "device" / "bf16_check.py"
    spec = importlib.util.spec_from_file_location("bf16_check", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_half_copy_gives_the_offline_backbones_features(tmp_path: Path) -> None:
    check = _check_script()
    original = load_backbone()
    copy = tmp_path / "backbone-fp16.safetensors"
    facts = check.write_half_copy(original.weights_path, copy)
    assert facts["source_sha256"] == original.weights_sha256
    assert copy.stat().st_size < 0.51 * original.weights_path.stat().st_size
    widened = check.load_half_copy(copy)
    assert widened.spec.name == original.spec.name
    assert widened.weights_sha256 != original.weights_sha256  # the record names the copy
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, got = original.model(pixels), widened.model(pixels)
    cosine = torch.nn.functional.cosine_similarity(want, got, dim=1)
    assert float(cosine.min()) > 0.9999
    assert float((want - got).abs().max()) < 0.05 * float(want.abs().max())


def test_a_copy_of_other_weights_is_refused(tmp_path: Path) -> None:
    check = _check_script()
    copy = tmp_path / "other.safetensors"
    metadata = {"format": check.HALF_COPY_FORMAT, "source_sha256": "0" * 64}
    save_file({"cls_token": torch.zeros(1, 1, 384, dtype=torch.float16)}, copy, metadata=metadata)
    with pytest.raises(SystemExit, match="other weights"):
        check.load_half_copy(copy)
    save_file({"cls_token": torch.zeros(1, 1, 384)}, copy)
    with pytest.raises(SystemExit, match="not a half copy"):
        check.load_half_copy(copy)
