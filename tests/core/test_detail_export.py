"""A model with a detail view runs and exports everywhere with it: the ONNX graph takes the image at
both sizes and returns the combined logits, equal to the torch handle's, and nothing drops it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pydicom
import pytest
import skimage.data
import torch
from PIL import Image
from support import tiny_backbone

from ept_studio.common.errors import (
    BackboneMismatchError,
    ConfigError,
    ExportError,
    OnnxModelError,
)
from ept_studio.core.backbones import LoadedBackbone, backbone_at_size
from ept_studio.core.detail import (
    combine_logits,
    combine_logits_torch,
    detail_tensors,
    fit_detail_view,
)
from ept_studio.core.methods import EptConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import (
    DETAIL_INPUT_NAME,
    INPUT_NAME,
    ModelInfo,
    preprocess,
    preprocess_detail,
    preprocess_inputs,
)
from ept_studio.core.onnx_export import (
    InferenceModule,
    export_onnx,
    exportable_combine,
    model_info,
)
from ept_studio.core.onnx_precision import PrecisionThresholds
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata, save_prompt_file
from ept_studio.core.torch_runner import TorchRunner
from ept_studio.data.render import render_file
from ept_studio.evidence.bench_inference import OnnxWorker
from ept_studio.evidence.onnx_bench_worker import load_inputs, save_inputs
from ept_studio.services.model.export import export_handle_to_onnx, export_prompt_to_onnx
from ept_studio.services.model.inference import (
    TunedHandle,
    evaluate_folder,
    handle_scores,
    load_tuned_model,
    predict_files,
)
from ept_studio.services.model.onnx_inference import (
    image_decoder,
    iter_predictions,
    open_torch_model,
    predict_paths,
)
from ept_studio.services.model.onnx_ray import _decode_batch, _OnnxScorer

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
DICOM = [SAMPLES / "CT_small.dcm", SAMPLES / "MR_small.dcm"]
SHA = "ab" * 32
CLASSES = ("fundus", "histology", "other")
DETAIL = 64


def fresh_backbone() -> LoadedBackbone:
    """A fresh tiny ViT (32 px, patch 8) standing for the backbone the file was tuned on."""
    return dataclasses.replace(tiny_backbone(), weights_sha256=SHA)


def metadata(config: EptConfig, detail: int | None = DETAIL) -> PromptFileMetadata:
    return PromptFileMetadata(
        method=config.to_dict(),
        backbone="tiny-test-vit",
        backbone_sha256=SHA,
        input_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        label_mode="single",
        class_names=CLASSES,
        rendering={"policy": "auto"},
        detail_input_size=detail,
    )


def crops() -> list[np.ndarray]:
    """Real pixels: crops of scikit-image's fundus, histology and astronaut photographs."""
    sources = (skimage.data.retina(), skimage.data.immunohistochemistry(), skimage.data.astronaut())
    images = []
    for index, source in enumerate(sources):
        for offset in (0, 90):
            top = 100 + offset + 10 * index
            images.append(np.ascontiguousarray(source[top : top + 120, top : top + 100, :3]))
    return images


