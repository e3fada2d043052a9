"""The evidence harness's commands: ``ept-studio bench accuracy``, ``tune-time``, ``pacs-retrieve``,
``sweep-report``.

Registered on the existing ``bench`` group by :func:`add_bench_commands`. The harness
(:mod:`ept_studio.evidence`) is imported only when a command runs, and the desktop bundle leaves it
out: there :func:`add_bench_unavailable` gives ``bench`` a handler that says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import shlex
import sys
from pathlib import Path
from typing import Any

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.cli.console import Console
from ept_studio.common.errors import ConfigError, TrainingError

DATASETS = ("dicom-modality", "mri-planes", "textiles", "lfw-faces")
METHOD_NAMES = ("ept", "linear", "vpt", "lora", "bias", "full", "prototype")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,5,10, not {text!r}") from err
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1, not {text!r}")
    return values


def _method_list(text: str) -> tuple[str, ...]:
    names = tuple(v.strip().lower() for v in text.split(",") if v.strip())
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown methods {unknown}: choose from {', '.join(METHOD_NAMES)}"
        )
    return names


def _bf16_list(text: str) -> tuple[str, ...]:
    settings = tuple(v.strip().lower() for v in text.split(",") if v.strip())
    if not settings or any(s not in ("off", "on", "auto") for s in settings):
        raise argparse.ArgumentTypeError(f"expected off, on or auto, like off,auto, not {text!r}")
    return settings


BENCH_UNAVAILABLE = (
    "the benchmarks and the accuracy protocol are not part of this installation (the desktop "
    "bundle leaves them out): run `ept-studio bench ...` from a Python install of EPT Studio"
)


def evidence_installed() -> bool:
    """Whether :mod:`ept_studio.evidence` can be imported (not in the desktop bundle)."""
    return importlib.util.find_spec("ept_studio.evidence") is not None


def add_bench_unavailable(bench: argparse.ArgumentParser) -> None:
    """``bench`` without the harness: whatever follows, a clear error instead of a traceback."""
    bench.add_argument("words", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    bench.set_defaults(handler=_bench_unavailable)


def _bench_unavailable(args: argparse.Namespace, console: Console) -> None:
    raise ConfigError(BENCH_UNAVAILABLE)


def add_bench_commands(bench_subparsers: Any) -> None:
    """Add ``accuracy`` to the ``bench`` sub-command group."""
    accuracy = bench_subparsers.add_parser(
        "accuracy", help="few-shot accuracy of EPT vs the baselines (the paper's protocol)"
    )
    accuracy.set_defaults(handler=run_bench_accuracy)
    source = accuracy.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=DATASETS, help="a built-in offline dataset")
    source.add_argument(
        "--medfmc", type=Path, help="your local MedFMC folder (chest/ colon/ endo/)"
    )
    accuracy.add_argument("--task", choices=("chest", "colon", "endo"), help="the MedFMC task")
    accuracy.add_argument("--shots", type=_int_list, default=(1, 5, 10), help="K values: 1,5,10")
    accuracy.add_argument("--draws", type=int, default=5, help="support draws (MedFMC: splits)")
    accuracy.add_argument("--seeds", type=int, default=4, help="training seeds per draw")
    accuracy.add_argument(
        "--methods", type=_method_list, default=METHOD_NAMES, help="e.g. ept,linear,vpt,lora"
    )
    accuracy.add_argument("--backbone", help="manifest name (default: the offline ViT-S/14)")
    accuracy.add_argument("--weights", type=Path, help="a local weights file for the backbone")
    accuracy.add_argument(
        "--recipe",
        choices=("paper", "default"),
        default="paper",
        help="starting recipe: paper (the default here) or the app's few-shot default",
    )
    accuracy.add_argument("--epochs", type=int, help="epochs per run (paper: 20)")
    accuracy.add_argument("--batch-size", type=int, help="batch size (paper: 4)")
    accuracy.add_argument("--lr", type=float, help="learning rate (paper: 6e-4)")
    accuracy.add_argument(
        "--head-lr", type=float, help="the head's learning rate (default preset: 3e-4)"
    )
    accuracy.add_argument(
        "--full-lr", type=float, help="the backbone weights' rate under full fine-tuning"
    )
    accuracy.add_argument(
        "--min-crop", type=float, help="RandomResizedCrop's lower scale (paper 0.08, default 0.5)"
    )
    accuracy.add_argument(
        "--head-init",
        choices=("prototype", "normal"),
        help="the head's start: class prototypes (default preset) or N(0, 0.01) (paper)",
    )
    accuracy.add_argument(
        "--input-size",
        type=int,
        metavar="PX",
        help="build the backbone for PX x PX images instead of its own size (DINOv2: a multiple "
        "of 14, e.g. 336 or 448; about (PX/224)^2 times the compute)",
    )
    accuracy.add_argument(
        "--detail",
        type=int,
        metavar="PX",
        help="average each trained method's class probabilities with the untrained prototype's "
        "on the backbone built for PX x PX images (e.g. 448): the app's detail view",
    )
    accuracy.add_argument(
        "--trained-share",
        type=float,
        help="keep this share (0-1) of what training changed; the rest is the prototype classifier",
    )
    accuracy.add_argument(
        "--bf16",
        choices=("auto", "on", "off"),
        help="bfloat16 autocast: auto (the presets' setting: CUDA with bf16, or a CPU with "
        "AVX512-BF16 or AMX that passed this machine's check), on or off",
    )
    accuracy.add_argument(
        "--hold-out",
        action="store_true",
        help="hold out a fifth of each class's support (>= 5 a class) to pick the epoch, as the app",
    )
    accuracy.add_argument(
        "--tie-break",
        choices=("earliest", "loss"),
        help="needs --hold-out: which epoch of those with the best held-out accuracy is kept",
    )
    accuracy.add_argument("--device", help="auto (default), cpu, cuda or mps")
    accuracy.add_argument("--queries-per-class", type=int, help="cap the query set per class")
    accuracy.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    accuracy.add_argument(
        "--coverage", type=float, default=0.9, help="the prediction sets' coverage (0.9)"
    )
    accuracy.add_argument(
        "--calibration-fraction",
        type=float,
        default=0.5,
        help="share of each class's query images that fits the temperature and the sets (0.5)",
    )
    accuracy.add_argument("--seed", type=int, default=0)
    accuracy.add_argument("--out", type=Path, default=Path("accuracy-results"))
    add_ray_option(accuracy, "run each training run as a task on a Ray cluster")
    accuracy.add_argument(
        "--retries",
        type=int,
        default=2,
        help="with --ray: tries again a run whose task failed this many times (2)",
    )
    tune_time = bench_subparsers.add_parser(
        "tune-time", help="seconds the app's Train takes on K shots x C classes, per preset"
    )
    tune_time.set_defaults(handler=run_tune_time)
    tune_time.add_argument("--shots", type=int, default=5, help="images per class (default 5)")
    tune_time.add_argument("--classes", type=int, default=4, help="classes, 2-5 (default 4)")
    tune_time.add_argument(
        "--presets", default="default,paper", help="recipe presets to time, in order"
    )
    tune_time.add_argument("--method", default="ept", help="tuning method (default ept)")
    tune_time.add_argument("--device", default="auto", help="auto (default), cpu, cuda or mps")
    tune_time.add_argument(
        "--bf16",
        type=_bf16_list,
        default=("off", "auto"),
        help="bfloat16 settings to time side by side (default off,auto: fp32, then bf16 if auto "
        "turns it on here; off,on times bf16 anyway)",
    )
    tune_time.add_argument("--out", type=Path, help="also write the table to this markdown file")
    pacs = bench_subparsers.add_parser(
        "pacs-retrieve",
        help="series per second a PACS import takes from a local Orthanc, vs plain dicomweb-client",
    )
    pacs.set_defaults(handler=run_pacs_retrieve)
    pacs.add_argument("--rounds", type=int, default=3, help="timed rounds, median shown (3)")
    pacs.add_argument("--series", type=int, default=12, help="series on the PACS (12)")
    pacs.add_argument("--slices", type=int, default=8, help="slices in each series (8)")
    ray_sweep = bench_subparsers.add_parser(
        "ray-sweep",
        help="a small bench accuracy sweep serially and on a local Ray: the wall time ratio",
    )
    ray_sweep.set_defaults(handler=run_ray_sweep)
    ray_sweep.add_argument("--runs", type=int, default=8, help="training runs, a multiple of 4")
    ray_sweep.add_argument("--cpus", type=int, default=2, help="CPUs the local Ray gets (2)")
    ray_sweep.add_argument("--out", type=Path, help="also write the table to this markdown file")
    report = bench_subparsers.add_parser(
        "sweep-report",
        help="many bench accuracy results as one table, each method against prototype",
    )
    report.set_defaults(handler=run_sweep_report)
    report.add_argument("results", type=Path, nargs="+", help="results.json files or folders")
    report.add_argument("--out", type=Path, help="also write the table to this markdown file")
    report.add_argument(
        "--wide", metavar="RECIPE", help="one recipe as dataset x method rows, K columns"
    )
    report.add_argument(
        "--versus",
        nargs=2,
        metavar=("REFERENCE", "OTHER"),
        help="recipe OTHER against REFERENCE, method by method on the same draws",
    )


def add_ray_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--ray [ADDRESS]``: the address of a Ray cluster (``pip install 'ept-studio[cluster]'``)."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help=f"{what}: HOST:PORT of the head node, auto (a cluster started on this computer "
        "with `ray start --head`) or local (the default: a Ray for this command only); needs "
        "pip install 'ept-studio[cluster]'",
    )


def recipe_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The recipe settings the options ask for: the preset, then each option that was given."""
    overrides = {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "head_lr": args.head_lr,
        "full_lr": args.full_lr,
        "crop_scale": None if args.min_crop is None else (args.min_crop, 1.0),
        "head_init": args.head_init,
        "bf16": args.bf16,
        "tie_break": args.tie_break,
        "trained_share": args.trained_share,
    }
    settings: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    settings["preset"] = args.recipe
    if args.device:
        settings["device"] = args.device
    return settings


