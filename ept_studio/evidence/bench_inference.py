"""Inference speed: ONNX Runtime vs torch eager on the same tuned model, and folder throughput.

``python -m ept_studio.evidence.bench_inference`` (or ``ept-studio bench latency``) builds the
offline default backbone with EPT (L = 100, every block, seeded random prompts), exports it with its
parity check, then measures in one run, round by round (the order rotating each round, so that
machine load hits every contender alike), each contender alone:

- batch-1 latency of ONNX Runtime (CPU, all four outputs) as ``predict --onnx`` runs it: in a worker
  process that never imports torch (:mod:`~ept_studio.evidence.onnx_bench_worker`), so its intra-op
  threads spin (the torch-free default); of ONNX Runtime in this process next to torch, threads not
  spinning (the app's setting); of the torch model's eager forward (logits only, EPT's fast path) and
  of torch computing the same four outputs. The headline ratio is the worker's median over torch
  eager's. While one contender runs the others wait (the worker blocks on its pipe, its threads
  asleep), and each starts after a pause (``settle_s``) that lets threads spinning after the last
  run park, so no contender is measured against another's threads;
- folder throughput, in the worker (the torch-free path):
  :func:`~ept_studio.services.model.onnx_inference.predict_paths` over a folder of DICOM files (decode,
  render, hash, preprocess in the pool) vs the model alone on preprocessed batches.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ept_studio.common.errors import OnnxModelError
from ept_studio.services.model import check_images, reference_check_files

ONNX = "onnx"
ONNX_IN_PROCESS = "onnx_in_process"
TORCH = "torch"
TORCH_FULL = "torch_full"
CONTENDERS = (ONNX, ONNX_IN_PROCESS, TORCH, TORCH_FULL)


@dataclasses.dataclass(frozen=True)
class InferenceBench:
    """Medians in seconds; throughputs in images per second; ``round_s`` every round's value."""

    provider: str
    threads: int
    rounds: int
    onnx_spinning: bool
    settle_s: float
    onnx_latency_s: float
    onnx_in_process_latency_s: float
    torch_latency_s: float
    torch_full_latency_s: float
    round_s: dict[str, tuple[float, ...]]
    folder_images: int
    batch_size: int
    model_only_ips: float
    folder_ips: float
    parity: Any

    @property
    def latency_ratio(self) -> float:
        """ONNX Runtime (torch-free, as ``predict --onnx`` runs it) over torch eager."""
        return self.onnx_latency_s / self.torch_latency_s

    @property
    def full_latency_ratio(self) -> float:
        """The same, against torch computing the same four outputs."""
        return self.onnx_latency_s / self.torch_full_latency_s

    @property
    def in_process_latency_ratio(self) -> float:
        """ONNX Runtime next to torch in one process (threads not spinning) over torch eager."""
        return self.onnx_in_process_latency_s / self.torch_latency_s

    @property
    def throughput_ratio(self) -> float:
        return self.folder_ips / self.model_only_ips


