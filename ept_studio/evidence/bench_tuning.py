"""``ept-studio bench tune-time``: how long the app's Train takes on K shots x C classes.

It writes K images of each of C classes from the offline datasets (the textile classes, then faces
and non-faces) as PNG into a temporary folder, imports them into a fresh project with folders as
classes, and runs the Train tab's own options (:class:`TrainingOptions` with the preset changed
only) through :func:`tune_project`, as the app's worker does. The clock runs from the call to the
saved run: rendering, the backbone load, the hold-out split, the prototype head, every step and
held-out check, and writing the prompt file. The pixels do not change the time; the count does.

The same-run baselines are the ``paper`` preset on the same project and, for bfloat16, the same
preset in float32: each preset is timed once per precision (by default ``bf16`` off, then ``bf16``
as ``auto`` resolves here), fp32 first, on a fresh project each time. The figures to read are the
default's seconds against the 90 s budget (:data:`BUDGET_SECONDS`), its ratio to the paper recipe,
and bf16's seconds over fp32's. ``auto`` is resolved before the clock starts (running this
machine's one-time bfloat16 check if it has not run, and importing torch, so neither lands in a
timed run); where it resolves to float32 it is not timed twice, and the table says why.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ept_studio.common.errors import ConfigError
from ept_studio.common.training_events import RunStarted, StepFinished
from ept_studio.data.store import LabelMode
from ept_studio.evidence.datasets import load_dataset
from ept_studio.services.model import TrainingOptions
from ept_studio.services.project import (
    ProjectDataReady,
    ProjectTrainingSaved,
    create_project,
    held_out_sizes,
    import_paths,
    tune_project,
)

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone
    from ept_studio.core.bf16 import Measure

BUDGET_SECONDS = 90.0
"""The target: the default EPT run for 5 shots x 4 classes within 90 s on 2 CPU cores."""
CLASS_SOURCES = (
    ("textiles", 0),
    ("textiles", 1),
    ("textiles", 2),
    ("lfw-faces", 0),
    ("lfw-faces", 1),
)
"""(dataset, class index) of each class the benchmark can use, in order."""
DEFAULT_BF16 = ("off", "auto")
"""The precisions timed unless told: float32, then bfloat16 as the app's ``auto`` resolves here."""


@dataclasses.dataclass(frozen=True)
class Precision:
    """One ``bf16`` setting, what it resolves to on the benchmark's device, and why."""

    setting: str
    bf16: bool
    reason: str
    """As the training run words it (``on: this CPU has AVX512-BF16 and ran the check 1.4x
    faster``)."""

    @property
    def label(self) -> str:
        return "bf16" if self.bf16 else "fp32"


@dataclasses.dataclass(frozen=True)
class PrecisionPlan:
    """The precisions to time, at most one fp32 and one bf16, and the settings that repeat one."""

    timed: tuple[Precision, ...]
    not_timed: tuple[Precision, ...] = ()


@dataclasses.dataclass(frozen=True)
class TuneTime:
    """One timed Train: the preset, what it trained on, and where the time went."""

    preset: str
    method: str
    train_images: int
    held_out: int
    steps: int
    seconds: float
    """From the call to the saved run (what a user waits after pressing Train)."""
    setup_seconds: float
    """From the call to the end of the first step (rendering, backbone load, prototype head and
    that one step), so ``seconds_per_step`` spreads the rest over all steps (about 2 % low)."""
    device: str
    precision: Precision
    """The ``bf16`` setting the run was given and what it did (from the run's start event)."""

    @property
    def seconds_per_step(self) -> float:
        return (self.seconds - self.setup_seconds) / max(self.steps, 1)


@dataclasses.dataclass(frozen=True)
class TuneTimeReport:
    """Every timed Train of one benchmark, and the precision plan they followed."""

    shots: int
    classes: int
    results: tuple[TuneTime, ...]
    plan: PrecisionPlan

    def result(self, preset: str, bf16: bool) -> TuneTime | None:
        """The run of ``preset`` in bf16 (True) or fp32 (False), if it was timed."""
        return next(
            (r for r in self.results if r.preset == preset and r.precision.bf16 == bf16), None
        )