@dataclasses.dataclass(frozen=True)
class Fixture:
    prompt: Path
    plain_prompt: Path
    handle: TunedHandle
    pngs: list[Path]
    onnx: Path
    probe: torch.Tensor
    fitted_logits: torch.Tensor


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    folder = tmp_path_factory.mktemp("detail")
    config = EptConfig(length=3)
    tuned = TunedModel(fresh_backbone().model, config, len(CLASSES)).eval()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in tuned.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    training = crops()
    view = fit_detail_view(
        backbone_at_size(fresh_backbone(), DETAIL),
        [torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in training],
        [0, 0, 1, 1, 2, 2],
        len(CLASSES),
        scale=10.0,
    )
    probe = torch.randn(2, 3, DETAIL, DETAIL, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        fitted_logits = view(probe)
    prompt = folder / "detail.safetensors"
    save_prompt_file(prompt, {**tuned.trainable_state(), **detail_tensors(view)}, metadata(config))
    plain_prompt = folder / "plain.safetensors"
    save_prompt_file(plain_prompt, tuned.trainable_state(), metadata(config, None))
    pngs = []
    for index, image in enumerate(training[:4]):
        path = folder / "images" / f"image_{index}.png"
        path.parent.mkdir(exist_ok=True)
        shown = image if index % 2 else np.ascontiguousarray(image[:, :, 1])  # a grey one too
        Image.fromarray(shown).save(path)
        pngs.append(path)
    handle = load_tuned_model(prompt, backbone=fresh_backbone())
    result = export_handle_to_onnx(handle, folder / "detail.onnx")
    return Fixture(prompt, plain_prompt, handle, pngs, result.onnx_path, probe, fitted_logits)


def combined_reference(handle: TunedHandle, images: list[np.ndarray]) -> tuple[np.ndarray, ...]:
    """The two views' own forward passes in torch, combined in numpy; and the tuned logits."""
    info = model_info(handle.model, handle.metadata, "")
    assert handle.detail is not None
    with torch.no_grad():
        tuned = handle.model(torch.from_numpy(preprocess(images, info))).numpy()
        detail = handle.detail(torch.from_numpy(preprocess_detail(images, info))).numpy()
    return combine_logits(tuned, detail), tuned, detail


def softmax(logits: np.ndarray) -> np.ndarray:
    values = np.exp(logits - logits.max(axis=1, keepdims=True))
    result: np.ndarray = values / values.sum(axis=1, keepdims=True)
    return result


def test_the_handle_loads_the_detail_view_it_was_saved_with(made: Fixture) -> None:
    handle = made.handle
    assert handle.detail is not None
    assert handle.metadata.detail_input_size == DETAIL
    assert tuple(handle.detail.backbone.patch_embed.grid_size) == (8, 8)
    assert tuple(handle.model.backbone.patch_embed.grid_size) == (4, 4)
    # the view that was fitted, on the plain frozen backbone (not the tuned model's blocks)
    with torch.no_grad():
        torch.testing.assert_close(handle.detail(made.probe), made.fitted_logits)
    plain = load_tuned_model(made.plain_prompt, backbone=fresh_backbone())
    assert plain.detail is None
    # the tuned part loads alike with or without the detail tensors beside it
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(handle.model(pixels), plain.model(pixels))


def test_the_export_takes_both_inputs_and_equals_the_combined_torch_logits(made: Fixture) -> None:
    graph = onnx.load(str(made.onnx))
    shapes = {
        value.name: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]
        for value in graph.graph.input
    }
    assert shapes == {
        INPUT_NAME: ["batch", 3, 32, 32],
        DETAIL_INPUT_NAME: ["batch", 3, DETAIL, DETAIL],
    }
    props = {p.key: p.value for p in graph.metadata_props}
    assert props["detail_input_size"] == str(DETAIL)
    runner = OnnxRunner(made.onnx, device="cpu")
    assert runner.info.detail_input_size == DETAIL
    images = [render_file(path) for path in DICOM] + crops()[:3]
    ours = runner.predict(images)
    combined, tuned, detail = combined_reference(made.handle, images)
    np.testing.assert_allclose(ours.logits, combined, atol=1e-4, rtol=0)
    np.testing.assert_allclose(
        ours.probabilities, (softmax(tuned) + softmax(detail)) / 2, atol=1e-5, rtol=0
    )
    # the detail view changes the answer: not the tuned model's logits, nor its probabilities
    assert float(np.abs(ours.probabilities - softmax(tuned)).max()) > 0.05
    assert float(np.abs(ours.logits - tuned).max()) > 0.05
    # the maps stay the tuned model's
    info = runner.info
    with torch.no_grad():
        _, _, attention, rollout = InferenceModule(made.handle.model, "single")(
            torch.from_numpy(preprocess(images, info))
        )
    np.testing.assert_allclose(ours.attention, attention.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.rollout, rollout.numpy(), atol=1e-5, rtol=0)


