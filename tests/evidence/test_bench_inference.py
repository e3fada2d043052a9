"""A miniature of ``ept-studio bench latency`` so the benchmark keeps working (timings not asserted)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from support import make_tiny_vit

from ept_studio.core.methods import EptConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import preprocess
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_runtime import CPU_PROVIDER, OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata
from ept_studio.data.render import render_file
from ept_studio.evidence.bench_inference import (
    CONTENDERS,
    ONNX,
    InferenceBench,
    OnnxWorker,
    _latencies,
    _throughputs,
    format_inference_bench,
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
    assert "2 threads, medians of 3 rounds" in report
    assert "threads spinning (`predict --onnx`) | 80.0 | 70.0 | 90.0 |" in report
    assert "torch eager: **0.73** (target <= 0.8)" in report
    assert "80.0 70.0 90.0" in report
    assert "| ratio folder / model only | 0.95 (target >= 0.9) |" in report
