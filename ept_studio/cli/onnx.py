"""ONNX commands: ``export PROMPT --onnx OUT.onnx``, ``predict --onnx MODEL PATHS...``, ``bench
latency``, ``bench ray-predict``.

``predict --onnx`` runs without torch: it imports only the ONNX Runtime runner, the decoders and the
overlay code. Its parser options come from :func:`add_predict_onnx_options`, its handler is
:func:`run_predict_onnx`; ``bench latency`` and ``bench ray-predict`` are added to the ``bench``
sub-commands with :func:`add_bench_latency` and :func:`add_bench_ray_predict`.
"""

from __future__ import annotations

import argparse
import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.cli.console import Console
from ept_studio.cli.evidence import add_ray_option
from ept_studio.common.errors import DatasetError
from ept_studio.common.files import (
    atomic_write_text,
    check_output_file,
    check_output_folder,
    display_path,
    make_parent_folder,
)

if TYPE_CHECKING:
    from ept_studio.services.model import InferenceEvent, InferenceFinished


def add_commands(commands: Any) -> None:
    """Register ``export``."""
    export = commands.add_parser(
        "export", help="export a prompt file to ONNX (checked against torch before it is kept)"
    )
    export.set_defaults(handler=run_export)
    export.add_argument("prompt", type=Path, help="the prompt file (.safetensors)")
    export.add_argument("--onnx", type=Path, required=True, help="the ONNX file to write")
    export.add_argument("--weights", type=Path, help="a local weights file for the backbone")
    export.add_argument(
        "--check-images",
        type=Path,
        nargs="+",
        default=[],
        help="images to check the export on (default: pydicom's CT and MR sample images)",
    )
    export.add_argument(
        "--precision",
        choices=("fp32", "int8", "fp16"),
        default="fp32",
        help="fp32 (default); int8: about a quarter of the size and faster on the CPU; fp16: half "
        "the size, for CUDA GPUs. int8 and fp16 are kept only if they agree with fp32 on the check "
        "images (top-1 agreement >= 99 %%, attention-map correlation >= 0.95)",
    )


def add_predict_onnx_options(predict: argparse.ArgumentParser) -> None:
    """The options ``predict`` takes when it runs an ONNX model (``--onnx MODEL``)."""
    predict.add_argument("--onnx", type=Path, help="run this exported ONNX model (no torch needed)")
    predict.add_argument(
        "--overlays",
        type=Path,
        help="write attention overlay PNGs into this folder (made if missing)",
    )
    predict.add_argument(
        "--head", type=int, help="overlay one attention head (default: the mean of all heads)"
    )
    predict.add_argument(
        "--rollout", action="store_true", help="overlay the attention rollout over all blocks"
    )
    predict.add_argument("--alpha", type=float, default=0.5, help="overlay opacity, 0..1")
    predict.add_argument("--batch-size", type=int, default=8)
    predict.add_argument("--workers", type=int, default=2, help="threads decoding images")
    predict.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="ONNX Runtime provider"
    )
    add_ray_option(predict, "with --onnx: score the images on a Ray cluster (give it after them)")


def add_bench_latency(bench_commands: Any) -> None:
    """Register ``bench latency`` under the ``bench`` sub-commands."""
    latency = bench_commands.add_parser(
        "latency", help="ONNX Runtime vs torch latency, and folder inference throughput"
    )
    latency.set_defaults(handler=run_bench_latency)
    from ept_studio.evidence.bench_inference import add_bench_options

    add_bench_options(latency)
    latency.add_argument("--out", type=Path, help="also write the markdown report here")


def add_bench_ray_predict(bench_commands: Any) -> None:
    """Register ``bench ray-predict`` under the ``bench`` sub-commands."""
    ray_predict = bench_commands.add_parser(
        "ray-predict",
        help="predict --onnx on a folder of images locally and on a local Ray: images per second",
    )
    ray_predict.set_defaults(handler=run_bench_ray_predict)
    ray_predict.add_argument("--images", type=int, default=200, help="images in the folder (200)")
    ray_predict.add_argument("--cpus", type=int, default=2, help="CPUs the local Ray gets (2)")
    ray_predict.add_argument("--batch-size", type=int, default=8, help="images per batch (8)")
    ray_predict.add_argument("--out", type=Path, help="also write the table to this markdown file")


