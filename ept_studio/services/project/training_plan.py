"""What pressing Train will do, said before the press: steps, passes, device, time, and why.

A recipe may change what the user asked for (the few-shot default runs at least 50 steps; the
hold-out needs 5 training images a class): the plan says so in plain words instead of letting it
happen silently. The arithmetic is :mod:`ept_studio.core.run_length`, the same the run uses, and
nothing here imports torch, so the Train tab can show the plan while it is drawn.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ept_studio.core.conformal import minimum_images
from ept_studio.core.hold_out import HOLD_OUT_MINIMUM
from ept_studio.core.run_length import PRESET_LENGTHS, RunLength
from ept_studio.core.temperature import MIN_CALIBRATION_IMAGES
from ept_studio.data.store import LabelMode, Project, Role
from ept_studio.services.model.training_options import SHARE_MINIMUM, TrainingOptions, share_for
from ept_studio.services.project.readiness import class_counts
from ept_studio.services.project.run_timing import estimate_seconds
from ept_studio.services.project.training import (
    TrainingItem,
    TrainingSet,
    support_split,
    test_split,
    training_set,
)


@dataclasses.dataclass(frozen=True)
class TrainingPlan:
    """A run as it will happen with these labels and options (before anything loads)."""

    steps: int
    epochs: int
    epochs_requested: int
    batch_size: int
    train_images: int
    held_out: tuple[int, ...]
    """Training images of each class kept aside to pick the best pass (0s: no hold-out)."""
    device: str
    """``CPU``, ``GPU (NVIDIA H200)`` or ``Apple GPU``."""
    device_kind: str
    """``cpu``, ``cuda`` or ``mps``: what earlier runs are matched on for the time estimate."""
    estimate_s: float
    estimate_basis: str
    notes: tuple[str, ...]

    @property
    def support_images(self) -> int:
        """The images the steps train on: the training images minus those held out."""
        return self.train_images - sum(self.held_out)

    def headline(self) -> str:
        """``52 steps on CPU, about 8 min``."""
        steps = "1 step" if self.steps == 1 else f"{self.steps} steps"
        return f"{steps} on {self.device}, {rough_duration(self.estimate_s)}"


def plan_training(
    project_or_folder: Project | Path,
    options: TrainingOptions,
    *,
    backbone_name: str | None = None,
    gpu_names: Sequence[str] | None = None,
) -> TrainingPlan:
    """The plan for ``options`` on the project's current labels.

    ``backbone_name`` is the backbone the run will load (None: the offline default);
    ``gpu_names`` the NVIDIA GPUs on this machine (None: ask the driver).
    """
    if isinstance(project_or_folder, Project):
        return _plan(project_or_folder, options, backbone_name, gpu_names)
    with Project.open(project_or_folder) as project:
        return _plan(project, options, backbone_name, gpu_names)


def _plan(
    project: Project,
    options: TrainingOptions,
    backbone_name: str | None,
    gpu_names: Sequence[str] | None,
) -> TrainingPlan:
    tset = training_set(project, options.slices_per_series)
    every = class_counts(tset, tset.of_role(Role.TRAIN))
    counts = [n for n in every if n]
    held_items = _held_out(tset, options)
    held = tuple(n for n, c in zip(class_counts(tset, held_items), every, strict=True) if c)
    preset = PRESET_LENGTHS[options.recipe]
    length = RunLength(
        options.epochs or preset.epochs, options.batch_size or preset.batch_size, preset.min_steps
    )
    support = sum(counts) - sum(held)
    device, kind = device_label(options.device, gpu_names)
    steps = length.total_steps(support) if support else 0
    name = backbone_name or _default_backbone_name()
    estimate, basis = estimate_seconds(project, steps, kind, name, options.method)
    notes = [
        *_series_notes(tset),
        *_length_notes(length, support, options.epochs is not None),
        *_hold_out_notes(tset, counts, options, held),
        *_calibration_notes(tset, options, held),
        *_patience_notes(options, held),
        *_bf16_notes(kind),
        *_share_notes(options, tset.smallest_class()),
        *_detail_notes(options, tset.label_mode),
    ]
    return TrainingPlan(
        steps=steps,
        epochs=length.epochs_for(support) if support else 0,
        epochs_requested=length.epochs,
        batch_size=length.batch_size,
        train_images=sum(counts),
        held_out=held,
        device=device,
        device_kind=kind,
        estimate_s=estimate,
        estimate_basis=basis,
        notes=tuple(notes),
    )


def device_label(requested: str, gpu_names: Sequence[str] | None = None) -> tuple[str, str]:
    """(what the user reads, device kind) for the device option, without torch.

    ``auto`` is what :func:`ept_studio.core.device.resolve_device` picks: an NVIDIA GPU when the
    driver reports one, else the Apple GPU on Apple silicon, else the CPU.
    """
    if requested in ("cuda", "auto"):
        if gpu_names is None:
            from ept_studio.core.gpu import nvidia_gpu_names

            gpu_names = nvidia_gpu_names()
        if gpu_names:
            return f"GPU ({gpu_names[0]})", "cuda"
        if requested == "cuda":
            return "GPU", "cuda"
    if requested == "mps" or (requested == "auto" and _apple_silicon()):
        return "Apple GPU", "mps"
    return "CPU", "cpu"


def _apple_silicon() -> bool:
    import platform

    return sys.platform == "darwin" and platform.machine() == "arm64"


def _default_backbone_name() -> str | None:
    from ept_studio.common.errors import EptStudioError
    from ept_studio.services.model.backbone_setup import offline_backbone_status

    with contextlib.suppress(EptStudioError):
        return offline_backbone_status().name
    return None


def _length_notes(length: RunLength, support: int, asked: bool) -> list[str]:
    """What the step floor changes, in the user's words (passes, not epochs)."""
    if not support or length.epochs_for(support) == length.epochs:
        return []
    epochs, steps = length.epochs_for(support), length.total_steps(support)
    passes = "pass" if length.epochs == 1 else "passes"
    planned = length.epochs * length.steps_per_epoch(support)
    start = f"You asked for {length.epochs} {passes}"
    if not asked:
        start = f"The recipe's {length.epochs} {passes} would be {planned} steps"
    return [
        f"{start}; the recipe needs at least {length.min_steps} steps, so it will run "
        f"{epochs} passes ({steps} steps)."
    ]


