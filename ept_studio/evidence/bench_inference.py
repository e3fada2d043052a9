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
- batch-1 latency of the int8 copy of the export (dynamic quantization, checked against the fp32
  export as ``export --precision int8`` does) in a torch-free worker of its own on the CPU, and of
  the fp16 copy on CUDA where there is an NVIDIA GPU (else the report says why it was skipped); each
  as a ratio to torch eager measured in the same rounds (on a GPU machine torch still runs on the
  CPU: the fp16 ratio then compares the GPU with the CPU);
- folder throughput, in the worker (the torch-free path):
  :func:`~ept_studio.services.model.onnx_inference.predict_paths` over a folder of DICOM files (decode,
  render, hash, preprocess in the pool) vs the model alone on preprocessed batches;
- with ``detail=True`` (``bench latency --detail``), the cost of the fine-detail check
  (:mod:`ept_studio.core.detail`): the same tuned model given a detail view fitted on the check
  images at twice the backbone's size, saved in a prompt file, loaded and exported as the app does,
  then the fp32 export with and without it in two torch-free workers, batch-1 latency in alternating
  rounds and folder throughput in alternating passes. The app's "about N times as long" is this
  run's ratio, never an assumed one.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ept_studio.common.errors import OnnxModelError
from ept_studio.evidence.onnx_bench_worker import save_inputs
from ept_studio.services.model import check_images, reference_check_files

ONNX = "onnx"
ONNX_IN_PROCESS = "onnx_in_process"
TORCH = "torch"
TORCH_FULL = "torch_full"
ONNX_INT8 = "onnx_int8"
ONNX_FP16 = "onnx_fp16"
CONTENDERS = (ONNX, ONNX_IN_PROCESS, TORCH, TORCH_FULL)
"""Always measured; :data:`ONNX_INT8` and, with a GPU, :data:`ONNX_FP16` join them."""
INT8_TARGET = 0.5


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
    int8_latency_s: float = float("nan")
    fp16_latency_s: float | None = None
    fp16_skipped: str = ""
    checks: tuple[Any, ...] = ()
    sizes_mb: dict[str, float] = dataclasses.field(default_factory=dict)
    detail: DetailBench | None = None

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
    def int8_latency_ratio(self) -> float:
        """The int8 model (torch-free worker, CPU) over torch eager."""
        return self.int8_latency_s / self.torch_latency_s

    @property
    def fp16_latency_ratio(self) -> float | None:
        """The fp16 model (torch-free worker, CUDA) over torch eager; None when not measured."""
        if self.fp16_latency_s is None:
            return None
        return self.fp16_latency_s / self.torch_latency_s

    @property
    def throughput_ratio(self) -> float:
        return self.folder_ips / self.model_only_ips


PLAIN = "plain"
DETAIL = "detail"


@dataclasses.dataclass(frozen=True)
class DetailBench:
    """The plain fp32 export against the same model with its fine-detail check, measured in the
    same rounds: medians in seconds, throughputs in images per second, ``round_s`` every round's
    value (keys :data:`PLAIN` and :data:`DETAIL`)."""

    input_size: int
    detail_input_size: int
    rounds: int
    settle_s: float
    plain_latency_s: float
    detail_latency_s: float
    round_s: dict[str, tuple[float, ...]]
    folder_images: int
    batch_size: int
    plain_folder_ips: float
    detail_folder_ips: float
    parity: Any

    @property
    def latency_ratio(self) -> float:
        """Fine detail over plain, batch-1 seconds per image."""
        return self.detail_latency_s / self.plain_latency_s

    @property
    def folder_ratio(self) -> float:
        """Fine detail over plain, seconds per image over the whole folder (images/s inverted)."""
        return self.plain_folder_ips / self.detail_folder_ips


