"""A prompt file with a temperature and set thresholds: the torch runner, the ONNX runner and
predict_files give the same calibrated scores and the same prediction sets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pydicom
from support import tiny_backbone

from ept_studio.core.backbones import LoadedBackbone
from ept_studio.core.conformal import ConformalSets
from ept_studio.core.methods import EptConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata, save_prompt_file
from ept_studio.core.temperature import Calibration
from ept_studio.services.model.export import export_prompt_to_onnx
from ept_studio.services.model.inference import load_tuned_model, predict_files
from ept_studio.services.model.onnx_inference import open_torch_model, predict_paths

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
SHA = "ab" * 32
FILES = [SAMPLES / "CT_small.dcm", SAMPLES / "MR_small.dcm"]


def test_calibrated_scores_and_sets_agree_in_torch_onnx_and_predict_files(tmp_path: Path) -> None:
    def backbone() -> LoadedBackbone:
        loaded = tiny_backbone()
        return dataclasses.replace(loaded, weights_sha256=SHA)

    loaded = backbone()
    config = EptConfig(length=3)
    model = TunedModel(loaded.model, config, 2)
    calibration = Calibration(
        temperature=0.1, images=20, source="held-out support images", ece_before=0.2, ece_after=0.1
    )
    conformal = ConformalSets(
        coverage=0.9,
        thresholds=(0.98,),
        mondrian=False,
        label_mode="single",
        n=20,
        class_counts=(10, 10),
        guaranteed=True,
    )
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
        calibration=calibration,
        conformal=conformal,
    )
    plain_metadata = dataclasses.replace(metadata, calibration=None, conformal=None)
    prompt_file = tmp_path / "tiny.safetensors"
    save_prompt_file(prompt_file, model.trainable_state(), metadata)
    fresh = backbone()
    result = export_prompt_to_onnx(prompt_file, tmp_path / "tiny.onnx", backbone=fresh)
    runner = OnnxRunner(result.onnx_path, device="cpu")
    assert runner.info.calibration == calibration
    handle = load_tuned_model(prompt_file, backbone=fresh)
    by_onnx = predict_paths(runner, FILES)
    by_torch = predict_paths(open_torch_model(handle), FILES)
    by_files, skipped = predict_files(handle, FILES)
    assert not skipped
    for ours, theirs, plain in zip(
        by_onnx.predictions, by_torch.predictions, by_files, strict=True
    ):
        onnx_scores = list(ours.scores.values())
        np.testing.assert_allclose(onnx_scores, list(theirs.scores.values()), atol=1e-5)
        np.testing.assert_allclose(onnx_scores, list(plain.scores.values()), atol=1e-4)
        assert ours.prediction_set is not None
        assert ours.prediction_set == theirs.prediction_set == plain.prediction_set
        assert ours.predicted_class in ours.prediction_set
    uncalibrated, _ = predict_files(dataclasses.replace(handle, metadata=plain_metadata), FILES)
    assert not np.allclose(list(uncalibrated[0].scores.values()), list(by_files[0].scores.values()))
    assert uncalibrated[0].prediction_set is None
