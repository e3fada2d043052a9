"""The engine commands: doctor, models, train, eval, predict, bench speed."""

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
from ept_studio.common.errors import ConfigError
from ept_studio.common.files import check_output_file, display_path
from ept_studio.common.training_events import EpochFinished, RunStarted, StepFinished
from ept_studio.services import training_options

METHODS = ("ept", "linear", "full", "bias", "vpt", "lora")


def parse_blocks(text: str) -> list[int] | None:
    """``all`` (None), ``shallow`` ([0]), ``0,1,5`` or ``0-5`` (inclusive)."""
    try:
        return training_options.parse_blocks(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def positive_shots(text: str) -> int:
    """``--shots``: a whole number of at least 1 (every class needs images left to evaluate it)."""
    try:
        shots = int(text)
    except ValueError:
        shots = 0
    if shots < 1:
        raise argparse.ArgumentTypeError(
            f"the number of shots must be a whole number of at least 1, got {text!r}"
        )
    return shots


def query_cap(text: str) -> int:
    """``--max-query``: at least 1, or every class would be saved without being evaluated."""
    from ept_studio.services.images import query_cap_problem

    try:
        cap = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"a whole number is needed, got {text!r}") from err
    if cap < 1:
        raise argparse.ArgumentTypeError(query_cap_problem(cap))
    return cap


def method_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The method config dict the services take, from the train options."""
    if args.method == "ept":
        return {
            "method": "ept",
            "length": args.length,
            "blocks": args.blocks,
            "embedding": args.embedding,
        }
    if args.method == "vpt":
        return {"method": "vpt", "length": args.vpt_length, "deep": args.blocks != [0]}
    if args.method == "lora":
        return {"method": "lora", "rank": args.lora_rank, "alpha": float(args.lora_rank)}
    return {"method": args.method}


def recipe_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Overrides of the paper recipe: only the options the user gave."""
    names = (
        "epochs",
        "batch_size",
        "lr",
        "head_lr",
        "full_lr",
        "optimizer",
        "device",
        "warmup_steps",
    )
    chosen = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {"preset": getattr(args, "recipe", "paper"), **chosen}


def _add_train(commands: Any) -> None:
    train = commands.add_parser("train", help="tune a backbone on a folder of class sub-folders")
    train.set_defaults(handler=run_train)
    train.add_argument(
        "data", type=Path, nargs="?", help="folder whose sub-folders are the classes"
    )
    train.add_argument(
        "--out", type=Path, help="prompt file to write (.safetensors; missing folders are made)"
    )
    train.add_argument(
        "--project",
        type=Path,
        help="train on a project's labels (train / test roles) instead of a folder",
    )
    train.add_argument("--backbone", help="backbone name from the manifest (default: offline one)")
    train.add_argument("--weights", type=Path, help="a local weights file for the backbone")
    train.add_argument("--method", choices=METHODS, default="ept")
    train.add_argument("--length", type=int, default=100, help="EPT prompt length L")
    train.add_argument(
        "--blocks",
        type=parse_blocks,
        default=None,
        help="prompted blocks: all (default), shallow, 0,1,2 or 0-5",
    )
    train.add_argument(
        "--embedding", default="pure_cat", choices=("pure_cat", "add", "multi", "multi_cat")
    )
    train.add_argument("--vpt-length", type=int, default=10)
    train.add_argument("--lora-rank", type=int, default=8)
    train.add_argument(
        "--shots",
        type=positive_shots,
        default=5,
        help="training images per class; the rest of each class evaluates the model",
    )
    train.add_argument(
        "--max-query", type=query_cap, help="evaluate on at most this many per class"
    )
    train.add_argument(
        "--recipe",
        choices=("paper", "default"),
        default="paper",
        help="starting recipe: paper (SGD 6e-4, 20 epochs; default here) or default (the app's "
        "few-shot preset: AdamW, prototype head, at least 50 steps)",
    )
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float)
    train.add_argument("--head-lr", type=float)
    train.add_argument(
        "--full-lr", type=float, help="the backbone weights' rate under --method full"
    )
    train.add_argument("--warmup-steps", type=int)
    train.add_argument("--optimizer", choices=("sgd", "adamw"))
    train.add_argument("--device", help="auto (default), cpu, cuda or mps")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--compact",
        action="store_true",
        help="also write the inference-only compact EPT prompt file",
    )


def add_commands(commands: Any) -> None:
    """Register doctor, models, train, eval, predict and bench."""
    commands.add_parser(
        "doctor", help="check the offline default backbone and the devices"
    ).set_defaults(handler=lambda args, console: run_doctor(console))
    models = commands.add_parser("models", help="list or get backbones")
    models.set_defaults(handler=run_models)
    model_commands = models.add_subparsers(dest="models_command", required=True)
    model_commands.add_parser("list", help="supported backbones and whether they are here")
    get = model_commands.add_parser("get", help="download a backbone (uses the network)")
    get.add_argument("name")
    _add_train(commands)
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
    add_accuracy_bench(bench_commands)