def run_bench_accuracy(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.evidence.accuracy import (
        AccuracyPlanned,
        AccuracyRequest,
        AccuracySaved,
        EpisodeDone,
        run_accuracy,
    )

    recipe = recipe_settings(args)
    request = AccuracyRequest(
        out=args.out,
        dataset=args.dataset,
        medfmc_root=args.medfmc,
        medfmc_task=args.task,
        shots=args.shots,
        draws=args.draws,
        seeds=args.seeds,
        methods=args.methods,
        backbone=args.backbone,
        backbone_weights=args.weights,
        input_size=args.input_size,
        detail_size=args.detail,
        recipe=recipe,
        queries_per_class=args.queries_per_class,
        resamples=args.resamples,
        seed=args.seed,
        command=_command_line(),
        hold_out=args.hold_out,
        set_coverage=args.coverage,
        calibration_fraction=args.calibration_fraction,
    )
    if args.ray is None:
        events = run_accuracy(request)
    else:
        events = _accuracy_on_ray(request, args)
    for event in events:
        if isinstance(event, AccuracyPlanned):
            _show_plan(event, console)
        elif isinstance(event, EpisodeDone):
            console.progress(
                event.index,
                event.total,
                f"{event.method} K={event.shots} {event.metric} {event.value:.3f} "
                f"({event.seconds:.0f}s) eta {event.eta_s / 60:.0f} min",
            )
        elif isinstance(event, AccuracySaved):
            console.line(event.markdown)
            console.note(
                f"wrote {event.results_json}, {event.results_md} and {len(event.plots)} plots"
            )
            console.note(f"wall time {event.wall_seconds / 60:.1f} min")
        else:
            _show_ray_event(event, request.out, console)
    console.note(RESEARCH_USE_NOTICE)


def _accuracy_on_ray(request: Any, args: argparse.Namespace) -> Any:
    from ept_studio.services.model import require_ray

    require_ray()
    from ept_studio.evidence.ray_sweep import run_accuracy_on_ray

    if args.retries < 0:
        raise ConfigError(f"--retries must be 0 or more, got {args.retries}")
    return run_accuracy_on_ray(request, args.ray, retries=args.retries)


def _show_ray_event(event: Any, out: Path, console: Console) -> None:
    """A run that failed on every try, and the end of a sweep with such runs (exit 2)."""
    from ept_studio.evidence.ray_sweep import EpisodeFailed, SweepIncomplete

    if isinstance(event, EpisodeFailed):
        console.note(f"run failed: {event.run}: {event.reason}")
    elif isinstance(event, SweepIncomplete):
        raise TrainingError(
            f"{len(event.failed)} of {event.total} runs failed on every try (listed above); no "
            f"results were written. The {event.finished} finished runs are saved in {out}: run "
            "the same command again to run only the missing ones"
        )


def run_tune_time(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.evidence.bench_tuning import plan_precisions, time_tuning, tune_time_markdown

    presets = tuple(p.strip() for p in args.presets.split(",") if p.strip())
    plan = plan_precisions(args.bf16, args.device)
    report = time_tuning(
        args.shots, args.classes, presets, method=args.method, device=args.device, plan=plan
    )
    console.report(tune_time_markdown(report), args.out)


def run_pacs_retrieve(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.evidence.bench_pacs import run_pacs_benchmark

    console.note("starting a local Orthanc, then timing both sides")
    result = run_pacs_benchmark(args.rounds, args.series, args.slices)
    console.report(result.markdown())


def run_ray_sweep(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.model import require_ray

    require_ray()
    from ept_studio.evidence.bench_ray import run_ray_sweep_bench

    console.note(f"{args.runs} runs serially, then on a local Ray with {args.cpus} CPUs")
    console.report(run_ray_sweep_bench(args.runs, args.cpus).markdown(), args.out)


def run_sweep_report(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.evidence.sweep_report import (
        baseline_gains,
        load_sweep,
        recipe_gains,
        sweep_markdown,
        versus_markdown,
        wide_markdown,
    )

    cells = load_sweep(args.results)
    gains = baseline_gains(cells)
    if args.versus:
        reference, other = args.versus
        versus = recipe_gains(cells, reference, other)
        console.report(versus_markdown(cells, versus, reference, other), args.out)
    elif args.wide:
        console.report(wide_markdown(cells, gains, args.wide), args.out)
    else:
        console.report(sweep_markdown(cells, gains), args.out)


def _show_plan(event: Any, console: Console) -> None:
    counts = ", ".join(f"{name} {n}" for name, n in event.counts.items())
    console.note(f"{event.title}: {counts}; {event.skipped} files skipped")
    for note in event.notes:
        console.note(f"note: {note}")
    console.note(f"{event.runs} training runs planned")
    if event.finished:
        console.note(f"{event.finished} of them already in the results folder: not run again")


_PATH_OPTIONS = ("--medfmc", "--weights")


def _command_line() -> str:
    """The command as typed, for the report; the paths to a user's data and weights are hidden."""
    words: list[str] = []
    hide_next = False
    for word in sys.argv[1:]:
        option = word.split("=", 1)[0]
        if hide_next:
            words.append("PATH")
        elif option in _PATH_OPTIONS and "=" in word:
            words.append(f"{option}=PATH")
        else:
            words.append(word)
        hide_next = word in _PATH_OPTIONS
    return shlex.join(["ept-studio", *words])
