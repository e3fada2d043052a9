"""Calibration and prediction-set blocks through the prompt file and the ONNX file, torch and ONNX
Runtime giving the same calibrated probabilities and the same sets."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from support import tiny_metadata, tiny_tuned_model

from ept_studio.common.errors import OnnxModelError, PromptFileError
from ept_studio.core.conformal import ConformalSets, fit_conformal, prediction_set
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import ModelInfo
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.core.prompt_file import (
    METADATA_KEY,
    PromptFileMetadata,
    read_prompt_file,
    save_prompt_file,
)
from ept_studio.core.temperature import Calibration, apply_temperature
from ept_studio.core.torch_runner import TorchRunner

CLASSES = ("benign", "malignant", "normal")
CALIBRATION = Calibration(
    temperature=0.25, images=24, source="held-out support images", ece_before=0.3, ece_after=0.1
)


def _images(seed: int, count: int = 6) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40, 36, 3), dtype=np.uint8) for _ in range(count)]


def _blocks(model: TunedModel, metadata: PromptFileMetadata) -> ConformalSets:
    """Thresholds fitted on the tiny model's own calibrated scores (other images than the tests')."""
    runner = TorchRunner(model, model_info(model, metadata, "cd" * 32))
    outputs = runner.predict(_images(100, 30))
    probabilities = apply_temperature(outputs.logits, CALIBRATION.temperature)
    labels = np.random.default_rng(5).integers(0, len(CLASSES), 30)
    sets = fit_conformal(probabilities, labels, coverage=0.7, mondrian=False)
    assert isinstance(sets, ConformalSets)
    return sets


@pytest.fixture(scope="module")
def calibrated(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[TunedModel, PromptFileMetadata, Path, Path]:
    model = tiny_tuned_model(len(CLASSES), head_seed=3)
    plain = tiny_metadata(model, CLASSES)
    metadata = dataclasses.replace(plain, calibration=CALIBRATION, conformal=_blocks(model, plain))
    folder = tmp_path_factory.mktemp("calibrated")
    prompt = folder / "tiny.safetensors"
    sha = save_prompt_file(prompt, model.trainable_state(), metadata)
    _, read_back = read_prompt_file(prompt)
    onnx_path = folder / "tiny.onnx"
    export_onnx(model, onnx_path, model_info(model, read_back, sha), _images(0, 2))
    return model, metadata, prompt, onnx_path


def test_blocks_round_trip_through_the_prompt_file_as_json(
    calibrated: tuple[TunedModel, PromptFileMetadata, Path, Path],
) -> None:
    _, metadata, prompt, _ = calibrated
    _, read_back = read_prompt_file(prompt)
    assert read_back.calibration == CALIBRATION
    assert read_back.conformal == metadata.conformal
    document = json.loads(metadata.to_json())
    assert document["calibration"]["temperature"] == 0.25
    assert document["conformal"]["coverage"] == 0.7
    assert PromptFileMetadata.from_dict(document) == metadata


def test_a_file_without_blocks_is_uncalibrated_and_written_as_before(tmp_path: Path) -> None:
    model = tiny_tuned_model(2)
    metadata = tiny_metadata(model, ("a", "b"))
    assert "calibration" not in metadata.to_dict()
    assert "conformal" not in metadata.to_dict()
    path = tmp_path / "plain.safetensors"
    save_prompt_file(path, model.trainable_state(), metadata)
    _, read_back = read_prompt_file(path)
    assert read_back.calibration is None
    assert read_back.conformal is None
    props = model_info(model, read_back, "cd" * 32).to_metadata_props()
    assert "calibration" not in props
    assert "conformal" not in props
    assert ModelInfo.from_metadata_props(props, "x.onnx").calibration is None


def test_damaged_or_mismatched_blocks_are_refused() -> None:
    model = tiny_tuned_model(2)
    document = tiny_metadata(model, ("a", "b")).to_dict()
    with pytest.raises(PromptFileError, match="calibration metadata is damaged"):
        PromptFileMetadata.from_dict({**document, "calibration": {"temperature": -2}})
    three_classes = ConformalSets(
        coverage=0.9,
        thresholds=(0.5, 0.5, 0.5),
        mondrian=True,
        label_mode="single",
        n=30,
        class_counts=(10, 10, 10),
        guaranteed=True,
    )
    with pytest.raises(PromptFileError, match="prediction-set thresholds"):
        PromptFileMetadata.from_dict({**document, "conformal": three_classes.to_dict()})
    props = model_info(model, tiny_metadata(model, ("a", "b")), "cd" * 32).to_metadata_props()
    with pytest.raises(OnnxModelError, match="damaged"):
        ModelInfo.from_metadata_props(
            {**props, "conformal": json.dumps(three_classes.to_dict())}, "m"
        )
    with pytest.raises(OnnxModelError, match="damaged"):
        ModelInfo.from_metadata_props({**props, "calibration": "{not json"}, "m")


def test_blocks_round_trip_through_the_onnx_file_and_torch_and_onnx_agree(
    calibrated: tuple[TunedModel, PromptFileMetadata, Path, Path],
) -> None:
    model, metadata, _, onnx_path = calibrated
    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert json.loads(props["calibration"]) == CALIBRATION.to_dict()
    runner = OnnxRunner(onnx_path, device="cpu", threads=1)
    assert runner.info.calibration == CALIBRATION
    assert runner.info.conformal == metadata.conformal
    theirs = TorchRunner(model, runner.info).predict(_images(7, 12))
    ours = runner.predict(_images(7, 12))
    expected = apply_temperature(ours.logits, CALIBRATION.temperature)
    np.testing.assert_allclose(ours.probabilities, expected, atol=1e-7)
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=1e-5)
    assert ours.sets is not None
    assert ours.sets == theirs.sets
    assert metadata.conformal is not None
    thresholds = metadata.conformal.thresholds
    assert list(ours.sets) == [tuple(prediction_set(p, thresholds)) for p in ours.probabilities]
    assert {len(s) for s in ours.sets} != {len(CLASSES)}  # not every set is every class
    raw = onnx.load(str(onnx_path))
    assert METADATA_KEY not in {p.key for p in raw.metadata_props}  # plain props, no pickles


def test_an_onnx_file_without_blocks_keeps_the_graph_probabilities(tmp_path: Path) -> None:
    model = tiny_tuned_model(2, head_seed=1)
    info = model_info(model, tiny_metadata(model, ("a", "b")), "cd" * 32)
    path = tmp_path / "plain.onnx"
    export_onnx(model, path, info, _images(0, 2))
    outputs = OnnxRunner(path, device="cpu", threads=1).predict(_images(1, 3))
    assert outputs.sets is None
    np.testing.assert_allclose(
        outputs.probabilities, apply_temperature(outputs.logits, 1.0), atol=1e-6
    )