class OnnxWorker:
    """The torch-free ONNX Runtime process of the benchmark (:mod:`.onnx_bench_worker`)."""

    def __init__(self, model: Path, pixels: Path, *, threads: int, spinning: str = "auto") -> None:
        command = [sys.executable, "-m", "ept_studio.evidence.onnx_bench_worker"]
        self._process = subprocess.Popen(
            [*command, str(model), str(pixels), str(threads), spinning],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.session = self._answer()
        if self.session.get("torch_imported", True):
            self.close()
            raise OnnxModelError("the ONNX Runtime benchmark worker imported torch")

    def _answer(self) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if not line:
            code = self._process.wait(timeout=30)
            raise OnnxModelError(
                f"the ONNX Runtime benchmark worker stopped (exit status {code}; its error, if "
                "any, is above)"
            )
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise OnnxModelError(f"the ONNX Runtime benchmark worker: {answer['error']}")
        return answer

    def request(self, op: str, **fields: object) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self._process.stdin.flush()
        return self._answer()

    def latency(self, calls: int = 1) -> list[float]:
        return [float(v) for v in self.request("latency", calls=calls)["seconds"]]

    def throughput(self, folder: Path, batch_size: int) -> tuple[float, float]:
        answer = self.request("throughput", folder=str(folder), batch_size=batch_size)
        return float(answer["model_only_ips"]), float(answer["folder_ips"])

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            try:
                self._process.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self._process.stdin.close()
                self._process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> OnnxWorker:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


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
    *,
    rounds: int = 20,
    threads: int = 2,
    folder_images: int = 32,
    batch_size: int = 8,
    spinning: str = "auto",
    settle_s: float = 0.1,
) -> InferenceBench:
    """Export, then measure (see the module docstring); ``spinning`` is the worker's setting."""
    import torch

    from ept_studio.core.model_io import preprocess
    from ept_studio.core.onnx_export import export_onnx
    from ept_studio.services.model import open_onnx_model

    torch.set_num_threads(threads)
    model, info, _ = _bench_model()
    files = reference_check_files()
    images = check_images(files, info.rendering)
    with tempfile.TemporaryDirectory(prefix="ept-bench-") as tmp:
        folder = Path(tmp)
        report = export_onnx(model, folder / "bench.onnx", info, images)
        pixels = folder / "single.npy"
        np.save(pixels, preprocess([images[0]], info))
        data = folder / "images"
        data.mkdir()
        for index in range(folder_images):
            shutil.copyfile(files[index % len(files)], data / f"image_{index:04d}.dcm")
        # Next to torch: the app's setting, threads not spinning.
        in_process = open_onnx_model(report.path, device="cpu", threads=threads, spinning=False)
        with OnnxWorker(report.path, pixels, threads=threads, spinning=spinning) as worker:
            timings = _latencies(model, in_process, worker, np.load(pixels), rounds, settle_s)
            time.sleep(settle_s)
            model_only, folder_rate = _throughputs(worker, data, batch_size, rounds)
    medians = {name: statistics.median(values) for name, values in timings.items()}
    return InferenceBench(
        provider=str(worker.session["provider"]),
        threads=int(worker.session["threads"]),
        rounds=rounds,
        onnx_spinning=bool(worker.session["spinning"]),
        settle_s=settle_s,
        onnx_latency_s=medians[ONNX],
        onnx_in_process_latency_s=medians[ONNX_IN_PROCESS],
        torch_latency_s=medians[TORCH],
        torch_full_latency_s=medians[TORCH_FULL],
        round_s={name: tuple(values) for name, values in timings.items()},
        folder_images=folder_images,
        batch_size=batch_size,
        model_only_ips=model_only,
        folder_ips=folder_rate,
        parity=report.parity,
    )


def _latencies(
    model: Any,
    in_process: Any,
    worker: OnnxWorker,
    single: np.ndarray,
    rounds: int,
    settle_s: float,
) -> dict[str, list[float]]:
    """Batch-1 seconds of each contender per round; the order rotates from round to round."""
    import torch

    from ept_studio.core.torch_runner import TorchRunner

    tensor = torch.from_numpy(single)
    torch_runner = TorchRunner(model, in_process.info)

    def eager() -> object:
        with torch.inference_mode():
            return model(tensor)

    steps: dict[str, Callable[[], float]] = {
        ONNX: lambda: worker.latency(1)[0],
        ONNX_IN_PROCESS: lambda: _seconds_per_call(lambda: in_process.run(single)),
        TORCH: lambda: _seconds_per_call(eager),
        TORCH_FULL: lambda: _seconds_per_call(lambda: torch_runner.run(single)),
    }
    for step in steps.values():  # warm-up
        step()
    timings: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for index in range(rounds):
        shift = index % len(CONTENDERS)
        for name in CONTENDERS[shift:] + CONTENDERS[:shift]:
            time.sleep(settle_s)
            timings[name].append(steps[name]())
    return timings