def test_the_torch_runner_runs_the_detail_view_too(made: Fixture) -> None:
    images = crops()
    torch_runner = open_torch_model(made.handle)
    assert torch_runner.info.detail_input_size == DETAIL
    theirs = torch_runner.predict(images)
    ours = OnnxRunner(made.onnx, device="cpu").predict(images)
    np.testing.assert_allclose(theirs.logits, combined_reference(made.handle, images)[0], atol=1e-5)
    np.testing.assert_allclose(ours.logits, theirs.logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.attention, theirs.attention, atol=1e-5, rtol=0)
    # without its detail view the torch runner refuses to stand for the model
    with pytest.raises(ConfigError, match="detail view"):
        TorchRunner(made.handle.model, torch_runner.info)


def test_files_are_predicted_with_the_combined_scores(made: Fixture) -> None:
    files = [*made.pngs, DICOM[0]]
    decode = image_decoder({"policy": "auto"})
    rendered = [decode(path) for path in files]
    expected = softmax(combined_reference(made.handle, rendered)[0].astype(np.float64))
    runner = OnnxRunner(made.onnx, device="cpu")
    events = list(iter_predictions(runner, files, batch_size=2, workers=1))
    by_onnx = predict_paths(runner, files, batch_size=3).predictions
    by_torch = predict_paths(open_torch_model(made.handle), files).predictions
    by_files, skipped = predict_files(made.handle, files, batch_size=2)
    assert not skipped
    assert len(events) == 1 + 3 + 1  # started, three batches, finished
    for index, path in enumerate(files):
        rows = [by_onnx[index], by_torch[index], by_files[index]]
        assert all(row.path == path for row in rows)
        for row in rows:
            np.testing.assert_allclose(list(row.scores.values()), expected[index], atol=1e-4)
        assert len({row.predicted_class for row in rows}) == 1
    # predict_files and the evaluation score with the detail view, not the tuned model alone
    tensors = [torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in rendered]
    alone = dataclasses.replace(made.handle, detail=None)
    assert float(np.abs(handle_scores(alone, tensors) - expected).max()) > 0.05
    np.testing.assert_allclose(handle_scores(made.handle, tensors), expected, atol=1e-4)


