"""The GPU check's precision steps: int8 / fp16 ONNX exports, ``bench latency``, ``bench tune-time``.

Each step returns a markdown section for ``report.md`` (the check writes no other files: ``$OUT``
brings back eight) and runs on the half copy's widened backbone, which stands in for the offline
one the device machine does not hold:

- **exports**: a quick EPT model (the paper preset, 2 epochs, 4 images of each of 2 offline classes)
  exported as fp32, int8 and fp16 ONNX through the app's own export, each reduced model checked
  against the fp32 one as ``export --precision`` checks it (a model short of its thresholds is a
  result too: its message is recorded);
- **latency**: ``bench latency`` (fp32 ONNX, torch eager, the int8 copy and, where ONNX Runtime has
  its CUDA provider, the fp16 copy on the GPU);
- **tune-time**: ``bench tune-time`` for 5 shots x 4 classes, the default preset, bf16 off and as
  ``auto`` resolves on the device, side by side.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STEP_SECONDS = {"exports": 90.0, "latency": 120.0, "tune-time": 90.0}
"""About how long each step takes on the GPU machine (its CPU does the ONNX work): a step is
skipped when fewer seconds than this are left before the call's hard limit."""


def quick_prompt_file(loaded: Any, work: Path, device: str) -> Path:
    """Train the quick EPT model on offline images; returns its prompt file."""
    from ept_studio.evidence.bench_tuning import write_support_folder
    from ept_studio.services.model import TrainingSaved, TrainRequest, train_on_folder

    images = work / "images"
    write_support_folder(images, shots=5, classes=2)
    request = TrainRequest(
        data_dir=images,
        output=work / "quick.safetensors",
        recipe={"preset": "paper", "epochs": 2, "device": device},
        shots=4,
    )
    for event in train_on_folder(request, backbone=loaded):
        if isinstance(event, TrainingSaved):
            return event.prompt_file
    raise RuntimeError("the quick training run did not save its prompt file")


def export_section(loaded: Any, device: str) -> str:
    """fp32, int8 and fp16 exports of the quick model, with their sizes and checks."""
    from ept_studio.common.errors import EptStudioError
    from ept_studio.services.model import export_prompt_to_onnx

    lines = ["### ONNX exports of a quick tuned model (`export --precision`)", ""]
    with tempfile.TemporaryDirectory(prefix="ept-device-export-") as temporary:
        work = Path(temporary)
        prompt = quick_prompt_file(loaded, work, device)
        for precision in ("fp32", "int8", "fp16"):
            target = work / f"quick-{precision}.onnx"
            try:
                result = export_prompt_to_onnx(prompt, target, backbone=loaded, precision=precision)
            except EptStudioError as err:
                lines.append(f"- {precision}: not exported: {err}")
                continue
            lines.append(f"- {precision}: {export_line(result)}")
    return "\n".join(lines)


def export_line(result: Any) -> str:
    """One export's size, time and check, in one line: the fp32 model against torch, a reduced
    model against the fp32 one (where it ran, top-1 agreement, lowest map correlations)."""
    text = f"{result.size_bytes / 1e6:.1f} MB in {result.seconds:.1f} s; "
    check = result.precision_check
    if check is None:
        text += f"parity with torch: logits within {result.parity.logits_error:.2g}"
    else:
        text += (
            f"against fp32 on {check.provider} ({check.images} images): top-1 agreement "
            f"{check.top1_agreement:.3f}, attention r {check.attention_correlation:.4f}, "
            f"rollout r {check.rollout_correlation:.4f}"
        )
    return text + "".join(f"; {note}" for note in result.notes)


@contextmanager
def offline_backbone_is(loaded: Any) -> Iterator[None]:
    """``load_backbone()`` gives ``loaded`` while the block runs: the benchmarks that load the
    offline backbone themselves get the widened half copy (the device has no fp32 file)."""
    import ept_studio.core.backbones as backbones

    original = backbones.load_backbone
    backbones.load_backbone = lambda *args, **kwargs: loaded
    try:
        yield
    finally:
        backbones.load_backbone = original


def latency_section(loaded: Any, rounds: int) -> str:
    """``bench latency`` on the widened backbone, its fp16 row where CUDA runs ONNX models."""
    from ept_studio.evidence.bench_inference import format_inference_bench, run_inference_bench

    with offline_backbone_is(loaded):
        bench = run_inference_bench(rounds=rounds)
    return "### `bench latency`\n\n" + format_inference_bench(bench)


def tune_time_section(loaded: Any, device: str, presets: tuple[str, ...]) -> str:
    """``bench tune-time``: 5 shots x 4 classes, fp32 and bf16 (as ``auto`` resolves) side by side."""
    from ept_studio.evidence.bench_tuning import plan_precisions, time_tuning, tune_time_markdown

    plan = plan_precisions(("off", "auto"), device)
    report = time_tuning(5, 4, presets, device=device, plan=plan, backbone=loaded)
    return "### `bench tune-time`\n\n" + tune_time_markdown(report)