def run_doctor(console: Console) -> None:
    from ept_studio.services.backbones import doctor

    report = doctor()
    console.line(f"backbone        {report.backbone} (sha256 {report.weights_sha256[:16]}...)")
    console.line(f"tokens x width  {report.tokens} x {report.width}")
    console.line(f"parameters      {report.parameters:,}")
    console.line(f"device          {report.device}")
    console.line(f"forward pass    {report.forward_seconds:.2f} s (one 224 px image)")
    console.line(f"ONNX providers  {', '.join(report.onnx_providers) or 'none'}")
    console.line("ready: EPT Studio can tune on this machine offline.")


def run_models(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.backbones import get_backbone, list_backbones

    if args.models_command == "get":
        console.note(f"downloading {args.name} (network access, asked for explicitly)")
        console.line(str(get_backbone(args.name)))
        return
    for status in list_backbones():
        mark = "here   " if status.available else "missing"
        default = " (default)" if status.default else ""
        console.line(f"{mark} {status.name}{default}  [{status.timm_name}, {status.licence}]")


def run_train(args: argparse.Namespace, console: Console) -> None:
    if args.out is not None:
        check_output_file(args.out, "prompt file")
    if args.project is not None:
        from ept_studio.cli.project import run_project_train

        run_project_train(args, console)
        return
    if args.data is None or args.out is None:
        raise ConfigError("give a DATA folder and --out FILE, or --project FOLDER")
    from ept_studio.services.training import DataReady, TrainingSaved, TrainRequest, train_on_folder

    request = TrainRequest(
        data_dir=args.data,
        output=args.out,
        backbone=args.backbone,
        backbone_weights=args.weights,
        method=method_from_args(args),
        recipe=recipe_from_args(args),
        shots=args.shots,
        seed=args.seed,
        max_query_per_class=args.max_query,
        compact=args.compact,
    )
    for event in train_on_folder(request):
        if isinstance(event, DataReady):
            _show_data(event, console)
        elif isinstance(event, TrainingSaved):
            _show_saved(event, console)
        else:
            show_training_event(event, console)


def show_training_event(event: object, console: Console) -> None:
    """Render one of the engine's training events (start, step progress, epoch metrics)."""
    if isinstance(event, RunStarted):
        console.note(
            f"training on {event.device}: {event.total_steps} steps, "
            f"{event.trainable_parameters:,} trainable parameters"
        )
    elif isinstance(event, StepFinished):
        console.progress(
            event.step,
            event.total_steps,
            f"epoch {event.epoch} loss {event.loss:.4f} eta {event.eta_s:.0f}s",
        )
    elif isinstance(event, EpochFinished) and event.val_metrics:
        console.note(f"epoch {event.epoch}: {event.val_metrics}")


def _show_data(event: Any, console: Console) -> None:
    for name in event.classes:
        console.note(
            f"class {name}: {event.support_counts[name]} training, "
            f"{event.query_counts[name]} evaluation images"
        )
    for skipped in event.skipped:
        console.note(f"skipped {display_path(skipped.path)}: {skipped.reason}")
    for same in event.duplicates:
        for path in same.dropped:
            kept = display_path(same.kept)
            console.note(f"left out {display_path(path)}: the same image as {kept}")


def _show_saved(event: Any, console: Console) -> None:
    for name, value in sorted(event.metrics.items()):
        console.line(f"{name:<18} {value:.4f}")
    sha = event.prompt_sha256[:16]
    console.line(f"prompt file       {display_path(event.prompt_file)} (sha256 {sha}...)")
    if event.compact_file is not None:
        console.line(f"compact file      {display_path(event.compact_file)}")
    console.line(f"run record        {display_path(event.run_record)}")


def run_eval(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.inference import evaluate_folder, load_tuned_model

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
    from ept_studio.services.inference import load_tuned_model, predict_files

    cli_onnx.check_predict_outputs(args)
    handle = load_tuned_model(args.prompt, weights=args.weights)
    predictions, skipped = predict_files(handle, args.paths)
    cli_onnx.show_skipped(skipped, console)
    cli_onnx.require_predictions(predictions, skipped)
    if args.csv:
        names = handle.class_names
        cli_onnx.write_predictions_csv(args.csv, predictions, names, overlay_column=False)
        console.note(f"wrote {len(predictions)} predictions to {display_path(args.csv)}")
    cli_onnx.show_predictions(predictions, console)


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
