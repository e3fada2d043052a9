"""int8 and fp16 copies of an fp32 export: conversion, the check against fp32, the atomic write,
and the precision record in the model's metadata."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import onnx
import pydicom
import pytest
from support import tiny_metadata, tiny_tuned_model

from ept_studio.common.errors import ConfigError, ExportError, OnnxModelError
from ept_studio.core.gpu import nvidia_gpu_count
from ept_studio.core.model_io import ModelInfo, ModelOutputs, PrecisionRecord, preprocess
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_precision import (
    FP32_OPS,
    Precision,
    PrecisionThresholds,
    compare,
    export_precision,
    pearson,
    precision_choice,
)
from ept_studio.core.onnx_runtime import CPU_PROVIDER, CUDA_PROVIDER, OnnxRunner
from ept_studio.data.render import render_file

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def fp32_export(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, np.ndarray, list[np.ndarray]]:
    """The tiny EPT model's checked fp32 export, its check pixels and the rendered images."""
    model = tiny_tuned_model(3, head_seed=3)
    info = model_info(model, tiny_metadata(model, ("cyst", "nodule", "normal")), "cd" * 32)
    images = [render_file(SAMPLES / "CT_small.dcm"), render_file(SAMPLES / "MR_small.dcm")]
    path = tmp_path_factory.mktemp("precision") / "tiny.onnx"
    export_onnx(model, path, info, images)
    return path, preprocess(images, info), images


def test_int8_passes_its_check_and_predicts_like_fp32(
    tmp_path: Path, fp32_export: tuple[Path, np.ndarray, list[np.ndarray]]
) -> None:
    reference, pixels, images = fp32_export
    result = export_precision(reference, tmp_path / "int8.onnx", "int8", pixels)
    record = result.record
    assert (record.precision, record.images, record.provider) == ("int8", 2, CPU_PROVIDER)
    assert record.top1_agreement == 1.0
    assert 0.99 < record.attention_correlation < 1.0  # int8 changes the maps, a little
    assert 0.99 < record.rollout_correlation < 1.0
    assert (record.min_agreement, record.min_correlation) == (0.99, 0.95)
    assert result.notes == ()
    proto = onnx.load(str(result.path))
    ops = {node.op_type for node in proto.graph.node}
    assert "DynamicQuantizeLinear" in ops
    assert "MatMulInteger" in ops
    int8_weights = [
        t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and t.dims
    ]
    assert len(int8_weights) == 2 * 4 + 1  # qkv, proj, fc1, fc2 of both blocks, and the head
    runner = OnnxRunner(result.path, device="cpu")
    assert runner.info.precision == record
    fp32 = OnnxRunner(reference, device="cpu")
    assert dataclasses.replace(runner.info, precision=None) == fp32.info
    ours, theirs = runner.predict(images), fp32.predict(images)
    assert (ours.logits.argmax(axis=1) == theirs.logits.argmax(axis=1)).all()
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=0.05)
    assert ours.attention.shape == theirs.attention.shape == (2, 4, 16)


def test_fp16_keeps_float32_inputs_and_outputs_and_says_where_it_was_checked(
    tmp_path: Path, fp32_export: tuple[Path, np.ndarray, list[np.ndarray]]
) -> None:
    reference, pixels, images = fp32_export
    result = export_precision(reference, tmp_path / "fp16.onnx", Precision.FP16, pixels)
    record = result.record
    assert record.precision == "fp16"
    assert record.top1_agreement == 1.0
    assert record.attention_correlation > 0.999
    if nvidia_gpu_count() == 0:
        assert record.provider == CPU_PROVIDER
        assert result.notes == (
            "no CUDA GPU here: the fp16 model was checked on the CPU; a GPU runs it with other "
            "kernels, so check its results there once",
        )
    else:
        assert (record.provider, result.notes) == (CUDA_PROVIDER, ())
    proto = onnx.load(str(result.path))
    float32 = onnx.TensorProto.FLOAT
    assert {v.type.tensor_type.elem_type for v in (*proto.graph.input, *proto.graph.output)} == {
        float32
    }
    weights = [t for t in proto.graph.initializer if len(t.dims) == 2]
    assert weights
    assert all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert "Exp" in FP32_OPS
    ours = OnnxRunner(result.path, device="cpu").predict(images)
    theirs = OnnxRunner(reference, device="cpu").predict(images)
    assert ours.logits.dtype == np.float32
    np.testing.assert_allclose(ours.logits, theirs.logits, atol=0.05)