def test_a_labelled_folder_is_evaluated_with_the_detail_view(made: Fixture, tmp_path: Path) -> None:
    images = crops()
    for index, image in enumerate(images):
        folder = tmp_path / CLASSES[index // 2]
        folder.mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / f"{index}.png")
    report = evaluate_folder(made.handle, tmp_path)
    assert report.images == 6
    tensors = [torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in images]
    predicted = handle_scores(made.handle, tensors).argmax(axis=1)
    matrix = np.zeros((3, 3), dtype=int)
    for index, column in enumerate(predicted):
        matrix[index // 2, column] += 1
    # images are scanned per class folder, in name order: the same six, the same predictions
    assert report.confusion_matrix == matrix.tolist()
    assert report.metrics["accuracy"] == pytest.approx(float(np.trace(matrix)) / 6)


def test_a_plain_model_keeps_one_input_and_refuses_detail_pixels(
    made: Fixture, tmp_path: Path
) -> None:
    result = export_prompt_to_onnx(
        made.plain_prompt, tmp_path / "plain.onnx", backbone=fresh_backbone()
    )
    graph = onnx.load(str(result.onnx_path))
    assert [value.name for value in graph.graph.input] == [INPUT_NAME]
    assert "detail_input_size" not in {p.key for p in graph.metadata_props}
    # the detail view's backbone weights are the tuned model's, stored once
    assert made.onnx.stat().st_size < 1.2 * result.onnx_path.stat().st_size
    runner = OnnxRunner(result.onnx_path, device="cpu")
    assert runner.info.detail_input_size is None
    pixels = preprocess(crops()[:2], runner.info)
    with pytest.raises(ConfigError, match="no detail view"):
        runner.run(pixels, np.zeros((2, 3, DETAIL, DETAIL), np.float32))
    with pytest.raises(ConfigError, match="no detail view"):
        preprocess_detail(crops()[:1], runner.info)
    assert preprocess_inputs(crops()[:2], runner.info)[1] is None
    assert runner.run(pixels).logits.shape == (2, 3)


def test_a_detail_model_refuses_missing_or_wrong_detail_pixels(made: Fixture) -> None:
    images = crops()[:2]
    for runner in (OnnxRunner(made.onnx, device="cpu"), open_torch_model(made.handle)):
        pixels, detail = preprocess_inputs(images, runner.info)
        assert detail is not None
        assert detail.shape == (2, 3, DETAIL, DETAIL)
        with pytest.raises(ConfigError, match="has a detail view") as caught:
            runner.run(pixels)
        assert "\n" not in str(caught.value)
        with pytest.raises(ConfigError, match=r"detail pixels \[2, 3, 64, 64\]"):
            runner.run(pixels, detail[:1])
        with pytest.raises(ConfigError, match=r"detail pixels \[2, 3, 64, 64\]"):
            runner.run(pixels, np.zeros((2, 3, 32, 32), np.float32))
        assert runner.run(pixels, detail).logits.shape == (2, 3)


def test_model_info_round_trips_the_detail_size(made: Fixture) -> None:
    info = OnnxRunner(made.onnx, device="cpu").info
    props = info.to_metadata_props()
    assert props["detail_input_size"] == "64"
    assert ModelInfo.from_metadata_props(props, "x") == info
    # a file exported before the detail view existed has no such entry: no detail view
    old = {k: v for k, v in props.items() if k != "detail_input_size"}
    assert ModelInfo.from_metadata_props(old, "old.onnx").detail_input_size is None
    assert (
        "detail_input_size"
        not in dataclasses.replace(info, detail_input_size=None).to_metadata_props()
    )
    for damaged, reason in (("32", "not above the input size"), ("0", "detail_input_size")):
        with pytest.raises(OnnxModelError, match=reason):
            ModelInfo.from_metadata_props({**props, "detail_input_size": damaged}, "x")


def _with_props(source: Path, target: Path, change: dict[str, str | None]) -> Path:
    proto = onnx.load(str(source))
    props = {p.key: p.value for p in proto.metadata_props}
    for key, value in change.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(target))
    return target


def test_a_graph_and_metadata_that_disagree_on_the_detail_view_are_refused(
    made: Fixture, tmp_path: Path
) -> None:
    no_entry = _with_props(made.onnx, tmp_path / "a.onnx", {"detail_input_size": None})
    with pytest.raises(OnnxModelError, match="takes detail pixels but its metadata") as caught:
        OnnxRunner(no_entry, device="cpu")
    assert str(no_entry) in str(caught.value)
    other_size = _with_props(made.onnx, tmp_path / "b.onnx", {"detail_input_size": "96"})
    with pytest.raises(OnnxModelError, match="do not match its EPT Studio metadata"):
        OnnxRunner(other_size, device="cpu")
    plain = export_prompt_to_onnx(made.plain_prompt, tmp_path / "p.onnx", backbone=fresh_backbone())
    claims = _with_props(plain.onnx_path, tmp_path / "c.onnx", {"detail_input_size": "64"})
    with pytest.raises(OnnxModelError, match="graph takes no detail pixels"):
        OnnxRunner(claims, device="cpu")


def test_an_export_never_drops_the_detail_view(made: Fixture, tmp_path: Path) -> None:
    info = model_info(made.handle.model, made.handle.metadata, "cd" * 32)
    images = [render_file(DICOM[0])]
    with pytest.raises(ExportError, match="64 px detail view but none was given"):
        export_onnx(made.handle.model, tmp_path / "x.onnx", info, images)
    plain_info = dataclasses.replace(info, detail_input_size=None)
    with pytest.raises(ExportError, match="no detail size"):
        export_onnx(
            made.handle.model, tmp_path / "y.onnx", plain_info, images, detail=made.handle.detail
        )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_keeps_the_detail_view(
    made: Fixture, tmp_path: Path, precision: str
) -> None:
    result = export_handle_to_onnx(
        made.handle,
        tmp_path / f"{precision}.onnx",
        precision=precision,
        thresholds=PrecisionThresholds(min_agreement=0.0, min_correlation=0.0),
    )
    assert result.precision_check is not None
    assert result.precision_check.images == 2
    runner = OnnxRunner(result.onnx_path, device="cpu")
    assert runner.info.detail_input_size == DETAIL
    assert runner.info.precision is not None
    images = crops()
    reduced = runner.predict(images)
    reference = OnnxRunner(made.onnx, device="cpu").predict(images)
    # every weight shrinks, also those the two views share
    assert result.size_bytes < 0.75 * made.onnx.stat().st_size
    tolerance = 0.05 if precision == "int8" else 0.01
    np.testing.assert_allclose(reduced.probabilities, reference.probabilities, atol=tolerance)
    with pytest.raises(ConfigError, match="has a detail view"):
        runner.run(preprocess(images, runner.info))