def plan_precisions(
    settings: Sequence[str],
    device: str = "auto",
    *,
    cpuinfo: Path | None = None,
    measure: Measure | None = None,
    cache: Path | None = None,
) -> PrecisionPlan:
    """Resolve each ``bf16`` setting (``off``, ``on``, ``auto``) on ``device`` as a training run
    would; a setting that resolves to a precision already planned is kept as not timed.

    ``auto`` on a CPU with AVX512-BF16 or AMX runs the one-time check if this machine has not
    (``cpuinfo``, ``measure`` and ``cache`` stand in for the machine's in tests)."""
    from ept_studio.core.device import bf16_decision, resolve_device

    if not settings:
        raise ConfigError("give at least one bf16 setting: off, on or auto")
    target = resolve_device(device)
    timed: list[Precision] = []
    not_timed: list[Precision] = []
    for setting in settings:
        decision = bf16_decision(setting, target, cpuinfo=cpuinfo, measure=measure, cache=cache)
        precision = Precision(setting, decision.on, decision.reason)
        repeats = any(p.bf16 == precision.bf16 for p in timed)
        (not_timed if repeats else timed).append(precision)
    timed.sort(key=lambda p: p.bf16)
    return PrecisionPlan(tuple(timed), tuple(not_timed))


def write_support_folder(root: Path, shots: int, classes: int) -> list[str]:
    """``root/<class>/<i>.png``: ``shots`` images of each of ``classes`` offline classes."""
    if not 2 <= classes <= len(CLASS_SOURCES):
        raise ConfigError(f"the benchmark has 2 to {len(CLASS_SOURCES)} classes, not {classes}")
    if shots < 1:
        raise ConfigError(f"shots must be at least 1, got {shots}")
    datasets = {name: load_dataset(name) for name in {n for n, _ in CLASS_SOURCES[:classes]}}
    names = []
    for dataset_name, label in CLASS_SOURCES[:classes]:
        dataset = datasets[dataset_name]
        name = dataset.class_names[label]
        members = [s for s in dataset.samples if s.label == label][:shots]
        if len(members) < shots:
            raise ConfigError(f"{dataset_name} has only {len(members)} {name} images")
        folder = root / name
        folder.mkdir(parents=True)
        for index, sample in enumerate(members):
            Image.fromarray(np.ascontiguousarray(sample.read())).save(folder / f"{index:03d}.png")
        names.append(name)
    return names


def time_tuning(
    shots: int = 5,
    classes: int = 4,
    presets: Sequence[str] = ("default", "paper"),
    *,
    method: str = "ept",
    device: str = "auto",
    plan: PrecisionPlan | None = None,
    backbone: LoadedBackbone | None = None,
) -> TuneTimeReport:
    """Time the app's Train once per preset and precision (fp32 first), each on a fresh project
    of the same images; ``plan`` defaults to :data:`DEFAULT_BF16` resolved on ``device``."""
    plan = plan or plan_precisions(DEFAULT_BF16, device)
    results = []
    with tempfile.TemporaryDirectory(prefix="ept-tune-time-") as temporary:
        root = Path(temporary)
        write_support_folder(root / "images", shots, classes)
        for preset in presets:
            for precision in plan.timed:
                options = TrainingOptions(
                    method=method, recipe=preset, device=device, bf16=precision.setting
                )
                folder = root / f"project-{preset}-{precision.label}"
                result = _timed_run(folder, root, options, backbone)
                if result.precision.bf16 != precision.bf16:
                    raise ConfigError(
                        f"bf16 {precision.setting} was {precision.label} when planned but "
                        f"{result.precision.label} in the run ({result.precision.reason})"
                    )
                results.append(result)
    return TuneTimeReport(shots, classes, tuple(results), plan)