def _throughputs(
    worker: OnnxWorker, folder: Path, batch_size: int, rounds: int
) -> tuple[float, float]:
    """Median images per second: the model alone on preprocessed batches, and the whole folder."""
    model_only: list[float] = []
    whole: list[float] = []
    for _ in range(max(3, rounds // 4)):
        alone, with_files = worker.throughput(folder, batch_size)
        model_only.append(alone)
        whole.append(with_files)
    return statistics.median(model_only), statistics.median(whole)


def format_inference_bench(bench: InferenceBench) -> str:
    """A markdown report for the README, with every round's value."""
    ms = 1000.0
    spin = "spinning" if bench.onnx_spinning else "not spinning"
    rows = [
        (ONNX, f"ONNX Runtime, torch-free process, threads {spin} (`predict --onnx`)", "onnx"),
        (ONNX_IN_PROCESS, "ONNX Runtime next to torch, threads not spinning (the app)", "onnx-app"),
        (TORCH, "torch eager (logits, EPT fast path)", "torch"),
        (TORCH_FULL, "torch eager (logits + attention + rollout)", "torch-full"),
    ]
    medians = {
        ONNX: bench.onnx_latency_s,
        ONNX_IN_PROCESS: bench.onnx_in_process_latency_s,
        TORCH: bench.torch_latency_s,
        TORCH_FULL: bench.torch_full_latency_s,
    }
    lines = [
        f"### Inference ({bench.provider}, {bench.threads} threads, medians of {bench.rounds} "
        "rounds)",
        "",
        "| batch-1 latency | median ms | min | max |",
        "|---|---|---|---|",
    ]
    for name, label, _ in rows:
        values = bench.round_s[name]
        lines.append(
            f"| {label} | {medians[name] * ms:.1f} | {min(values) * ms:.1f} | "
            f"{max(values) * ms:.1f} |"
        )
    lines += [
        "",
        f"Ratio ONNX Runtime (torch-free) / torch eager: **{bench.latency_ratio:.2f}** "
        f"(target <= 0.8); / torch's four outputs: {bench.full_latency_ratio:.2f}; "
        f"ONNX Runtime next to torch / torch eager: {bench.in_process_latency_ratio:.2f}.",
        "",
        f"| throughput, batch {bench.batch_size}, {bench.folder_images} DICOM files, "
        "torch-free process | images/s |",
        "|---|---|",
        f"| model only (preprocessed batches) | {bench.model_only_ips:.2f} |",
        f"| folder: decode + render + hash + model | {bench.folder_ips:.2f} |",
        f"| ratio folder / model only | {bench.throughput_ratio:.2f} (target >= 0.9) |",
        "",
        f"Parity of the export: logits {bench.parity.logits_error:.2g}, "
        f"attention {bench.parity.attention_error:.2g} (max abs. difference to torch).",
        "",
        f"Per round, ms (onnx, onnx-app, torch, torch-full as in the table; order rotating, "
        f"{bench.settle_s:.2f} s pause before each run):",
        "",
    ]
    for name, _, short in rows:
        per_round = " ".join(f"{v * ms:.1f}" for v in bench.round_s[name])
        lines.append(f"- {short}: {per_round}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_bench_options(parser)
    args = parser.parse_args(argv)
    sys.stdout.write(format_inference_bench(bench_from_args(args)) + "\n")
    return 0


def add_bench_options(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (this module's ``main`` and ``ept-studio bench latency``)."""
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=32, help="DICOM files in the folder test")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--spinning",
        choices=("auto", "on", "off"),
        default="auto",
        help="ONNX Runtime's intra-op spinning in the torch-free process (auto: on there)",
    )
    parser.add_argument(
        "--settle", type=float, default=0.1, help="seconds of pause before each measured run"
    )


def bench_from_args(args: argparse.Namespace) -> InferenceBench:
    return run_inference_bench(
        rounds=args.rounds,
        threads=args.threads,
        folder_images=args.images,
        batch_size=args.batch_size,
        spinning=args.spinning,
        settle_s=args.settle,
    )


if __name__ == "__main__":
    raise SystemExit(main())