class OnnxWorker:
    """The torch-free ONNX Runtime process of the benchmark (:mod:`.onnx_bench_worker`)."""

    def __init__(
        self,
        model: Path,
        pixels: Path,
        *,
        threads: int,
        spinning: str = "auto",
        device: str = "cpu",
    ) -> None:
        command = [sys.executable, "-m", "ept_studio.evidence.onnx_bench_worker"]
        self._process = subprocess.Popen(
            [*command, str(model), str(pixels), str(threads), spinning, device],
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
    """The offline backbone with EPT-deep (L = 100) and seeded random prompts and head; its
    :class:`ModelInfo` (whose prompt-file metadata :func:`_bench_metadata` gives) and the backbone
    as loaded (not wrapped by the model)."""
    import torch

    from ept_studio.core.backbones import load_backbone
    from ept_studio.core.methods import EptConfig
    from ept_studio.core.model import TunedModel
    from ept_studio.core.onnx_export import model_info

    loaded = load_backbone()
    model = TunedModel(loaded.model, EptConfig(), 2).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return model, model_info(model, _bench_metadata(model, loaded), "0" * 64), loaded


def _bench_metadata(model: Any, loaded: Any) -> Any:
    """The prompt-file metadata of the bench model (two classes, single-label)."""
    from ept_studio.core.prompt_file import PromptFileMetadata, backbone_fields

    return PromptFileMetadata(
        method=model.method_config.to_dict(),
        **backbone_fields(loaded),
        label_mode="single",
        class_names=("class_a", "class_b"),
    )


def run_inference_bench(
    *,
    rounds: int = 20,
    threads: int = 2,
    folder_images: int = 32,
    batch_size: int = 8,
    spinning: str = "auto",
    settle_s: float = 0.1,
    detail: bool = False,
) -> InferenceBench:
    """Export, then measure (see the module docstring); ``spinning`` is the workers' setting;
    ``detail``: also measure the model with its fine-detail check against the plain one."""
    import torch

    from ept_studio.core.model_io import preprocess_inputs
    from ept_studio.core.onnx_export import export_onnx
    from ept_studio.services.model import open_onnx_model

    torch.set_num_threads(threads)
    model, info, loaded = _bench_model()
    files = reference_check_files()
    images = check_images(files, info.rendering)
    with tempfile.TemporaryDirectory(prefix="ept-bench-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        report = export_onnx(model, folder / "bench.onnx", info, images)
        reduced, fp16_skipped = reduced_exports(report.path, *preprocess_inputs(images, info))
        single = preprocess_inputs([images[0]], info)
        pixels = save_inputs(folder / "single", *single)
        data = _dicom_folder(folder / "images", files, folder_images)
        # Next to torch: the app's setting, threads not spinning.
        in_process = open_onnx_model(report.path, device="cpu", threads=threads, spinning=False)
        worker = stack.enter_context(
            OnnxWorker(report.path, pixels, threads=threads, spinning=spinning)
        )
        extra = {
            name: stack.enter_context(
                OnnxWorker(export.path, pixels, threads=threads, spinning=spinning, device=device)
            )
            for name, (export, device) in reduced.items()
        }
        timings = _latencies(
            model, in_process, worker, single[0], rounds, settle_s, extra, single_detail=single[1]
        )
        time.sleep(settle_s)
        model_only, folder_rate = _throughputs(worker, data, batch_size, rounds)
        detail_bench = None
        if detail:
            detail_bench = run_detail_bench(
                model,
                loaded,
                _bench_metadata(model, loaded),
                files,
                folder / "detail",
                worker,
                data,
                rounds=rounds,
                batch_size=batch_size,
                threads=threads,
                spinning=spinning,
                settle_s=settle_s,
            )
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
        int8_latency_s=medians[ONNX_INT8],
        fp16_latency_s=medians.get(ONNX_FP16),
        fp16_skipped=fp16_skipped,
        checks=tuple(export.record for export, _ in reduced.values()),
        sizes_mb={
            "fp32": report.size_bytes / 1e6,
            **{export.record.precision: export.size_bytes / 1e6 for export, _ in reduced.values()},
        },
        detail=detail_bench,
    )


def run_detail_bench(
    model: Any,
    loaded: Any,
    metadata: Any,
    files: Sequence[Path],
    folder: Path,
    plain_worker: OnnxWorker,
    data: Path,
    *,
    rounds: int,
    batch_size: int,
    threads: int,
    spinning: str = "auto",
    settle_s: float = 0.1,
) -> DetailBench:
    """The fine-detail version of ``model`` built as the app builds it, then timed against
    ``plain_worker`` (the torch-free worker of ``model``'s own fp32 export).

    ``loaded``: the backbone as loaded (``model`` works on a copy); ``metadata``: ``model``'s
    prompt-file metadata; ``files``: the check images, which are also the detail view's training
    images (one class each in turn: the view's head does not change its cost); ``folder``: a new
    folder for the prompt file and the export; ``data``: the folder of DICOM files both models
    score for the throughput.
    """
    from ept_studio.core.model_io import preprocess_inputs
    from ept_studio.core.onnx_export import model_info
    from ept_studio.services.model import export_prompt_to_onnx

    folder.mkdir()
    prompt = folder / "detail.safetensors"
    detailed = _save_detail_prompt(model, loaded, metadata, files, prompt)
    # as ``ept-studio export`` does: the file loaded on the backbone, its detail view on the same
    # weights built for its size, exported with the parity check
    exported = export_prompt_to_onnx(
        prompt, folder / "detail.onnx", backbone=loaded, check_files=files
    )
    info = model_info(model, detailed, "")
    images = check_images([files[0]], info.rendering)
    pixels = save_inputs(folder / "single_detail", *preprocess_inputs(images, info))
    with OnnxWorker(exported.onnx_path, pixels, threads=threads, spinning=spinning) as worker:
        workers = {PLAIN: plain_worker, DETAIL: worker}
        timings = _alternating(workers, _first_latency, rounds, settle_s)
        passes = max(3, rounds // 4)  # as the plain throughput; the worker warms up on the folder
        rates = _alternating(
            workers, lambda w: w.throughput(data, batch_size)[1], passes, settle_s, warm_up=False
        )
    return DetailBench(
        input_size=int(info.input_size),
        detail_input_size=int(detailed.detail_input_size),
        rounds=rounds,
        settle_s=settle_s,
        plain_latency_s=statistics.median(timings[PLAIN]),
        detail_latency_s=statistics.median(timings[DETAIL]),
        round_s={name: tuple(values) for name, values in timings.items()},
        folder_images=len(list(data.iterdir())),
        batch_size=batch_size,
        plain_folder_ips=statistics.median(rates[PLAIN]),
        detail_folder_ips=statistics.median(rates[DETAIL]),
        parity=exported.parity,
    )


def _save_detail_prompt(
    model: Any, loaded: Any, metadata: Any, files: Sequence[Path], path: Path
) -> Any:
    """Save at ``path`` ``model``'s prompt file with a detail view fitted on ``files`` at twice
    ``loaded``'s size (:func:`~ept_studio.core.detail.fit_detail_view`, the training recipe's
    prototype scale); return the file's metadata."""
    import torch

    from ept_studio.core.backbones import backbone_at_size
    from ept_studio.core.detail import DETAIL_FACTOR, detail_tensors, fit_detail_view
    from ept_studio.core.prompt_file import save_prompt_file
    from ept_studio.core.training.recipe import TrainRecipe

    resized = backbone_at_size(loaded, DETAIL_FACTOR * int(loaded.spec.input_size))
    images = check_images(files, dict(metadata.rendering))
    classes = len(metadata.class_names)
    view = fit_detail_view(
        resized,
        [torch.from_numpy(image).permute(2, 0, 1).contiguous() for image in images],
        [index % classes for index in range(len(images))],
        classes,
        TrainRecipe().prototype_scale,
    )
    detailed = dataclasses.replace(metadata, detail_input_size=int(resized.spec.input_size))
    save_prompt_file(path, {**model.trainable_state(), **detail_tensors(view)}, detailed)
    return detailed


def _alternating(
    workers: Mapping[str, OnnxWorker],
    measure: Callable[[OnnxWorker], float],
    rounds: int,
    settle_s: float,
    *,
    warm_up: bool = True,
) -> dict[str, list[float]]:
    """``measure`` of each worker per round, after one warm-up run each (``warm_up``); the order
    alternates from round to round and each run starts after a ``settle_s`` pause, as in
    :func:`_latencies`."""
    for worker in workers.values() if warm_up else ():
        measure(worker)
    names = tuple(workers)
    values: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(settle_s)
            values[name].append(measure(workers[name]))
    return values


def reduced_exports(
    reference: Path, pixels: np.ndarray, detail_pixels: np.ndarray | None = None
) -> tuple[dict[str, tuple[Any, str]], str]:
    """The int8 copy of ``reference`` (run on the CPU) and, where CUDA runs, the fp16 copy (run on
    CUDA), each checked as ``export --precision`` checks it (a model with a detail view on its
    ``detail_pixels`` too); and why fp16 was skipped ("" if not)."""
    from ept_studio.core.onnx_precision import export_precision
    from ept_studio.core.onnx_runtime import CUDA_PROVIDER, choose_providers

    int8 = export_precision(
        reference, _beside(reference, "int8"), "int8", pixels, detail_pixels=detail_pixels
    )
    exports = {ONNX_INT8: (int8, "cpu")}
    providers, notes = choose_providers("auto")
    if providers[0] != CUDA_PROVIDER:
        reason = notes[0].split(";")[0] if notes else "CUDA is not available"
        return exports, f"not measured: fp16 is for CUDA GPUs, and here {reason}"
    fp16 = export_precision(
        reference, _beside(reference, "fp16"), "fp16", pixels, detail_pixels=detail_pixels
    )
    if fp16.record.provider != CUDA_PROVIDER:
        return exports, "not measured: the CUDA provider could not start"
    exports[ONNX_FP16] = (fp16, "cuda")
    return exports, ""


def _beside(path: Path, precision: str) -> Path:
    return path.with_name(f"{path.stem}_{precision}{path.suffix}")


def _dicom_folder(folder: Path, files: Sequence[Path], count: int) -> Path:
    """``count`` copies of the DICOM ``files``, in turn, in a new ``folder``."""
    folder.mkdir()
    for index in range(count):
        shutil.copyfile(files[index % len(files)], folder / f"image_{index:04d}.dcm")
    return folder


def _latencies(
    model: Any,
    in_process: Any,
    worker: OnnxWorker,
    single: np.ndarray,
    rounds: int,
    settle_s: float,
    extra: Mapping[str, OnnxWorker] | None = None,
    *,
    single_detail: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """Batch-1 seconds of each contender per round; the order rotates from round to round.

    ``single``: one image's pixels; ``single_detail`` its detail pixels for a model with a detail
    view (the bench's own model has none). ``extra``: more torch-free workers (the int8 and fp16
    models), measured like ``worker``.
    """
    import torch

    from ept_studio.core.torch_runner import TorchRunner

    tensor = torch.from_numpy(single)
    torch_runner = TorchRunner(model, in_process.info)

    def eager() -> object:
        with torch.inference_mode():
            return model(tensor)

    steps: dict[str, Callable[[], float]] = {
        ONNX: lambda: worker.latency(1)[0],
        ONNX_IN_PROCESS: lambda: _seconds_per_call(lambda: in_process.run(single, single_detail)),
        TORCH: lambda: _seconds_per_call(eager),
        TORCH_FULL: lambda: _seconds_per_call(lambda: torch_runner.run(single, single_detail)),
    }
    for name, other in (extra or {}).items():
        steps[name] = functools.partial(_first_latency, other)
    for step in steps.values():  # warm-up
        step()
    names = tuple(steps)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(settle_s)
            timings[name].append(steps[name]())
    return timings


def _first_latency(worker: OnnxWorker) -> float:
    return worker.latency(1)[0]


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
    rows = _latency_rows(bench)
    lines = [
        f"### Inference ({bench.provider}, {bench.threads} threads, medians of {bench.rounds} "
        "rounds)",
        "",
        "| batch-1 latency | median ms | min | max |",
        "|---|---|---|---|",
    ]
    for name, label, _, median in rows:
        values = bench.round_s[name]
        lines.append(
            f"| {label} | {median * ms:.1f} | {min(values) * ms:.1f} | {max(values) * ms:.1f} |"
        )
    lines += [
        "",
        f"Ratio ONNX Runtime (torch-free) / torch eager: **{bench.latency_ratio:.2f}** "
        f"(target <= 0.8); / torch's four outputs: {bench.full_latency_ratio:.2f}; "
        f"ONNX Runtime next to torch / torch eager: {bench.in_process_latency_ratio:.2f}.",
        *_precision_lines(bench),
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
        f"Per round, ms ({', '.join(short for _, _, short, _ in rows)} as in the table; order "
        f"rotating, {bench.settle_s:.2f} s pause before each run):",
        "",
    ]
    for name, _, short, _ in rows:
        per_round = " ".join(f"{v * ms:.1f}" for v in bench.round_s[name])
        lines.append(f"- {short}: {per_round}")
    if bench.detail is not None:
        lines += ["", *format_detail_bench(bench.detail, bench.provider, bench.threads)]
    return "\n".join(lines)


def format_detail_bench(detail: DetailBench, provider: str, threads: int) -> list[str]:
    """The fine-detail check's section of the report: both models' rows and the ratio of the two
    medians of this run (milliseconds to two decimals, so the ratio can be checked against them)."""
    ms = 1000.0
    size, twice = detail.input_size, detail.detail_input_size
    labels = {
        PLAIN: f"plain model ({size} px)",
        DETAIL: f"with the fine-detail check ({size} px + {twice} px)",
    }
    medians = {PLAIN: detail.plain_latency_s, DETAIL: detail.detail_latency_s}
    lines = [
        f"### Fine-detail check: ONNX Runtime fp32 ({provider}, {threads} threads, torch-free "
        f"process, medians of {detail.rounds} rounds)",
        "",
        "| batch-1 latency per image | median ms | min | max |",
        "|---|---|---|---|",
    ]
    for name, label in labels.items():
        values = detail.round_s[name]
        lines.append(
            f"| {label} | {medians[name] * ms:.2f} | {min(values) * ms:.2f} | "
            f"{max(values) * ms:.2f} |"
        )
    lines += [
        "",
        f"Ratio fine detail / plain: **{detail.latency_ratio:.2f}** (batch-1 latency, both "
        "measured in this run, order alternating).",
        "",
        f"| folder throughput, batch {detail.batch_size}, {detail.folder_images} DICOM files | "
        "images/s |",
        "|---|---|",
        f"| {labels[PLAIN]} | {detail.plain_folder_ips:.2f} |",
        f"| {labels[DETAIL]} | {detail.detail_folder_ips:.2f} |",
        f"| ratio fine detail / plain, seconds per image | {detail.folder_ratio:.2f} |",
        "",
        f"Parity of the fine-detail export: logits {detail.parity.logits_error:.2g}, attention "
        f"{detail.parity.attention_error:.2g} (max abs. difference to torch).",
        "",
        f"Per round, ms ({PLAIN}, {DETAIL}; {detail.settle_s:.2f} s pause before each run):",
        "",
    ]
    for name in labels:
        lines.append(f"- {name}: " + " ".join(f"{v * ms:.2f}" for v in detail.round_s[name]))
    return lines


def _latency_rows(bench: InferenceBench) -> list[tuple[str, str, str, float]]:
    """(contender, label, short name, median seconds) of every contender measured."""
    spin = "spinning" if bench.onnx_spinning else "not spinning"
    rows = [
        (ONNX, f"ONNX Runtime, torch-free process, threads {spin} (`predict --onnx`)", "onnx"),
        (ONNX_IN_PROCESS, "ONNX Runtime next to torch, threads not spinning (the app)", "onnx-app"),
        (TORCH, "torch eager (logits, EPT fast path)", "torch"),
        (TORCH_FULL, "torch eager (logits + attention + rollout)", "torch-full"),
    ]
    medians = [
        bench.onnx_latency_s,
        bench.onnx_in_process_latency_s,
        bench.torch_latency_s,
        bench.torch_full_latency_s,
    ]
    table = [(*row, median) for row, median in zip(rows, medians, strict=True)]
    if ONNX_INT8 in bench.round_s:
        label = f"ONNX Runtime int8 (`export --precision int8`), torch-free process, {spin}"
        table.append((ONNX_INT8, label, "int8", bench.int8_latency_s))
    if ONNX_FP16 in bench.round_s and bench.fp16_latency_s is not None:
        label = "ONNX Runtime fp16 on CUDA (`export --precision fp16`), torch-free process"
        table.append((ONNX_FP16, label, "fp16", bench.fp16_latency_s))
    return table


def _precision_lines(bench: InferenceBench) -> list[str]:
    """The int8 and fp16 ratios, their checks against fp32 and the file sizes."""
    if ONNX_INT8 not in bench.round_s:
        return []
    lines = [
        "",
        f"Ratio int8 / torch eager: **{bench.int8_latency_ratio:.2f}** (target <= "
        f"{INT8_TARGET:g}); int8 / fp32 ONNX Runtime: "
        f"{bench.int8_latency_s / bench.onnx_latency_s:.2f}.",
    ]
    ratio = bench.fp16_latency_ratio
    if ratio is None:
        lines.append(f"fp16: {bench.fp16_skipped}.")
    else:
        lines.append(f"Ratio fp16 (CUDA) / torch eager (CPU): **{ratio:.2f}**.")
    for check in bench.checks:
        lines.append(
            f"{check.precision} against fp32 on {check.images} images ({check.provider}): top-1 "
            f"agreement {check.top1_agreement * 100:.0f} %, attention-map correlation "
            f"{check.attention_correlation:.4f}, rollout {check.rollout_correlation:.4f} (lowest "
            "image)."
        )
    sizes = ", ".join(f"{name} {size:.1f} MB" for name, size in bench.sizes_mb.items())
    if sizes:
        lines.append(f"File sizes: {sizes}.")
    return lines


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
    parser.add_argument(
        "--detail",
        action="store_true",
        help="also time the same model with the fine-detail check (twice the input size) against "
        "it: ONNX Runtime fp32 latency and folder throughput, and their ratio",
    )


def bench_from_args(args: argparse.Namespace) -> InferenceBench:
    return run_inference_bench(
        rounds=args.rounds,
        threads=args.threads,
        folder_images=args.images,
        batch_size=args.batch_size,
        spinning=args.spinning,
        settle_s=args.settle,
        detail=args.detail,
    )


if __name__ == "__main__":
    raise SystemExit(main())
