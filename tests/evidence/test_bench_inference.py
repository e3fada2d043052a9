"""A miniature of ``ept-studio bench latency`` so the benchmark keeps working (timings not asserted)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import onnx
import pydicom
import pytest
from support import make_tiny_vit, tiny_backbone

from ept_studio.core.gpu import nvidia_gpu_count
from ept_studio.core.methods import EptConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import DETAIL_INPUT_NAME, INPUT_NAME, PrecisionRecord, preprocess
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_runtime import CPU_PROVIDER, OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata, backbone_fields, read_prompt_file
from ept_studio.data.render import render_file
from ept_studio.evidence.bench_inference import (
    CONTENDERS,
    DETAIL,
    ONNX,
    ONNX_INT8,
    PLAIN,
    InferenceBench,
    OnnxWorker,
    _latencies,
    _throughputs,
    add_bench_options,
    format_detail_bench,
    format_inference_bench,
    reduced_exports,
    run_detail_bench,
)
from ept_studio.evidence.onnx_bench_worker import save_inputs
from ept_studio.services.model import check_images

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
    assert "detail" not in report.lower()  # without --detail, the report as before
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


def test_detail_option_is_off_unless_asked() -> None:
    parser = argparse.ArgumentParser()
    add_bench_options(parser)
    assert parser.parse_args([]).detail is False
    assert parser.parse_args(["--detail", "--rounds", "3"]).detail is True


def _printed(pattern: str, text: str) -> tuple[float, ...]:
    found = re.search(pattern, text)
    assert found is not None, pattern
    return tuple(float(group) for group in found.groups())


def test_detail_run_times_both_exports_and_prints_the_ratio_of_its_figures(
    tmp_path: Path,
) -> None:
    """The fine-detail version of a tiny model (32 px, detail view at 64 px) saved, exported and
    timed against the plain export in the same rounds; the printed ratio is the printed figures'."""
    loaded = tiny_backbone()
    model = TunedModel(loaded.model, EptConfig(length=4), 2).eval()
    metadata = PromptFileMetadata(
        method=model.method_config.to_dict(),
        **backbone_fields(loaded),
        label_mode="single",
        class_names=("a", "b"),
    )
    files = [SAMPLES / "CT_small.dcm", SAMPLES / "MR_small.dcm"]
    info = model_info(model, metadata, "cd" * 32)
    images = check_images(files, info.rendering)
    plain = export_onnx(model, tmp_path / "plain.onnx", info, images).path
    pixels = save_inputs(tmp_path / "single", preprocess(images[:1], info))
    data = tmp_path / "images"
    data.mkdir()
    for path in files:
        shutil.copyfile(path, data / path.name)
    with OnnxWorker(plain, pixels, threads=1) as worker:
        detail = run_detail_bench(
            model,
            loaded,
            metadata,
            files,
            tmp_path / "detail",
            worker,
            data,
            rounds=2,
            batch_size=2,
            threads=1,
            settle_s=0.0,
        )
    # the prompt file carries the detail view, and its export takes both inputs
    _, saved = read_prompt_file(tmp_path / "detail" / "detail.safetensors")
    assert saved.detail_input_size == 64
    graph = onnx.load(str(tmp_path / "detail" / "detail.onnx"))
    assert [value.name for value in graph.graph.input] == [INPUT_NAME, DETAIL_INPUT_NAME]
    assert (detail.input_size, detail.detail_input_size, detail.folder_images) == (32, 64, 2)
    assert {name: len(values) for name, values in detail.round_s.items()} == {PLAIN: 2, DETAIL: 2}
    assert min(min(values) for values in detail.round_s.values()) > 0
    assert detail.plain_folder_ips > 0
    assert detail.detail_folder_ips > 0
    assert detail.parity.logits_error < 1e-3

    text = "\n".join(format_detail_bench(detail, CPU_PROVIDER, 1))
    assert "(CPUExecutionProvider, 1 threads, torch-free process, medians of 2 rounds)" in text
    (plain_ms,) = _printed(r"\| plain model \(32 px\) \| ([0-9.]+) \|", text)
    (detail_ms,) = _printed(
        r"\| with the fine-detail check \(32 px \+ 64 px\) \| ([0-9.]+) \|", text
    )
    (ratio,) = _printed(r"Ratio fine detail / plain: \*\*([0-9.]+)\*\*", text)
    assert (plain_ms, detail_ms) == (
        round(detail.plain_latency_s * 1000, 2),
        round(detail.detail_latency_s * 1000, 2),
    )
    assert ratio == round(detail.detail_latency_s / detail.plain_latency_s, 2)
    # the printed ratio is that of the printed figures, up to their printed rounding
    low = (detail_ms - 0.005) / (plain_ms + 0.005)
    high = (detail_ms + 0.005) / max(plain_ms - 0.005, 1e-9)
    assert low - 0.005 <= ratio <= high + 0.005
    plain_ips, detail_ips, folder_ratio = _printed(
        r"\| plain model \(32 px\) \| ([0-9.]+) \|\n.*\| ([0-9.]+) \|\n"
        r"\| ratio fine detail / plain, seconds per image \| ([0-9.]+) \|",
        text,
    )
    assert folder_ratio == round(detail.plain_folder_ips / detail.detail_folder_ips, 2)
    # ``bench latency --detail``: the section follows the plain report unchanged
    plain_rounds = {name: (0.1, 0.12, 0.11) for name in CONTENDERS}
    bench = InferenceBench(
        provider=CPU_PROVIDER,
        threads=1,
        rounds=3,
        onnx_spinning=True,
        settle_s=0.0,
        onnx_latency_s=0.1,
        onnx_in_process_latency_s=0.1,
        torch_latency_s=0.1,
        torch_full_latency_s=0.1,
        round_s=plain_rounds,
        folder_images=2,
        batch_size=2,
        model_only_ips=10.0,
        folder_ips=9.5,
        parity=detail.parity,
    )
    report = format_inference_bench(dataclasses.replace(bench, detail=detail))
    assert report == format_inference_bench(bench) + "\n\n" + text
    assert (plain_ips, detail_ips) == (
        round(detail.plain_folder_ips, 2),
        round(detail.detail_folder_ips, 2),
    )
