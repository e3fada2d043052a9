"""ONNX export: every method, its outputs against torch, the metadata, and the loud parity check.

Check images are real: pydicom's CT and MR sample files rendered by the data layer. The export of
the real offline backbone runs through the CLI in ``tests/cli/test_cli_onnx.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pydicom
import pytest
import torch
from onnx import numpy_helper
from support import make_tiny_vit

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common.errors import ExportError, ParityError
from ept_studio.core.attention import ConcatPrompt, LogsumexpPrompt
from ept_studio.core.methods import (
    BiasConfig,
    EptConfig,
    FullConfig,
    LinearConfig,
    LoraConfig,
    MethodConfig,
    VptConfig,
)
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import ModelInfo, preprocess
from ept_studio.core.onnx_export import (
    attention_rollout,
    check_parity,
    compact_prompts_for_export,
    export_onnx,
    model_info,
)
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata
from ept_studio.core.torch_runner import TorchRunner
from ept_studio.data.render import render_file

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"

METHODS: dict[str, MethodConfig] = {
    "ept-deep": EptConfig(length=6),
    "ept-shallow": EptConfig.shallow(length=4),
    "ept-last-block": EptConfig(length=5, blocks=(1,)),
    "ept-add": EptConfig(embedding="add"),
    "ept-multi": EptConfig(embedding="multi"),
    "ept-multi-cat": EptConfig(embedding="multi_cat", length=3),
    "ept-compact": EptConfig(length=1, compact=True),
    "linear": LinearConfig(),
    "bias": BiasConfig(),
    "full": FullConfig(),
    "vpt-deep": VptConfig(length=3),
    "vpt-shallow": VptConfig(length=2, deep=False),
    "lora": LoraConfig(rank=2),
}


def check_images() -> list[np.ndarray]:
    return [
        render_file(SAMPLES / name) for name in ("CT_small.dcm", "MR_small.dcm", "MR_small.dcm")
    ]


def tuned_model(config: MethodConfig, classes: int = 3, seed: int = 0) -> TunedModel:
    """A tiny tuned ViT whose trainable tensors are moved off their initial values."""
    model = TunedModel(make_tiny_vit(seed), config, classes).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


def info_for(model: TunedModel, label_mode: str = "single") -> ModelInfo:
    classes = tuple(f"class_{i}" for i in range(model.num_classes))
    metadata = PromptFileMetadata(
        method=model.method_config.to_dict(),
        backbone="tiny-test-vit",
        backbone_sha256="ab" * 32,
        input_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        label_mode=label_mode,
        class_names=classes,
        compact=bool(getattr(model.method_config, "compact", False)),
        rendering={"policy": "file", "window": None, "invert": None, "frame": 0},
    )
    return model_info(model, metadata, "cd" * 32)


@pytest.mark.parametrize("config", list(METHODS.values()), ids=list(METHODS))
def test_every_method_exports_and_matches_torch(config: MethodConfig, tmp_path: Path) -> None:
    model = tuned_model(config)
    info = info_for(model)
    images = check_images()
    report = export_onnx(model, tmp_path / "model.onnx", info, images)
    assert report.parity.images == 3
    assert report.parity.logits_error <= 1e-4
    assert report.parity.attention_error <= 1e-5
    assert report.parity.rollout_error <= 1e-5
    assert report.opset == 17
    ours = OnnxRunner(report.path, device="cpu").predict(images[:2])
    reference = TorchRunner(model, info).predict(images[:2])
    assert ours.logits.shape == (2, 3)
    assert ours.attention.shape == (2, 4, 16)
    assert ours.rollout.shape == (2, 16)
    np.testing.assert_allclose(ours.logits, reference.logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.attention, reference.attention, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.rollout, reference.rollout, atol=1e-5, rtol=0)
    np.testing.assert_allclose(ours.probabilities.sum(axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        eager = model(torch.from_numpy(preprocess(images[:2], info))).numpy()
    np.testing.assert_allclose(ours.logits, eager, atol=1e-4, rtol=0)


def test_attention_output_is_the_tuned_cls_row_after_prompt_columns_drop(tmp_path: Path) -> None:
    model = tuned_model(EptConfig(length=8))
    info = info_for(model)
    images = check_images()[:2]
    path = export_onnx(model, tmp_path / "ept.onnx", info, images).path
    ours = OnnxRunner(path, device="cpu").predict(images)
    pixels = torch.from_numpy(preprocess(images, info))
    with torch.no_grad():
        _, weights = model.forward_with_attention(pixels)
        tuned = model.cls_attention(weights[-1]).numpy()
        frozen = make_tiny_vit(0)
        frozen_model = TunedModel(frozen, LinearConfig(), 3).eval()
        _, frozen_weights = frozen_model.forward_with_attention(pixels)
    np.testing.assert_allclose(ours.attention, tuned, atol=1e-6)
    assert (
        np.abs(ours.attention - frozen_model.cls_attention(frozen_weights[-1]).numpy()).max() > 1e-3
    )
    full_row = weights[-1][:, :, 0, :].sum(-1).numpy()  # CLS row over every token
    assert np.all(full_row < 1.0 - 1e-4)  # EPT: the prompt columns took some mass


def _rollout_by_full_product(weights: list[torch.Tensor], prefix: int) -> torch.Tensor:
    product = None
    for block in weights:
        mixed = block.double().mean(1) + torch.eye(block.shape[-1], dtype=torch.float64)
        mixed = mixed / mixed.sum(-1, keepdim=True)
        product = mixed if product is None else mixed @ product
    assert product is not None
    return product[:, 0, prefix:]


@pytest.mark.parametrize("config", [EptConfig(length=4), VptConfig(length=3), LinearConfig()])
def test_rollout_is_the_cls_row_of_the_full_product(config: MethodConfig) -> None:
    model = TunedModel(make_tiny_vit(3, depth=3), config, 2).eval()
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        _, weights = model.forward_with_attention(pixels, (0, 1, 2))
    ours = attention_rollout(weights, model.prefix_tokens)
    truth = _rollout_by_full_product(weights, model.prefix_tokens)
    assert ours.shape == (2, 16)
    np.testing.assert_allclose(ours.double().numpy(), truth.numpy(), atol=1e-6)
    assert bool((ours.sum(-1) < 1.0).all())
    assert bool((ours > 0).all())
    with pytest.raises(ExportError):
        attention_rollout([], 1)


def test_compact_export_form_is_exact_and_put_back() -> None:
    model = tuned_model(EptConfig(length=7))
    prompt = model.backbone.blocks[0].attn.prompt
    assert isinstance(prompt, ConcatPrompt)
    logits = torch.randn(2, 4, 17, 17, generator=torch.Generator().manual_seed(5)) * 3
    compact = LogsumexpPrompt(prompt)
    with torch.no_grad():
        torch.testing.assert_close(
            compact.weights(logits), prompt.weights(logits), atol=1e-6, rtol=0
        )
    with compact_prompts_for_export(model):
        assert isinstance(model.backbone.blocks[1].attn.prompt, LogsumexpPrompt)
    assert model.backbone.blocks[1].attn.prompt.__class__ is ConcatPrompt
    assert model.backbone.blocks[0].attn.prompt is prompt


def test_metadata_describes_the_model_and_nothing_else(tmp_path: Path) -> None:
    model = tuned_model(EptConfig(length=3), classes=2)
    info = info_for(model, label_mode="multi")
    path = export_onnx(model, tmp_path / "m.onnx", info, check_images()).path
    proto = onnx.load(str(path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["ept_studio.onnx_format"] == "1"
    assert props["class_names"] == '["class_0", "class_1"]'
    assert props["label_mode"] == "multi"
    assert props["input_size"] == "32"
    assert props["mean"] == "[0.485, 0.456, 0.406]"
    assert props["std"] == "[0.229, 0.224, 0.225]"
    assert props["backbone"] == "tiny-test-vit"
    assert props["backbone_sha256"] == "ab" * 32
    assert props["prompt_sha256"] == "cd" * 32
    assert props["app_version"] == __version__
    assert props["notice"] == RESEARCH_USE_NOTICE
    assert '"policy": "file"' in props["rendering"]
    assert props["heads"] == "4"
    assert props["patch_grid"] == "[4, 4]"
    assert proto.doc_string == RESEARCH_USE_NOTICE
    assert proto.producer_name == "EPT Studio"
    joined = " ".join(props.values())
    for leak in (str(tmp_path), "CT_small", "MR_small", str(SAMPLES)):
        assert leak not in joined
    runner = OnnxRunner(path, device="cpu")
    assert runner.info == info
    outputs = runner.predict(check_images()[:1])
    sigmoid = 1.0 / (1.0 + np.exp(-outputs.logits.astype(np.float64)))
    np.testing.assert_allclose(outputs.probabilities, sigmoid, atol=1e-6)  # multi-label


def test_dynamic_batch(tmp_path: Path) -> None:
    model = tuned_model(VptConfig(length=2))
    info = info_for(model)
    path = export_onnx(model, tmp_path / "vpt.onnx", info, check_images()).path
    runner = OnnxRunner(path, device="cpu")
    pixels = preprocess(check_images() * 3, info)
    batch = runner.run(pixels)
    one_by_one = np.concatenate([runner.run(pixels[i : i + 1]).logits for i in range(9)])
    assert batch.logits.shape == (9, 3)
    np.testing.assert_allclose(batch.logits, one_by_one, atol=1e-5)


def _add_to_head_bias(path: Path, head_bias: np.ndarray) -> None:
    proto = onnx.load(str(path))
    for initializer in proto.graph.initializer:
        values = numpy_helper.to_array(initializer)
        if values.shape == head_bias.shape and np.allclose(values, head_bias):
            initializer.CopyFrom(numpy_helper.from_array(values + 0.5, initializer.name))
            onnx.save(proto, str(path))
            return
    raise AssertionError("head bias not found")


def test_a_diverging_onnx_file_fails_the_parity_check_loudly(tmp_path: Path) -> None:
    model = tuned_model(EptConfig(length=3))
    info = info_for(model)
    path = export_onnx(model, tmp_path / "m.onnx", info, check_images()).path
    _add_to_head_bias(path, model.head.bias.detach().numpy())
    with pytest.raises(ParityError, match=r"logits differ by 0\.5"):
        check_parity(model, path, check_images())


def test_a_failed_export_writes_nothing(tmp_path: Path) -> None:
    model = tuned_model(LoraConfig(rank=2))
    info = info_for(model)
    target = tmp_path / "m.onnx"
    with pytest.raises(ParityError, match=str(target)):
        export_onnx(model, target, info, check_images(), logits_tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []
    assert model.training is False


def test_export_refuses_what_it_cannot_check(tmp_path: Path) -> None:
    model = tuned_model(LinearConfig())
    info = info_for(model)
    with pytest.raises(ExportError, match="at least one image"):
        export_onnx(model, tmp_path / "m.onnx", info, [])
    with pytest.raises(ExportError, match="does not exist"):
        export_onnx(model, tmp_path / "nowhere" / "m.onnx", info, check_images())
    with pytest.raises(ExportError, match="opset 13"):
        export_onnx(model, tmp_path / "m.onnx", info, check_images(), opset=13)