def run_export(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.model import export_prompt_to_onnx

    make_parent_folder(check_output_file(args.onnx, "ONNX file"), "ONNX file")
    result = export_prompt_to_onnx(
        args.prompt,
        args.onnx,
        weights=args.weights,
        check_files=args.check_images,
        precision=args.precision,
    )
    parity = result.parity
    size = f"{result.size_bytes / 1e6:.1f} MB"
    console.line(f"onnx file         {display_path(result.onnx_path)} ({size}, {result.precision})")
    console.line(f"sha256            {result.sha256}")
    console.line(f"classes           {', '.join(result.class_names)}")
    console.line(
        f"parity check      {parity.images} images ({result.check_source}): logits within "
        f"{parity.logits_error:.2g}, attention within {parity.attention_error:.2g}"
        + (" (the fp32 model, against torch)" if result.precision_check is not None else "")
    )
    if result.precision_check is not None:
        console.line(f"{result.precision} check        {precision_text(result.precision_check)}")
    for note in result.notes:
        console.note(note)
    console.note(RESEARCH_USE_NOTICE)


def precision_text(check: Any) -> str:
    """An int8 or fp16 model's check against fp32, in one line."""
    return (
        f"{check.images} images against the fp32 model on {check.provider}: top-1 agreement "
        f"{check.top1_agreement * 100:.0f} % (needs >= {check.min_agreement * 100:g} %), "
        f"attention-map correlation {check.attention_correlation:.4f}, rollout "
        f"{check.rollout_correlation:.4f} (lowest image; need >= {check.min_correlation:g})"
    )


def run_predict_onnx(args: argparse.Namespace, console: Console) -> None:
    """``predict --onnx MODEL PATHS... [--csv FILE] [--overlays DIR]``; torch is never imported."""
    from ept_studio.services.model import (
        OverlayOptions,
        iter_predictions,
        open_onnx_model,
    )

    check_predict_outputs(args)
    if args.ray is not None:
        from ept_studio.services.model import require_ray

        require_ray()
    runner = open_onnx_model(args.onnx, device=args.device)
    if runner.info.precision is not None:
        console.note(
            f"{runner.info.precision.precision} model, checked at export: "
            f"{precision_text(runner.info.precision)}"
        )
    overlays = None
    if args.overlays is not None:
        overlays = OverlayOptions(
            args.overlays, alpha=args.alpha, head=args.head, rollout=args.rollout
        )
    if args.ray is not None:
        finished = _predict_on_ray(runner, args, overlays, console)
    else:
        events = iter_predictions(
            runner, args.paths, batch_size=args.batch_size, workers=args.workers, overlays=overlays
        )
        finished = _follow(events, console)
    show_skipped(finished.failed, console)
    require_predictions(finished.predictions, finished.failed)
    if args.csv:
        write_predictions_csv(args.csv, finished.predictions, runner.info.class_names)
        console.note(f"wrote {len(finished.predictions)} predictions to {display_path(args.csv)}")
    if overlays is not None:
        shown = display_path(overlays.folder)
        console.note(f"wrote {len(finished.predictions)} overlays to {shown}")
    show_predictions(
        finished.predictions,
        console,
        calibration=runner.info.calibration,
        conformal=runner.info.conformal,
    )


def _predict_on_ray(
    runner: Any, args: argparse.Namespace, overlays: Any, console: Console
) -> InferenceFinished:
    from ept_studio.services.model import predict_onnx_on_ray

    console.note(f"scoring on the Ray cluster ({args.ray})")
    finished = predict_onnx_on_ray(
        runner, args.paths, address=args.ray, batch_size=args.batch_size, overlays=overlays
    )
    console.note(f"ran on {finished.provider} in {finished.seconds:.1f}s")
    return finished


def check_predict_outputs(args: argparse.Namespace) -> None:
    """Both predict paths: refuse a ``--csv`` or ``--overlays`` that could not be written, before
    a model is loaded (a missing folder is made when the file is written)."""
    if args.csv is not None:
        check_output_file(args.csv, "predictions CSV")
    if getattr(args, "overlays", None) is not None:
        check_output_folder(args.overlays, "overlay images")


def show_skipped(skipped: Sequence[Any], console: Console) -> None:
    """The files that gave no prediction, each with its reason."""
    for item in skipped:
        console.note(f"skipped {display_path(item.path)}: {item.reason}")


def require_predictions(predictions: Sequence[Any], skipped: Sequence[Any]) -> None:
    """Both predict paths end alike when no file could be used: exit 2, no CSV written."""
    if not predictions:
        raise DatasetError(
            f"no usable image among the {len(skipped)} files given (the reasons are listed above)"
        )


SET_SEPARATOR = " | "
"""Between the class names of a prediction set, on stdout and in the CSV."""


def set_text(prediction: Any) -> str:
    """The image's prediction set as class names joined by :data:`SET_SEPARATOR`; empty when the
    model has no sets (or the set holds no class)."""
    names = getattr(prediction, "prediction_set", None)
    return SET_SEPARATOR.join(names) if names else ""


def show_predictions(
    predictions: Sequence[Any], console: Console, *, calibration: Any = None, conformal: Any = None
) -> None:
    """One line per image on stdout (file, predicted class, its model score and, when the model
    has prediction sets, ``set: A | B``), then what the scores and sets mean, and the notice."""
    if calibration is None:
        console.note("scores are uncalibrated: the model carries no temperature")
    if conformal is not None:
        console.note(f"prediction sets at {conformal.coverage * 100:g} %: {conformal.statement}")
    for p in predictions:
        score = p.scores[p.predicted_class]
        line = f"{display_path(p.path)}\t{p.predicted_class}\t{score:.4f}"
        if getattr(p, "prediction_set", None) is not None:
            line += f"\tset: {set_text(p) or '(no class)'}"
        console.line(line)
    console.note(RESEARCH_USE_NOTICE)


def _follow(events: Iterator[InferenceEvent], console: Console) -> InferenceFinished:
    """Show the progress of an inference run; its InferenceFinished event."""
    from ept_studio.services.model import (
        BatchPredicted,
        InferenceFinished,
        InferenceStarted,
    )

    for event in events:
        if isinstance(event, InferenceStarted):
            for note in event.notes:
                console.note(note)
            console.note(f"running on {event.provider}: {event.total} files")
        elif isinstance(event, BatchPredicted):
            console.progress(event.done, event.total, f"{event.elapsed_s:.0f}s")
        elif isinstance(event, InferenceFinished):
            return event
    raise DatasetError("the inference run ended without a result")


def write_predictions_csv(
    path: Path,
    predictions: Sequence[Any],
    class_names: Sequence[str],
    *,
    overlay_column: bool = True,
) -> None:
    """One row per image: file, sha256, predicted class, one score column per class, the
    prediction set (class names joined by :data:`SET_SEPARATOR`; empty when the model has no
    sets), overlay.

    Written whole or not at all; a file name that is not UTF-8 is written with replacement
    characters (U+FFFD), the sha256 still names the file exactly.
    """
    header = ["file", "sha256", "predicted_class", *(f"score_{n}" for n in class_names)]
    header.append("prediction_set")
    stream = io.StringIO()
    writer = csv.writer(stream)
    writer.writerow(header + (["overlay"] if overlay_column else []))
    for p in predictions:
        row = [display_path(p.path), p.sha256, p.predicted_class]
        row += [f"{p.scores[n]:.6f}" for n in class_names]
        row.append(set_text(p))
        if overlay_column:
            row.append(display_path(p.overlay) if p.overlay is not None else "")
        writer.writerow(row)
    atomic_write_text(path, stream.getvalue(), "predictions CSV")


def run_bench_latency(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.evidence.bench_inference import bench_from_args, format_inference_bench

    if args.out is not None:
        check_output_file(args.out, "benchmark report")
    show_report(format_inference_bench(bench_from_args(args)), args.out, console)


def run_bench_ray_predict(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.model import require_ray

    require_ray()
    if args.out is not None:
        check_output_file(args.out, "benchmark report")
    from ept_studio.evidence.bench_ray_predict import run_ray_predict_bench

    console.note(
        f"{args.images} images by predict --onnx, then on a local Ray with {args.cpus} CPUs"
    )
    bench = run_ray_predict_bench(
        write_predictions_csv, images=args.images, cpus=args.cpus, batch_size=args.batch_size
    )
    show_report(bench.markdown(), args.out, console)


def show_report(markdown: str, out: Path | None, console: Console) -> None:
    """Print a markdown report, and write it whole to ``out`` (its folder made) when given."""
    console.report(markdown)
    if out is not None:
        text = markdown if markdown.endswith("\n") else markdown + "\n"
        atomic_write_text(out, text, "benchmark report")
        console.note(f"wrote {display_path(out)}")
