"""A miniature of ``ept-studio bench latency`` so the benchmark keeps working (timings not asserted)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from support import make_tiny_vit

from ept_studio.core.gpu import nvidia_gpu_count
from ept_studio.core.methods import EptConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import PrecisionRecord, preprocess
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_runtime import CPU_PROVIDER, OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata
from ept_studio.data.render import render_file
from ept_studio.evidence.bench_inference import (
    CONTENDERS,
    ONNX,
    ONNX_INT8,
    InferenceBench,
    OnnxWorker,
    _latencies,
    _throughputs,
    format_inference_bench,
    reduced_exports,
)

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[TunedModel, Path, Path, Path]:
    """The tiny model exported, its batch-1 pixels as ``.npy``, and a folder of two DICOM files."""
    root = tmp_path_factory.mktemp("bench")
    model = TunedModel(make_tiny_vit(0), EptConfig(length=4), 2).eval()
    metadata = PromptFileMetadata(
        method=model.method_config.to_dict(),
        backbone="tiny-test-vit",
        backbone_sha256="ab" * 32,
        input_size=32,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        label_mode="single",
        class_names=("a", "b"),
        rendering={"policy": "auto"},
    )
    info = model_info(model, metadata, "cd" * 32)
    images = [render_file(SAMPLES / "CT_small.dcm"), render_file(SAMPLES / "MR_small.dcm")]
    export_onnx(model, root / "tiny.onnx", info, images)
    np.save(root / "single.npy", preprocess([images[0]], info))
    folder = root / "images"
    folder.mkdir()
    for name in ("CT_small.dcm", "MR_small.dcm"):
        shutil.copyfile(SAMPLES / name, folder / name)
    return model, root / "tiny.onnx", root / "single.npy", folder


def test_worker_runs_onnx_runtime_without_torch_and_spins_there(
    exported: tuple[TunedModel, Path, Path, Path],
) -> None:
    model, onnx_path, pixels, folder = exported
    with OnnxWorker(onnx_path, pixels, threads=1) as worker:
        assert worker.session == {
            "provider": CPU_PROVIDER,
            "threads": 1,
            "spinning": True,
            "torch_imported": False,
        }
        seconds = worker.latency(3)
        assert len(seconds) == 3
        assert all(s > 0 for s in seconds)
        model_only, folder_rate = worker.throughput(folder, 2)
        assert model_only > 0
        assert folder_rate > 0
        in_process = OnnxRunner(onnx_path, device="cpu", threads=1, spinning=False)
        timings = _latencies(model, in_process, worker, np.load(pixels), 3, 0.0)
        assert set(timings) == set(CONTENDERS)
        assert all(len(values) == 3 for values in timings.values())
        assert _throughputs(worker, folder, 2, 1)[0] > 0  # three rounds at least
    with OnnxWorker(onnx_path, pixels, threads=1, spinning="off") as worker:
        assert worker.session["spinning"] is False


def test_the_int8_model_is_measured_in_a_worker_of_its_own(
    exported: tuple[TunedModel, Path, Path, Path],
) -> None:
    model, onnx_path, pixels, _ = exported
    check_pixels = np.repeat(np.load(pixels), 2, axis=0)
    reduced, fp16_skipped = reduced_exports(onnx_path, check_pixels)
    int8, device = reduced[ONNX_INT8]
    assert (int8.record.precision, int8.record.top1_agreement, device) == ("int8", 1.0, "cpu")
    assert int8.path.name == "tiny_int8.onnx"
    if nvidia_gpu_count() == 0:
        assert set(reduced) == {ONNX_INT8}
        assert fp16_skipped == ("not measured: fp16 is for CUDA GPUs, and here no NVIDIA GPU found")
    with (
        OnnxWorker(onnx_path, pixels, threads=1) as worker,
        OnnxWorker(int8.path, pixels, threads=1) as int8_worker,
    ):
        assert int8_worker.session["torch_imported"] is False
        in_process = OnnxRunner(onnx_path, device="cpu", threads=1, spinning=False)
        extra = {ONNX_INT8: int8_worker}
        timings = _latencies(model, in_process, worker, np.load(pixels), 2, 0.0, extra)
    assert set(timings) == {*CONTENDERS, ONNX_INT8}
    assert all(len(values) == 2 and min(values) > 0 for values in timings.values())


def test_report_shows_the_ratio_settings_and_every_round() -> None:
    rounds = {name: (0.1, 0.12, 0.11) for name in CONTENDERS}
    rounds[ONNX] = (0.08, 0.07, 0.09)
    bench = InferenceBench(
        provider=CPU_PROVIDER,
        threads=2,
        rounds=3,
        onnx_spinning=True,
        settle_s=0.1,
        onnx_latency_s=0.08,
        onnx_in_process_latency_s=0.11,
        torch_latency_s=0.11,
        torch_full_latency_s=0.11,
        round_s=rounds,
        folder_images=4,
        batch_size=2,
        model_only_ips=10.0,
        folder_ips=9.5,
        parity=type("Parity", (), {"logits_error": 1e-5, "attention_error": 5e-7})(),
    )
    report = format_inference_bench(bench)
    assert "int8" not in report
    assert "2 threads, medians of 3 rounds" in report
    assert "threads spinning (`predict --onnx`) | 80.0 | 70.0 | 90.0 |" in report
    assert "torch eager: **0.73** (target <= 0.8)" in report
    assert "80.0 70.0 90.0" in report
    assert "| ratio folder / model only | 0.95 (target >= 0.9) |" in report


def test_report_gives_the_int8_ratio_its_check_and_why_fp16_was_skipped() -> None:
    rounds = {name: (0.1, 0.12, 0.11) for name in CONTENDERS}
    rounds[ONNX_INT8] = (0.05, 0.04, 0.06)
    check = PrecisionRecord(
        precision="int8",
        method="dynamic quantization",
        images=2,
        top1_agreement=1.0,
        attention_correlation=0.98765,
        rollout_correlation=0.99391,
        min_agreement=0.99,
        min_correlation=0.95,
        provider=CPU_PROVIDER,
    )
    bench = InferenceBench(
        provider=CPU_PROVIDER,
        threads=2,
        rounds=3,
        onnx_spinning=True,
        settle_s=0.1,
        onnx_latency_s=0.08,
        onnx_in_process_latency_s=0.11,
        torch_latency_s=0.11,
        torch_full_latency_s=0.11,
        round_s=rounds,
        folder_images=4,
        batch_size=2,
        model_only_ips=10.0,
        folder_ips=9.5,
        parity=type("Parity", (), {"logits_error": 1e-5, "attention_error": 5e-7})(),
        int8_latency_s=0.05,
        fp16_skipped="not measured: fp16 is for CUDA GPUs, and here no NVIDIA GPU found",
        checks=(check,),
        sizes_mb={"fp32": 86.7, "int8": 23.2},
    )
    report = format_inference_bench(bench)
    assert (
        "`export --precision int8`), torch-free process, spinning | 50.0 | 40.0 | 60.0 |" in report
    )
    assert (
        "Ratio int8 / torch eager: **0.45** (target <= 0.5); int8 / fp32 ONNX Runtime: 0.62."
        in report
    )
    assert "fp16: not measured: fp16 is for CUDA GPUs, and here no NVIDIA GPU found." in report
    assert "top-1 agreement 100 %, attention-map correlation 0.9877, rollout 0.9939" in report
    assert "File sizes: fp32 86.7 MB, int8 23.2 MB." in report
    assert "(onnx, onnx-app, torch, torch-full, int8 as in the table;" in report
    assert "- int8: 50.0 40.0 60.0" in report