def _held_out(tset: TrainingSet, options: TrainingOptions) -> list[TrainingItem]:
    """The training images the run will keep aside: the run's own split (whole series), so the
    plan's counts are the run's."""
    pairs = [(item, None) for item in tset.of_role(Role.TRAIN)]
    _, held = support_split(pairs, options.hold_out, options.seed, tset.label_mode)
    return [item for item, _ in held]


def _series_notes(tset: TrainingSet) -> list[str]:
    """How many slices the run takes from long series: ``3 series of 40 slices: 8 slices taken
    from each``."""
    if not tset.thinned:
        return []
    groups = sorted(Counter(tset.thinned).items(), key=lambda group: -group[0][0])
    taken = "; ".join(
        f"{n} series of {slices} slices: {kept} slices taken from each"
        for (slices, kept), n in groups
    )
    return [
        f"{taken} (evenly spaced from first to last), so one series weighs no more than "
        f"{tset.slices_per_series} images; {tset.slices_not_taken} slices are not trained on."
    ]


def _share_notes(options: TrainingOptions, smallest_class: int) -> list[str]:
    """How much of the training the model keeps, when not all of it."""
    asked = options.kept_share()
    if asked is None or asked >= 1.0:
        return []
    share = share_for(asked, smallest_class, SHARE_MINIMUM)
    if share is None:
        return [
            f"The model keeps all of what training learns: 'Keep of what training learned' "
            f"starts at {SHARE_MINIMUM} training images a class, because the class centre of "
            "fewer is a weak anchor."
        ]
    if share == 0.0:
        return [
            "The model keeps none of what training learns: it stays the class-centre "
            "classifier it starts from ('Keep of what training learned': 0 %)."
        ]
    return [
        f"The model keeps {share:.0%} of what training learns, on top of the class-centre "
        "classifier it starts from, so it cannot drift far from that ('Keep of what training "
        "learned')."
    ]


def _detail_notes(options: TrainingOptions, mode: LabelMode) -> list[str]:
    """What the fine-detail check adds, or why it is off although asked for."""
    if not options.detail:
        return []
    if mode is LabelMode.MULTI:
        return [
            "The fine-detail check is off for this project: it averages one-label-per-image "
            "scores, and images here may carry several labels."
        ]
    return [
        "After training, each image is also looked at at twice the size (448 px with the "
        "offline backbone), against the class centres of the training images there, and the two "
        "opinions are averaged: fine texture counts. Scoring an image then takes about 5 times "
        "as long ('Also check fine detail')."
    ]