def test_ray_batches_carry_the_detail_pixels(made: Fixture) -> None:
    runner = OnnxRunner(made.onnx, device="cpu")
    files = [*made.pngs[:2], made.pngs[0].with_name("missing.png")]
    batch = {"index": np.arange(3), "path": np.array([str(f) for f in files], dtype=object)}
    decoded = _decode_batch(batch, runner.info, keep_image=False)
    assert decoded["detail_pixels"].shape == (3, 3, DETAIL, DETAIL)
    assert decoded["error"][2]
    assert not decoded["error"][0]
    scored = _OnnxScorer(str(made.onnx), gpu=False)(decoded)
    local = predict_paths(runner, files[:2]).predictions
    for row, prediction in enumerate(local):
        np.testing.assert_allclose(
            scored["probabilities"][row], list(prediction.scores.values()), atol=1e-6
        )
    assert float(np.abs(scored["probabilities"][2]).max()) == 0.0


def test_the_bench_worker_feeds_both_inputs(made: Fixture, tmp_path: Path) -> None:
    info = OnnxRunner(made.onnx, device="cpu").info
    single = preprocess_inputs(crops()[:1], info)
    stored = save_inputs(tmp_path / "single", *single)
    assert stored.suffix == ".npz"
    _pixels, detail = load_inputs(stored)
    assert detail is not None
    np.testing.assert_array_equal(detail, single[1])
    assert save_inputs(tmp_path / "plain", single[0]).suffix == ".npy"
    with OnnxWorker(made.onnx, stored, threads=1, spinning="off") as worker:
        seconds = worker.latency(2)
    assert len(seconds) == 2
    assert all(s > 0 for s in seconds)


def test_the_exported_combination_is_the_detail_module_s() -> None:
    generator = torch.Generator().manual_seed(2)
    tuned, detail = (
        torch.randn(4, 3, generator=generator) * 5,
        torch.randn(4, 3, generator=generator),
    )
    torch.testing.assert_close(
        exportable_combine(tuned, detail), combine_logits_torch(tuned, detail)
    )
    huge = exportable_combine(torch.tensor([[1e4, -1e4]]), torch.tensor([[-1e4, 1e4]]))
    torch.testing.assert_close(huge.exp(), torch.tensor([[0.5, 0.5]]))


def test_the_detail_backbone_must_be_the_file_s_weights_at_its_size(made: Fixture) -> None:
    with pytest.raises(BackboneMismatchError, match="built for 96 px but"):
        load_tuned_model(
            made.prompt,
            backbone=fresh_backbone(),
            detail_backbone=backbone_at_size(fresh_backbone(), 96),
        )
    other = dataclasses.replace(
        backbone_at_size(fresh_backbone(), DETAIL), weights_sha256="cd" * 32
    )
    with pytest.raises(BackboneMismatchError, match="load the same backbone"):
        load_tuned_model(made.prompt, backbone=fresh_backbone(), detail_backbone=other)
    given = backbone_at_size(fresh_backbone(), DETAIL)
    handle = load_tuned_model(made.prompt, backbone=fresh_backbone(), detail_backbone=given)
    assert handle.detail is not None
    with torch.no_grad():
        torch.testing.assert_close(handle.detail(made.probe), made.fitted_logits)