def test_a_check_that_falls_short_keeps_nothing_and_gives_the_figures(
    tmp_path: Path, fp32_export: tuple[Path, np.ndarray, list[np.ndarray]]
) -> None:
    reference, pixels, _ = fp32_export
    out = tmp_path / "int8.onnx"
    out.write_bytes(b"an earlier file")
    strict = PrecisionThresholds(min_agreement=0.99, min_correlation=1.0)
    with pytest.raises(ExportError) as raised:
        export_precision(reference, out, "int8", pixels, thresholds=strict)
    message = str(raised.value)
    assert message.startswith(f"{out}: not exported, the int8 model is too far from the fp32 model")
    assert "attention-map correlation and rollout-map correlation too low" in message
    assert "top-1 agreement 1.0000 (needs >= 0.99)" in message
    assert "attention-map correlation 0.99" in message
    assert "(needs >= 1)" in message
    assert out.read_bytes() == b"an earlier file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]


def test_requests_that_make_no_sense_are_refused(
    tmp_path: Path, fp32_export: tuple[Path, np.ndarray, list[np.ndarray]]
) -> None:
    reference, pixels, _ = fp32_export
    with pytest.raises(ConfigError, match="choose fp32, int8 or fp16"):
        precision_choice("int4")
    with pytest.raises(ConfigError, match="the fp32 model is the export itself"):
        export_precision(reference, tmp_path / "x.onnx", "fp32", pixels)
    with pytest.raises(ConfigError, match=r"min_correlation must be between 0 and 1, got 1\.5"):
        PrecisionThresholds(min_correlation=1.5)
    with pytest.raises(ExportError, match=r"x\.onnx: not exported"):
        export_precision(tmp_path / "missing.onnx", tmp_path / "x.onnx", "fp16", pixels)
    assert list(tmp_path.iterdir()) == []


def _outputs(logits: list[list[float]], maps: np.ndarray) -> ModelOutputs:
    values = np.asarray(logits, dtype=np.float32)
    return ModelOutputs(values, values, maps[:, None, :], maps, CPU_PROVIDER)


def test_the_figures_are_the_share_agreeing_and_the_lowest_correlation() -> None:
    maps = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    fp32 = _outputs([[2.0, 1.0], [0.0, 1.0]], maps)
    shifted = maps.copy()
    shifted[1] = [0.1, 0.2, 0.3, 0.4]  # the second image's map reversed: correlation -1
    reduced = _outputs([[2.0, 1.0], [1.5, 1.0]], shifted)
    record = compare(fp32, reduced, Precision.INT8)
    assert record.top1_agreement == 0.5
    assert record.attention_correlation == pytest.approx(-1.0)
    assert record.rollout_correlation == pytest.approx(-1.0)
    assert compare(fp32, fp32, Precision.FP16).attention_correlation == pytest.approx(1.0)


def test_pearson_of_known_maps() -> None:
    ramp = np.arange(6.0)
    assert pearson(ramp, 3 * ramp + 1) == pytest.approx(1.0)
    assert pearson(ramp, np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])) == pytest.approx(
        0.29277, abs=1e-5
    )
    assert pearson(np.ones(4), np.ones(4)) == 1.0
    assert pearson(np.ones(4), ramp[:4]) == 0.0


def _record() -> PrecisionRecord:
    return PrecisionRecord(
        precision="int8",
        method="dynamic quantization",
        images=2,
        top1_agreement=1.0,
        attention_correlation=0.9877,
        rollout_correlation=0.9939,
        min_agreement=0.99,
        min_correlation=0.95,
        provider=CPU_PROVIDER,
    )


def test_the_precision_record_round_trips_through_the_metadata(
    fp32_export: tuple[Path, np.ndarray, list[np.ndarray]],
) -> None:
    info = dataclasses.replace(OnnxRunner(fp32_export[0], device="cpu").info, precision=_record())
    props = info.to_metadata_props()
    assert '"attention_correlation": 0.9877' in props["precision"]
    assert ModelInfo.from_metadata_props(props, "m.onnx") == info
    plain = {k: v for k, v in props.items() if k != "precision"}
    assert ModelInfo.from_metadata_props(plain, "m.onnx").precision is None
    for damaged in ('{"precision": "int4"}', '"int8"', props["precision"].replace("2,", "0,")):
        with pytest.raises(OnnxModelError, match=r"m\.onnx: its EPT Studio metadata is missing"):
            ModelInfo.from_metadata_props({**props, "precision": damaged}, "m.onnx")


def test_the_conversion_tools_leave_no_warning_in_the_log(
    tmp_path: Path,
    fp32_export: tuple[Path, np.ndarray, list[np.ndarray]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    reference, pixels, _ = fp32_export
    with caplog.at_level(logging.INFO):
        for precision in ("int8", "fp16"):
            export_precision(reference, tmp_path / f"{precision}.onnx", precision, pixels)
    assert [r.name for r in caplog.records] == ["ept_studio.core.onnx_precision"] * 2
    assert logging.getLogger("onnxruntime").level == logging.NOTSET
