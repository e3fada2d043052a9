"""``ept-studio bench tune-time``: how long the app's Train takes on K shots x C classes.

It writes K images of each of C classes from the offline datasets (the textile classes, then faces
and non-faces) as PNG into a temporary folder, imports them into a fresh project with folders as
classes, and runs the Train tab's own options (:class:`TrainingOptions` with the preset changed
only) through :func:`tune_project`, as the app's worker does. The clock runs from the call to the
saved run: rendering, the backbone load, the hold-out split, the prototype head, every step and
held-out check, and writing the prompt file. The pixels do not change the time; the count does.

The same-run baseline is the ``paper`` preset on the same project: the figure to read is the
default's seconds against the 90 s budget (:data:`BUDGET_SECONDS`), and its ratio to the paper
recipe.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
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

    @property
    def seconds_per_step(self) -> float:
        return (self.seconds - self.setup_seconds) / max(self.steps, 1)


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
    backbone: LoadedBackbone | None = None,
) -> list[TuneTime]:
    """Time the app's Train once per preset, each on a fresh project of the same images."""
    results = []
    with tempfile.TemporaryDirectory(prefix="ept-tune-time-") as temporary:
        root = Path(temporary)
        write_support_folder(root / "images", shots, classes)
        for preset in presets:
            options = TrainingOptions(method=method, recipe=preset, device=device)
            results.append(_timed_run(root / f"project-{preset}", root, options, backbone))
    return results


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
    )


def tune_time_markdown(results: Sequence[TuneTime], shots: int, classes: int) -> str:
    """The table the README quotes: each preset's wait, against the budget and the paper preset."""
    paper = next((r for r in results if r.preset == "paper"), None)
    lines = [
        f"{shots} shots x {classes} classes, method {results[0].method if results else '-'}, "
        f"device {results[0].device if results else '-'}.",
        "",
        "| preset | images (held out) | steps | wait s | setup s | s/step | vs 90 s budget "
        "| vs paper preset |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        versus = "-" if paper is None else f"{r.seconds / paper.seconds:.2f}"
        lines.append(
            f"| {r.preset} | {r.train_images} ({r.held_out}) | {r.steps} | {r.seconds:.1f} "
            f"| {r.setup_seconds:.1f} | {r.seconds_per_step:.2f} "
            f"| {r.seconds / BUDGET_SECONDS:.2f} | {versus} |"
        )
    return "\n".join(lines) + "\n"
