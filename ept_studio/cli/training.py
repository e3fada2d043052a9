"""The ``train`` command: tune on a folder of class sub-folders, or on a project's labels."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ept_studio.cli.console import Console
from ept_studio.common.errors import ConfigError
from ept_studio.common.files import check_output_file, display_path
from ept_studio.common.training_events import EpochFinished, RunStarted, StepFinished
from ept_studio.services.model import DEFAULT_SLICES_PER_SERIES
from ept_studio.services.model import parse_blocks as parse_block_list

METHODS = ("ept", "linear", "full", "bias", "vpt", "lora")


def parse_blocks(text: str) -> list[int] | None:
    """``all`` (None), ``shallow`` ([0]), ``0,1,5`` or ``0-5`` (inclusive)."""
    try:
        return parse_block_list(text)
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
    from ept_studio.services.model import query_cap_problem

    try:
        cap = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"a whole number is needed, got {text!r}") from err
    if cap < 1:
        raise argparse.ArgumentTypeError(query_cap_problem(cap))
    return cap


def coverage_value(text: str) -> float:
    """``--coverage``: a number from 0.5 up to but not including 1."""
    from ept_studio.services.model import coverage_error

    try:
        coverage = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"a number such as 0.9 is needed, got {text!r}") from err
    problem = coverage_error(coverage)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return coverage


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
        "trained_share",
    )
    chosen = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    return {"preset": getattr(args, "recipe", "paper"), **chosen}


def add_train_command(commands: Any) -> None:
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
        "--trained-share",
        type=float,
        metavar="SHARE",
        help="keep this share (0-1) of what training changed; the rest is the prototype "
        "(nearest-centroid) classifier training started from (needs the prototype head)",
    )
    train.add_argument(
        "--full-lr", type=float, help="the backbone weights' rate under --method full"
    )
    train.add_argument("--warmup-steps", type=int)
    train.add_argument("--optimizer", choices=("sgd", "adamw"))
    train.add_argument("--device", help="auto (default), cpu, cuda or mps")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--coverage",
        type=coverage_value,
        default=0.90,
        help="how often a prediction set should contain the true class (default 0.90)",
    )
    train.add_argument(
        "--detail",
        action="store_true",
        help="with --project: also score each image at twice the backbone's input size with the "
        "untrained class centres of the training images, averaged with the tuned model (the "
        "app's 'Also check fine detail'; single-label projects)",
    )
    train.add_argument(
        "--hold-out",
        action="store_true",
        help="with --project: keep a fifth of each class's training images (>= 5 a class) aside "
        "to choose the epoch and to calibrate the scores and the prediction sets",
    )
    train.add_argument(
        "--calibrate-on-test",
        action="store_true",
        help="with --project: calibrate on a seeded half of each class's test images (they are "
        "then not scored as test images) instead of the held-out training images",
    )
    train.add_argument(
        "--slices-per-series",
        type=int,
        default=DEFAULT_SLICES_PER_SERIES,
        metavar="N",
        help="with --project: train on at most N slices of each DICOM series, evenly spaced "
        f"(default {DEFAULT_SLICES_PER_SERIES}; 0: every slice)",
    )
    train.add_argument(
        "--compact",
        action="store_true",
        help="also write the inference-only compact EPT prompt file",
    )


def run_train(args: argparse.Namespace, console: Console) -> None:
    if args.out is not None:
        check_output_file(args.out, "prompt file")
    if args.project is not None:
        run_project_train(args, console)
        return
    if args.data is None or args.out is None:
        raise ConfigError("give a DATA folder and --out FILE, or --project FOLDER")
    if args.calibrate_on_test or args.hold_out or args.detail:
        raise ConfigError(
            "--hold-out, --calibrate-on-test and --detail need --project: a folder run trains on "
            "every support image and is not calibrated"
        )
    from ept_studio.services.model import DataReady, TrainingSaved, TrainRequest, train_on_folder

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
        coverage=args.coverage,
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


def run_project_train(args: argparse.Namespace, console: Console) -> None:
    """``ept-studio train --project FOLDER``: train on the project's labels (train / test roles)."""
    from ept_studio.services.project import (
        ProjectDataReady,
        ProjectTrainingSaved,
        export_prompt_file,
        train_on_project,
    )

    events = train_on_project(
        args.project,
        method_from_args(args),
        recipe_from_args(args),
        args.seed,
        backbone_name=args.backbone,
        backbone_weights=args.weights,
        coverage=args.coverage,
        calibrate_on_test=args.calibrate_on_test,
        hold_out=args.hold_out,
        slices_per_series=args.slices_per_series,
        detail=args.detail,
    )
    for event in events:
        if isinstance(event, ProjectDataReady):
            _show_project_data(event, console)
        elif isinstance(event, ProjectTrainingSaved):
            for name, value in sorted(event.metrics.items()):
                console.line(f"{name:<18} {value:.4f}")
            console.line(f"run               {event.run_id} ({event.run_record})")
            if args.out is not None:
                out = export_prompt_file(args.project, event.run_id, args.out)
                console.line(f"prompt file       {display_path(out)}")
            else:
                console.line(f"prompt file       {display_path(event.prompt_file)}")
        else:
            show_training_event(event, console)


def _show_project_data(event: Any, console: Console) -> None:
    for name in event.classes:
        console.note(
            f"class {name}: {event.train_counts[name]} train, {event.test_counts[name]} test images"
        )
    for reason, count in sorted(event.excluded.items()):
        console.note(f"left out {count} labelled images: {reason}")
    if event.unreadable:
        console.note(f"left out {event.unreadable} images whose files cannot be decoded")
    if event.patients_in_both_roles:
        console.note(
            f"{event.patients_in_both_roles} patients have images in both train and test: "
            "the test result will be optimistic"
        )
