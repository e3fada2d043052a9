"""``export_prompt_to_onnx(..., precision=)``: an int8 or fp16 model that keeps the prompt file's
temperature and prediction sets, predicts like the fp32 export, and leaves nothing when refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from support import tiny_backbone

from ept_studio.common.errors import ConfigError, ExportError
from ept_studio.core.backbones import LoadedBackbone
from ept_studio.core.conformal import ConformalSets
from ept_studio.core.methods import EptConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.onnx_precision import PrecisionThresholds
from ept_studio.core.prompt_file import PromptFileMetadata, save_prompt_file
from ept_studio.core.temperature import Calibration
from ept_studio.services.model.export import export_prompt_to_onnx
from ept_studio.services.model.onnx_inference import open_onnx_model, predict_paths

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
SHA = "ab" * 32
FILES = [SAMPLES / "CT_small.dcm", SAMPLES / "MR_small.dcm"]
CALIBRATION = Calibration(
    temperature=0.5, images=20, source="held-out support images", ece_before=0.2, ece_after=0.1
)
CONFORMAL = ConformalSets(
    coverage=0.9,
    thresholds=(0.6,),
    mondrian=False,
    label_mode="single",
    n=20,
    class_counts=(10, 10),
    guaranteed=True,
)


def _backbone() -> LoadedBackbone:
    return dataclasses.replace(tiny_backbone(), weights_sha256=SHA)


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny EPT prompt file with a temperature and prediction-set thresholds."""
    config = EptConfig(length=3)
    torch.manual_seed(0)  # a seeded head: an unseeded one can put the check images on a near-tie
    model = TunedModel(_backbone().model, config, 2)
    metadata = PromptFileMetadata(
        method=config.to_dict(),
        backbone="tiny-test-vit",
        backbone_sha256=SHA,
        input_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        label_mode="single",
        class_names=("benign", "malignant"),
        rendering={"policy": "auto"},
        calibration=CALIBRATION,
        conformal=CONFORMAL,
    )
    path = tmp_path_factory.mktemp("prompt") / "tiny.safetensors"
    save_prompt_file(path, model.trainable_state(), metadata)
    return path


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_a_reduced_model_keeps_temperature_and_sets_and_predicts_like_fp32(
    tmp_path: Path, prompt_file: Path, precision: str
) -> None:
    fp32 = export_prompt_to_onnx(prompt_file, tmp_path / "fp32.onnx", backbone=_backbone())
    reduced = export_prompt_to_onnx(
        prompt_file, tmp_path / f"{precision}.onnx", backbone=_backbone(), precision=precision
    )
    assert (fp32.precision, fp32.precision_check) == ("fp32", None)
    assert reduced.precision == precision
    assert reduced.precision_check is not None
    assert reduced.precision_check.top1_agreement == 1.0
    assert reduced.size_bytes < fp32.size_bytes
    assert reduced.parity.images == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["fp32.onnx", f"{precision}.onnx"])
    runner = open_onnx_model(reduced.onnx_path, device="cpu")
    assert runner.info.precision == reduced.precision_check
    assert (runner.info.calibration, runner.info.conformal) == (CALIBRATION, CONFORMAL)
    ours = predict_paths(runner, FILES).predictions
    theirs = predict_paths(open_onnx_model(fp32.onnx_path, device="cpu"), FILES).predictions
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.predicted_class == reference.predicted_class
        np.testing.assert_allclose(
            list(mine.scores.values()), list(reference.scores.values()), atol=0.03
        )
        assert mine.prediction_set is not None
        assert mine.prediction_set == reference.prediction_set
        assert mine.attention.shape == reference.attention.shape == (4, 16)
        assert (
            np.corrcoef(mine.attention.mean(axis=0), reference.attention.mean(axis=0))[0, 1] > 0.95
        )


def test_a_refused_reduced_model_leaves_no_file(tmp_path: Path, prompt_file: Path) -> None:
    out = tmp_path / "int8.onnx"
    strict = PrecisionThresholds(min_correlation=1.0)
    with pytest.raises(ExportError, match=r"int8\.onnx: not exported, the int8 model is too far"):
        export_prompt_to_onnx(
            prompt_file, out, backbone=_backbone(), precision="int8", thresholds=strict
        )
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="choose fp32, int8 or fp16"):
        export_prompt_to_onnx(prompt_file, out, backbone=_backbone(), precision="bf16")
    assert list(tmp_path.iterdir()) == []