def _hold_out_notes(
    tset: TrainingSet, counts: Sequence[int], options: TrainingOptions, held: Sequence[int]
) -> list[str]:
    """Why the hold-out is off when the user asked for it, or what it keeps aside."""
    if not options.hold_out or not counts:
        return []
    if tset.label_mode is LabelMode.MULTI:
        return ["Hold-out for picking the best pass is off: it needs single-label classes."]
    if not any(held):
        firsts: dict[str, TrainingItem] = {}
        for item in tset.of_role(Role.TRAIN):
            firsts.setdefault(item.unit, item)  # a series counts once, as its first slice
        train = class_counts(tset, list(firsts.values()))
        short = [
            f"{name} has {n}"
            for name, n in zip(tset.classes, train, strict=True)
            if 0 < n < HOLD_OUT_MINIMUM
        ]
        series = " (a series counts as one)" if len(firsts) < sum(counts) else ""
        return [
            "Hold-out for picking the best pass is off: every class needs "
            f"{HOLD_OUT_MINIMUM} training images{series} ({', '.join(short)})."
        ]
    note = f"{sum(held)} training images are kept aside to pick the best pass"
    if options.patience:
        note += f"; training stops early after {options.patience} passes without improvement"
    return [note + "."]


def _calibration_notes(
    tset: TrainingSet, options: TrainingOptions, held: Sequence[int]
) -> list[str]:
    """Whether the run's scores will be calibrated and get prediction sets, and on which images:
    known before the run, so said before it."""
    if options.calibrate_on_test:
        test = [(item, None) for item in tset.of_role(Role.TEST)]
        count = len(test_split(test, True, options.seed)[0])
        images = f"{count} test images (half of each class's)"
        fix = "Add test images or untick 'Calibrate on half of the test images'."
    else:
        count = sum(held)
        images = f"{count} held-out images"
        fix = "Tick 'Calibrate on half of the test images' or add training images."
    if count < MIN_CALIBRATION_IMAGES:
        few = f"only {images}" if count else "no " + images.split(" ", 1)[1]
        return [
            f"Scores will not be calibrated, so there will be no prediction sets: {few}, and at "
            f"least {MIN_CALIBRATION_IMAGES} are needed. {fix}"
        ]
    percent = f"{options.coverage * 100:.0f} %"
    note = f"{images} will calibrate the scores and make {percent} prediction sets"
    if options.calibrate_on_test:
        note += "; they are not scored as test images"
    needed = minimum_images(options.coverage)
    if count < needed:
        note += f". With fewer than {needed} calibration images the {percent} cannot be promised"
    return [note[0].upper() + note[1:] + "."]


def _patience_notes(options: TrainingOptions, held: Sequence[int]) -> list[str]:
    """Stopping early is judged on the held-out images: without them the setting does nothing,
    and the plan says so rather than leaving it silently ignored."""
    if not options.patience or any(held):
        return []
    stop = f"Stopping early after {options.patience} passes without improvement is off"
    if not options.hold_out:
        return [f"{stop}: it needs 'Keep a fifth aside' ticked."]
    return [f"{stop} too: it is judged on the held-out images."]


def _bf16_notes(kind: str) -> list[str]:
    """Whether the run will train in bfloat16, where that is in question: an NVIDIA GPU, or a CPU
    with AVX512-BF16 or AMX (from the check cached on this machine; it runs when training starts
    if it has not run yet). Nothing for other CPUs and the Apple GPU: they train in float32."""
    if kind == "cuda":
        return ["bfloat16 is decided when training starts: on if the NVIDIA GPU supports it."]
    if kind != "cpu":
        return []
    from ept_studio.core.bf16 import planned_cpu_decision, read_cpuinfo

    cpu = read_cpuinfo()
    if not cpu.bf16_flags:
        return []
    decision = planned_cpu_decision()
    if decision is None:
        return [
            f"bfloat16 is decided when training starts: this CPU has {cpu.flag_names()}, and a "
            "check of a few seconds, run once on this machine, times it against float32."
        ]
    return [f"bfloat16 {decision.reason}."]


def rough_duration(seconds: float) -> str:
    """``about 40 s``, ``about 8 min``, ``about 1 h 05 min``: a forecast, not a countdown."""
    if seconds < 60:
        return f"about {max(5, round(seconds / 5) * 5)} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes:02d} min"
