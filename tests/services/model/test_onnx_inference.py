"""Batch inference over folders through ONNX Runtime, overlays, cancelling, and the export service."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path

import numpy as np
import pydicom
import pytest
import skimage.data
import torch
from PIL import Image
from support import make_tiny_vit, tiny_backbone

from ept_studio.common.errors import ConfigError, ExportError
from ept_studio.common.files import file_sha256
from ept_studio.core.methods import EptConfig, MethodConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import ModelInfo
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata, save_prompt_file
from ept_studio.core.torch_runner import TorchRunner
from ept_studio.data.overlay import attention_map, grid_cell
from ept_studio.data.render import RenderingSpec, render_file
from ept_studio.services.model.export import export_prompt_to_onnx
from ept_studio.services.model.inference import load_tuned_model
from ept_studio.services.model.onnx_inference import (
    BatchPredicted,
    InferenceFinished,
    InferenceStarted,
    OverlayOptions,
    collect_files,
    image_decoder,
    iter_predictions,
    open_torch_model,
    predict_paths,
    rendering_spec,
)

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
SHA = "ab" * 32


def _metadata(
    config: MethodConfig, classes: tuple[str, ...] = ("benign", "malignant")
) -> PromptFileMetadata:
    return PromptFileMetadata(
        method=config.to_dict(),
        backbone="tiny-test-vit",
        backbone_sha256=SHA,
        input_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        label_mode="single",
        class_names=classes,
        rendering={"policy": "auto"},
    )


def _export(model: TunedModel, path: Path) -> tuple[OnnxRunner, ModelInfo]:
    info = model_info(model, _metadata(model.method_config), "cd" * 32)
    images = [render_file(SAMPLES / "CT_small.dcm"), render_file(SAMPLES / "MR_small.dcm")]
    export_onnx(model, path, info, images)
    return OnnxRunner(path, device="cpu", threads=1), info


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[OnnxRunner, TunedModel]:
    model = TunedModel(make_tiny_vit(0), EptConfig(length=4), 2).eval()
    with torch.no_grad():
        model.head.weight.normal_(0, 1.0, generator=torch.Generator().manual_seed(2))
    runner, _ = _export(model, tmp_path_factory.mktemp("onnx") / "tiny.onnx")
    return runner, model


def _folder(root: Path) -> Path:
    """Two DICOM files, a PNG (a fundus crop), a truncated DICOM, a text file, a hidden file."""
    sub = root / "series"
    sub.mkdir(parents=True)
    shutil.copyfile(SAMPLES / "CT_small.dcm", root / "a_ct.dcm")
    shutil.copyfile(SAMPLES / "MR_small.dcm", sub / "b_mr.dcm")
    Image.fromarray(skimage.data.retina()[200:328, 300:428]).save(root / "c_fundus.png")
    shutil.copyfile(SAMPLES / "MR_truncated.dcm", root / "d_truncated.dcm")
    (root / "e_notes.txt").write_text("not an image", encoding="utf-8")
    (root / ".hidden.png").write_bytes(b"ignored")
    return root


def test_folder_inference_events_scores_and_failures(
    tmp_path: Path, tiny: tuple[OnnxRunner, TunedModel]
) -> None:
    runner, model = tiny
    root = _folder(tmp_path / "images")
    events = list(iter_predictions(runner, [root], batch_size=2, workers=2))
    started, *progress, finished = events
    assert isinstance(started, InferenceStarted)
    assert started.total == 5
    assert started.provider == "CPUExecutionProvider"
    assert all(isinstance(e, BatchPredicted) for e in progress)
    assert [e.done for e in progress] == sorted(e.done for e in progress)
    assert progress[-1].done == 5
    assert isinstance(finished, InferenceFinished)
    assert not finished.cancelled
    names = [p.path.name for p in finished.predictions]
    assert names == ["a_ct.dcm", "c_fundus.png", "b_mr.dcm"]
    failed = {f.path.name: f.reason for f in finished.failed}
    assert set(failed) == {"d_truncated.dcm", "e_notes.txt"}
    assert "not a recognised image format" in failed["e_notes.txt"]
    images = [render_file(p.path) for p in finished.predictions]
    expected = TorchRunner(model, runner.info).predict(images)
    for index, prediction in enumerate(finished.predictions):
        assert prediction.sha256 == file_sha256(prediction.path)
        scores = [prediction.scores["benign"], prediction.scores["malignant"]]
        np.testing.assert_allclose(scores, expected.probabilities[index], atol=1e-5)
        assert prediction.predicted_class == ("benign", "malignant")[int(np.argmax(scores))]
        assert prediction.attention.shape == (4, 16)
        assert prediction.rollout.shape == (16,)
        np.testing.assert_allclose(prediction.attention, expected.attention[index], atol=1e-6)
        assert prediction.overlay is None


def test_cancel_stops_between_images(tmp_path: Path, tiny: tuple[OnnxRunner, TunedModel]) -> None:
    runner, _ = tiny
    root = tmp_path / "many"
    root.mkdir()
    for index in range(12):
        shutil.copyfile(SAMPLES / "MR_small.dcm", root / f"{index:02d}.dcm")
    seen: list[int] = []

    def cancel() -> bool:
        return len(seen) >= 1

    finished = None
    for event in iter_predictions(runner, [root], batch_size=2, cancel=cancel):
        if isinstance(event, BatchPredicted):
            seen.append(event.done)
        if isinstance(event, InferenceFinished):
            finished = event
    assert finished is not None
    assert finished.cancelled
    assert len(finished.predictions) == 2
    decoded: list[Path] = []
    gate, inside_second = threading.Event(), threading.Event()

    def gated_decode(path: Path) -> np.ndarray:
        decoded.append(path)
        if len(decoded) > 1:
            inside_second.set()
            gate.wait(timeout=10)
        return render_file(path)

    events = iter_predictions(runner, [root], batch_size=1, workers=1, decode=gated_decode)
    next(events)
    next(events)  # the first image went through
    assert inside_second.wait(timeout=10)  # the worker now waits inside the second decode
    threading.Timer(0.5, gate.set).start()
    events.close()  # drops the queued decodes, then waits for the one running
    assert [p.name for p in decoded] == ["00.dcm", "01.dcm"]


def test_overlays_are_written_per_image_named_by_hash(
    tmp_path: Path, tiny: tuple[OnnxRunner, TunedModel]
) -> None:
    runner, _ = tiny
    root = _folder(tmp_path / "images")
    out = tmp_path / "overlays"
    finished = predict_paths(runner, [root], overlays=OverlayOptions(out, alpha=0.6, head=1))
    assert len(finished.predictions) == 3
    for prediction in finished.predictions:
        assert prediction.overlay == out / f"{prediction.sha256[:16]}_attention.png"
        base = render_file(prediction.path)
        with Image.open(prediction.overlay) as image:
            assert image.format == "PNG"
            assert image.size[0] == base.shape[1]
            assert image.size[1] > base.shape[0]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        p.overlay.name for p in finished.predictions
    )
    rollout = predict_paths(
        runner, [root / "a_ct.dcm"], overlays=OverlayOptions(tmp_path / "r", rollout=True)
    )
    assert rollout.predictions[0].overlay is not None
    assert rollout.predictions[0].overlay.is_file()
    with pytest.raises(ConfigError, match="head 9 does not exist"):
        predict_paths(runner, [root], overlays=OverlayOptions(out, head=9))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        OverlayOptions(out, alpha=2.0)


@pytest.mark.parametrize("patch", [0, 6, 13])
def test_attention_forced_onto_one_patch_peaks_there_in_the_overlay(
    tmp_path: Path, patch: int
) -> None:
    """EPT's Add prompt on the last block puts the CLS row's logit for one patch 60 above the rest."""
    model = TunedModel(make_tiny_vit(1), EptConfig(embedding="add", blocks=(1,)), 2).eval()
    with torch.no_grad():
        prompt = model.backbone.blocks[1].attn.prompt.prompt
        prompt.zero_()
        prompt[0, model.prefix_tokens + patch] = 60.0
    runner, info = _export(model, tmp_path / "forced.onnx")
    image = render_file(SAMPLES / "CT_small.dcm")
    outputs = runner.predict([image])
    assert outputs.attention[0, :, patch].min() > 0.99
    values = attention_map(outputs.attention[0], info.patch_grid, image.shape[:2])
    peak = np.unravel_index(int(np.argmax(values)), values.shape)
    rows, columns = grid_cell(patch, info.patch_grid, image.shape[:2])
    assert rows.start <= peak[0] < rows.stop
    assert columns.start <= peak[1] < columns.stop
    finished = predict_paths(
        runner, [SAMPLES / "CT_small.dcm"], overlays=OverlayOptions(tmp_path / "o", alpha=1.0)
    )
    assert finished.predictions[0].overlay is not None
    with Image.open(finished.predictions[0].overlay) as shown:
        pixels = np.asarray(shown.convert("RGB"))[: image.shape[0]].astype(int)
    brightest = np.unravel_index(int(np.argmax(pixels.sum(axis=2))), pixels.shape[:2])
    assert rows.start <= brightest[0] < rows.stop
    assert columns.start <= brightest[1] < columns.stop


def test_files_are_rendered_with_the_models_stored_spec(tmp_path: Path) -> None:
    deep = tmp_path / "sixteen_bit.png"
    ramp = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 7).astype(np.uint16)
    Image.fromarray(ramp).save(deep)
    windowed = RenderingSpec(window=(10_000.0, 4_000.0))
    by_file, by_window = image_decoder({"policy": "file"}), image_decoder(windowed.to_dict())
    np.testing.assert_array_equal(by_file(deep), render_file(deep, RenderingSpec()))
    np.testing.assert_array_equal(by_window(deep), render_file(deep, windowed))
    assert not np.array_equal(by_file(deep), by_window(deep))
    np.testing.assert_array_equal(
        by_file(SAMPLES / "CT_small.dcm"), render_file(SAMPLES / "CT_small.dcm")
    )


def test_collect_files_and_rendering_spec(tmp_path: Path) -> None:
    root = _folder(tmp_path / "images")
    files, failed = collect_files([root, root / "a_ct.dcm", tmp_path / "gone"])
    assert [f.name for f in files] == [
        "a_ct.dcm",
        "c_fundus.png",
        "d_truncated.dcm",
        "e_notes.txt",
        "b_mr.dcm",
    ]
    assert [(f.path.name, f.reason) for f in failed] == [("gone", "file or folder not found")]
    assert rendering_spec({"policy": "auto"}) == RenderingSpec()
    assert rendering_spec({"policy": "per-image", "specs": []}) == RenderingSpec()
    window = RenderingSpec(window=(40.0, 400.0))
    assert rendering_spec(window.to_dict()) == window
    assert rendering_spec({"policy": "percentile", "invert": True}) == RenderingSpec(
        policy="percentile", invert=True
    )


def test_export_service_from_a_prompt_file(tmp_path: Path) -> None:
    torch.manual_seed(0)
    loaded = tiny_backbone()
    loaded = dataclasses.replace(loaded, weights_sha256=SHA)
    config = EptConfig(length=3)
    model = TunedModel(loaded.model, config, 2)
    prompt_file = tmp_path / "tiny.safetensors"
    save_prompt_file(prompt_file, model.trainable_state(), _metadata(config))
    fresh = dataclasses.replace(
        tiny_backbone(),
        weights_sha256=SHA,
    )
    result = export_prompt_to_onnx(prompt_file, tmp_path / "tiny.onnx", backbone=fresh)
    assert result.onnx_path.is_file()
    assert result.check_source == "pydicom's CT and MR sample images"
    assert result.parity.images == 2
    assert result.parity.logits_error <= 1e-4
    assert result.class_names == ("benign", "malignant")
    runner = OnnxRunner(result.onnx_path, device="cpu")
    assert runner.info.prompt_sha256 == file_sha256(prompt_file)
    handle = load_tuned_model(prompt_file, backbone=fresh)
    in_app = open_torch_model(handle)
    assert in_app.info == runner.info
    files = [SAMPLES / "CT_small.dcm", SAMPLES / "MR_small.dcm"]
    by_onnx, by_torch = predict_paths(runner, files), predict_paths(in_app, files)
    assert by_torch.provider == "torch-cpu"
    for ours, theirs in zip(by_onnx.predictions, by_torch.predictions, strict=True):
        assert ours.predicted_class == theirs.predicted_class
        np.testing.assert_allclose(
            list(ours.scores.values()), list(theirs.scores.values()), atol=1e-5
        )
        np.testing.assert_allclose(ours.attention, theirs.attention, atol=1e-5)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ExportError, match=r"bad\.png"):
        export_prompt_to_onnx(
            prompt_file, tmp_path / "other.onnx", backbone=fresh, check_files=[bad]
        )
    assert not (tmp_path / "other.onnx").exists()