def _timed_run(
    folder: Path, root: Path, options: TrainingOptions, backbone: LoadedBackbone | None
) -> TuneTime:
    locations = root / "locations"
    with create_project(folder, locations_dir=locations) as project:
        report = import_paths(project, [root / "images"], folders_as_classes=True)
        if report.skipped or report.duplicates:
            raise ConfigError(
                f"the benchmark images did not all import: {len(report.skipped)} skipped, "
                f"{len(report.duplicates)} duplicates"
            )
    start = time.perf_counter()
    first_step: float | None = None
    ready: ProjectDataReady | None = None
    started: RunStarted | None = None
    saved = False
    for event in tune_project(folder, options, backbone=backbone, locations_dir=locations):
        if isinstance(event, ProjectDataReady):
            ready = event
        elif isinstance(event, RunStarted):
            started = event
        elif isinstance(event, StepFinished) and first_step is None:
            first_step = time.perf_counter()
        elif isinstance(event, ProjectTrainingSaved):
            saved = True
    seconds = time.perf_counter() - start
    if ready is None or started is None or first_step is None or not saved:
        raise ConfigError("the timed run did not finish")
    train_images = sum(ready.train_counts.values())
    return TuneTime(
        preset=options.recipe,
        method=options.method,
        train_images=train_images,
        held_out=sum(
            held_out_sizes(list(ready.train_counts.values()), options.hold_out, LabelMode.SINGLE)
        ),
        steps=started.total_steps,
        seconds=seconds,
        setup_seconds=first_step - start,
        device=started.device,
        precision=Precision(options.bf16, started.bf16, started.bf16_reason),
    )


def tune_time_markdown(report: TuneTimeReport) -> str:
    """The table the README quotes: each preset's wait in fp32 and bf16 side by side, bf16 over
    fp32, and each against the budget and the paper preset in the same precision."""
    results = report.results
    lines = [
        f"{report.shots} shots x {report.classes} classes, method "
        f"{results[0].method if results else '-'}, device {results[0].device if results else '-'}.",
        "",
        *_precision_lines(report),
        "",
        "| preset | images (held out) | steps | fp32 wait s | bf16 wait s | bf16 / fp32 "
        "| s/step fp32 / bf16 | setup s fp32 / bf16 | vs 90 s budget fp32 / bf16 "
        "| vs paper preset fp32 / bf16 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    presets = list(dict.fromkeys(r.preset for r in results))
    lines += [_preset_row(report, preset) for preset in presets]
    return "\n".join(lines) + "\n"


def _precision_lines(report: TuneTimeReport) -> list[str]:
    """What each column ran in, and why (the run's own words), and any setting not timed again."""
    lines = []
    for precision in report.plan.timed:
        ran = next(
            (r.precision for r in report.results if r.precision.bf16 == precision.bf16), None
        )
        reason = (ran or precision).reason
        lines.append(f"- {precision.label}: bf16 {precision.setting}, {reason}.")
    for precision in report.plan.not_timed:
        lines.append(
            f"- bf16 {precision.setting} is {precision.label} here ({precision.reason}): not timed "
            "twice."
        )
    return lines


def _preset_row(report: TuneTimeReport, preset: str) -> str:
    fp32, bf16 = report.result(preset, False), report.result(preset, True)
    first = fp32 or bf16
    if first is None:
        raise ConfigError(f"no timed run of the {preset} preset")
    paper32, paper16 = report.result("paper", False), report.result("paper", True)
    ratio = "-" if fp32 is None or bf16 is None else f"{bf16.seconds / fp32.seconds:.2f}"
    cells = [
        preset,
        f"{first.train_images} ({first.held_out})",
        str(first.steps),
        _seconds(fp32, lambda r: r.seconds, "{:.1f}"),
        _seconds(bf16, lambda r: r.seconds, "{:.1f}"),
        ratio,
        _pair(fp32, bf16, lambda r: r.seconds_per_step, "{:.2f}"),
        _pair(fp32, bf16, lambda r: r.setup_seconds, "{:.1f}"),
        _pair(fp32, bf16, lambda r: r.seconds / BUDGET_SECONDS, "{:.2f}"),
        f"{_versus(fp32, paper32)} / {_versus(bf16, paper16)}",
    ]
    return "| " + " | ".join(cells) + " |"


def _seconds(result: TuneTime | None, value: Callable[[TuneTime], float], form: str) -> str:
    return "-" if result is None else form.format(value(result))


def _pair(
    fp32: TuneTime | None,
    bf16: TuneTime | None,
    value: Callable[[TuneTime], float],
    form: str,
) -> str:
    return f"{_seconds(fp32, value, form)} / {_seconds(bf16, value, form)}"


def _versus(result: TuneTime | None, paper: TuneTime | None) -> str:
    return "-" if result is None or paper is None else f"{result.seconds / paper.seconds:.2f}"
