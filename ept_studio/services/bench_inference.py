"""Inference speed: ONNX Runtime vs torch eager on the same tuned model, and folder throughput.

``python -m ept_studio.services.bench_inference`` (or ``ept-studio bench latency``) builds the
offline default backbone with EPT (L = 100, every block, seeded random prompts), exports it with its
parity check, then measures in one process, interleaved round by round so that machine load hits
both alike:

- batch-1 latency: ONNX Runtime (CPU, or CUDA when there is a GPU; all four outputs) vs the torch
  model's eager forward (logits only, EPT's fast path) and vs torch computing the same four outputs;
- folder throughput: :func:`~ept_studio.services.onnx_inference.predict_paths` over a folder of DICOM
  files (decode, render, hash, preprocess in the pool) vs the model alone on preprocessed batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ept_studio.services.export import check_images, reference_check_files


@dataclasses.dataclass(frozen=True)
class InferenceBench:
    """Medians in seconds; throughputs in images per second."""

    provider: str
    threads: int
    rounds: int
    onnx_latency_s: float
    torch_latency_s: float
    torch_full_latency_s: float
    folder_images: int
    batch_size: int
    model_only_ips: float
    folder_ips: float
    parity: Any

    @property
    def latency_ratio(self) -> float:
        return self.onnx_latency_s / self.torch_latency_s

    @property
    def throughput_ratio(self) -> float:
        return self.folder_ips / self.model_only_ips


def _seconds_per_call(function: Callable[[], object], repeats: int = 1) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats


def _bench_model(seed: int = 0) -> tuple[Any, Any, Any]:
    """The offline backbone with EPT-deep (L = 100) and seeded random prompts and head."""
    import torch

    from ept_studio.core.backbones import load_backbone
    from ept_studio.core.methods import EptConfig
    from ept_studio.core.model import TunedModel
    from ept_studio.core.onnx_export import model_info
    from ept_studio.core.prompt_file import PromptFileMetadata, backbone_fields

    loaded = load_backbone()
    model = TunedModel(loaded.model, EptConfig(), 2).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    metadata = PromptFileMetadata(
        method=model.method_config.to_dict(),
        **backbone_fields(loaded),
        label_mode="single",
        class_names=("class_a", "class_b"),
    )
    return model, model_info(model, metadata, "0" * 64), loaded


def run_inference_bench(
    *, rounds: int = 10, threads: int = 2, folder_images: int = 32, batch_size: int = 8
) -> InferenceBench:
    """Export, then measure (see the module docstring)."""
    import torch

    from ept_studio.core.onnx_export import export_onnx
    from ept_studio.services.onnx_inference import open_onnx_model

    torch.set_num_threads(threads)
    model, info, _ = _bench_model()
    files = reference_check_files()
    images = check_images(files, info.rendering)
    with tempfile.TemporaryDirectory(prefix="ept-bench-") as tmp:
        folder = Path(tmp)
        report = export_onnx(model, folder / "bench.onnx", info, images)
        runner = open_onnx_model(report.path, threads=threads)
        latency = _latencies(model, runner, images[0], rounds)
        data = folder / "images"
        data.mkdir()
        for index in range(folder_images):
            shutil.copyfile(files[index % len(files)], data / f"image_{index:04d}.dcm")
        model_only, folder_rate = _throughputs(runner, data, images[0], batch_size, rounds)
    return InferenceBench(
        provider=runner.provider,
        threads=threads,
        rounds=rounds,
        onnx_latency_s=latency["onnx"],
        torch_latency_s=latency["torch"],
        torch_full_latency_s=latency["torch_full"],
        folder_images=folder_images,
        batch_size=batch_size,
        model_only_ips=model_only,
        folder_ips=folder_rate,
        parity=report.parity,
    )


def _latencies(model: Any, runner: Any, image: np.ndarray, rounds: int) -> dict[str, float]:
    """Median batch-1 seconds of each contender, measured round-robin."""
    import torch

    from ept_studio.core.model_io import preprocess
    from ept_studio.core.torch_runner import TorchRunner

    single = preprocess([image], runner.info)
    tensor = torch.from_numpy(single)
    torch_runner = TorchRunner(model, runner.info)

    def eager() -> object:
        with torch.inference_mode():
            return model(tensor)

    steps: dict[str, Callable[[], object]] = {
        "onnx": lambda: runner.run(single),
        "torch": eager,
        "torch_full": lambda: torch_runner.run(single),
    }
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        step()
    for _ in range(rounds):
        for name, step in steps.items():
            timings[name].append(_seconds_per_call(step))
    return {name: statistics.median(values) for name, values in timings.items()}


def _throughputs(
    runner: Any, folder: Path, image: np.ndarray, batch_size: int, rounds: int
) -> tuple[float, float]:
    """Median images per second: the model alone on preprocessed batches, and the whole folder."""
    from ept_studio.core.model_io import preprocess
    from ept_studio.services.onnx_inference import predict_paths

    files = len(list(folder.iterdir()))
    batch = np.repeat(preprocess([image], runner.info), batch_size, axis=0)
    predict_paths(runner, [folder], batch_size=batch_size)  # warm-up: imports, file cache
    model_only: list[float] = []
    whole: list[float] = []
    for _ in range(max(1, rounds // 3)):
        calls = max(1, files // batch_size)
        model_only.append(batch_size / _seconds_per_call(lambda: runner.run(batch), calls))
        finished = predict_paths(runner, [folder], batch_size=batch_size)
        whole.append(len(finished.predictions) / finished.seconds)
    return statistics.median(model_only), statistics.median(whole)


def format_inference_bench(bench: InferenceBench) -> str:
    """A markdown report for the README."""
    ms = 1000.0
    return "\n".join(
        [
            f"### Inference ({bench.provider}, {bench.threads} threads, medians of {bench.rounds})",
            "",
            "| batch-1 latency | ms |",
            "|---|---|",
            f"| ONNX Runtime (logits + attention + rollout) | {bench.onnx_latency_s * ms:.1f} |",
            f"| torch eager (logits, EPT fast path) | {bench.torch_latency_s * ms:.1f} |",
            f"| torch eager (logits + attention + rollout) | {bench.torch_full_latency_s * ms:.1f} |",
            f"| ratio ONNX / torch eager | {bench.latency_ratio:.2f} (target <= 0.8) |",
            "",
            f"| throughput, batch {bench.batch_size}, {bench.folder_images} DICOM files | images/s |",
            "|---|---|",
            f"| model only (preprocessed batches) | {bench.model_only_ips:.2f} |",
            f"| folder: decode + render + hash + model | {bench.folder_ips:.2f} |",
            f"| ratio folder / model only | {bench.throughput_ratio:.2f} (target >= 0.9) |",
            "",
            f"Parity of the export: logits {bench.parity.logits_error:.2g}, "
            f"attention {bench.parity.attention_error:.2g} (max abs. difference to torch).",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=32, help="DICOM files in the folder test")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args(argv)
    bench = run_inference_bench(
        rounds=args.rounds,
        threads=args.threads,
        folder_images=args.images,
        batch_size=args.batch_size,
    )
    sys.stdout.write(format_inference_bench(bench) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
