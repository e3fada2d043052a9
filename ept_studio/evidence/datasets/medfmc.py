"""MedFMC (Wang et al., Scientific Data 2023) from a user's own copy: ChestDR, ColonPath, Endo.

MedFMC cannot be bundled: its owners hand it out on request. Point this loader at your copy: a
folder holding ``chest/``, ``colon/`` and ``endo/`` (or one of them directly), each with its images
(in ``images/`` or beside the lists) and the release's list files:

- few-shot support lists ``<task>_<K>-shot_train_exp<Y>.txt`` (K in 1, 5, 10; Y in 1..5),
- the labelled test list ``test_WithLabel.txt``.

A list line is an image name then its label: ``name.png 0,1,0,...`` (ChestDR, 19 labels),
``name.png 1`` (ColonPath: 0 non-tumour, 1 tumour) or ``name.png 0 1 0 0`` (Endo, 4 labels); commas
and spaces both separate values. The ``..._val_exp<Y>.txt`` lists are not used: the paper's recipe
trains for a fixed 20 epochs. The paper's protocol is the 5 splits x 4 seeds per K.

Reports never name the files (MedFMC names can carry study numbers): images are counted, not listed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ept_studio.common.errors import DatasetError
from ept_studio.data.images import decode_image
from ept_studio.evidence.datasets.base import (
    DatasetCard,
    DatasetSample,
    Label,
    LabelledDataset,
    LabelModeName,
    SkippedSource,
)

CHEST_CLASSES = (
    "pleural_effusion",
    "nodule",
    "pneumonia",
    "cardiomegaly",
    "hilar_enlargement",
    "fracture_old",
    "fibrosis",
    "aortic_calcification",
    "tortuous_aorta",
    "thickened_pleura",
    "TB",
    "pneumothorax",
    "emphysema",
    "atelectasis",
    "calcification",
    "pulmonary_edema",
    "increased_lung_markings",
    "elevated_diaphragm",
    "consolidation",
)
TEST_LIST = "test_WithLabel.txt"
SHOTS = (1, 5, 10)
EXPERIMENTS = (1, 2, 3, 4, 5)
_SEPARATORS = re.compile(r"[,\s]+")


@dataclasses.dataclass(frozen=True)
class MedfmcTask:
    """One MedFMC task: its folder name, label mode and class names."""

    key: str
    title: str
    label_mode: LabelModeName
    class_names: tuple[str, ...]
    metric: str


TASKS: dict[str, MedfmcTask] = {
    "chest": MedfmcTask("chest", "ChestDR", "multi", CHEST_CLASSES, "mAP"),
    "colon": MedfmcTask("colon", "ColonPath", "single", ("non_tumor", "tumor"), "accuracy"),
    "endo": MedfmcTask("endo", "Endo", "multi", ("ulcer", "erosion", "polyp", "tumor"), "mAP"),
}

PAPER_TABLE1: dict[str, dict[str, tuple[float, float, float]]] = {
    "full": {
        "chest": (10.61, 11.16, 11.99),
        "colon": (63.90, 77.02, 83.85),
        "endo": (14.05, 15.66, 17.57),
    },
    "linear": {
        "chest": (11.93, 14.88, 16.75),
        "colon": (70.24, 81.22, 85.23),
        "endo": (15.60, 20.18, 21.30),
    },
    "lora": {
        "chest": (12.30, 15.66, 17.40),
        "colon": (71.91, 81.69, 84.88),
        "endo": (16.01, 20.12, 21.37),
    },
    "vpt": {
        "chest": (12.15, 14.88, 17.54),
        "colon": (74.44, 82.15, 86.25),
        "endo": (17.60, 21.27, 22.89),
    },
    "adapter": {
        "chest": (12.11, 15.32, 17.36),
        "colon": (73.79, 83.03, 85.52),
        "endo": (16.86, 22.51, 24.95),
    },
    "ept": {
        "chest": (12.73, 16.16, 18.09),
        "colon": (75.31, 83.34, 87.23),
        "endo": (17.66, 22.80, 25.07),
    },
}
"""Zu et al. 2024, Table 1 (ViT-B/16 in21k; percent; 1 / 5 / 10-shot; Chest and Endo mAP, Colon
accuracy). The paper has no Bias row; EPT Studio has no Adapter."""


@dataclasses.dataclass(frozen=True)
class MedfmcSplit:
    """One support list of the release: ``support`` indexes the dataset's samples."""

    shots: int
    experiment: int
    support: tuple[int, ...]


@dataclasses.dataclass(frozen=True, eq=False)
class MedfmcData:
    """A task's images (support lists and test list together), its test set and its splits."""

    task: MedfmcTask
    dataset: LabelledDataset
    test: tuple[int, ...]
    splits: tuple[MedfmcSplit, ...]


def task_folder(root: Path, task: MedfmcTask) -> Path:
    """``root/<task>`` if it exists, else ``root`` itself when it holds the task's test list."""
    for candidate in (root / task.key, root):
        if (candidate / TEST_LIST).is_file():
            return candidate
    raise DatasetError(
        f"no MedFMC {task.title} test list ({task.key}/{TEST_LIST}) under {root}: point --medfmc "
        "at the folder holding chest/, colon/ and endo/ from the MedFMC release"
    )


def load_medfmc(
    root: Path,
    task_key: str,
    shots: tuple[int, ...] = SHOTS,
    experiments: tuple[int, ...] = EXPERIMENTS,
) -> MedfmcData:
    """Read one task's lists; images load lazily. Missing split lists are noted, not fatal."""
    if task_key not in TASKS:
        raise DatasetError(f"unknown MedFMC task {task_key!r}: choose chest, colon or endo")
    task = TASKS[task_key]
    folder = task_folder(Path(root), task)
    images = folder / "images" if (folder / "images").is_dir() else folder
    index = _SampleIndex(task, images)
    test = index.add_list(folder / TEST_LIST)
    splits: list[MedfmcSplit] = []
    notes: list[str] = []
    for k in shots:
        for experiment in experiments:
            path = folder / f"{task.key}_{k}-shot_train_exp{experiment}.txt"
            if path.is_file():
                splits.append(MedfmcSplit(k, experiment, index.add_list(path)))
            else:
                notes.append(f"no support list for {k}-shot split {experiment} ({path.name})")
    if not splits:
        raise DatasetError(
            f"no few-shot support lists ({task.key}_K-shot_train_expY.txt) in {folder}"
        )
    overlap = set(test) & {i for split in splits for i in split.support}
    if overlap:
        notes.append(f"{len(overlap)} test images also appear in a support list")
    dataset = index.dataset(notes)
    return MedfmcData(task, dataset, tuple(test), tuple(splits))


class _SampleIndex:
    """Image names to sample indices; each image becomes one sample the first time it is listed."""

    def __init__(self, task: MedfmcTask, images: Path) -> None:
        self.task, self.images = task, images
        self.positions: dict[str, int] = {}
        self.samples: list[DatasetSample] = []
        self.skipped: list[SkippedSource] = []

    def add_list(self, path: Path) -> tuple[int, ...]:
        indices: list[int] = []
        for name, label in parse_list(path, self.task):
            if name not in self.positions:
                image = self.images / name
                if not image.is_file():
                    self.skipped.append(SkippedSource(f"{path.name}: an image", "file missing"))
                    continue
                self.positions[name] = len(self.samples)
                number = len(self.samples) + 1
                self.samples.append(
                    DatasetSample(
                        label, name, f"MedFMC {self.task.title} image {number}", _reader(image)
                    )
                )
            indices.append(self.positions[name])
        return tuple(indices)

    def dataset(self, notes: list[str]) -> LabelledDataset:
        card = DatasetCard(
            name=f"medfmc-{self.task.key}",
            title=f"MedFMC {self.task.title} (your local copy)",
            source="MedFMC (Wang et al., Sci. Data 2023), distributed by its owners on request",
            licence="as granted to you by the MedFMC data owners",
            labels=f"The release's list files ({TEST_LIST}, few-shot train lists)",
            limits="Official splits; results depend on the backbone (the paper used ViT-B/16 in21k).",
        )
        return LabelledDataset(
            card,
            self.task.class_names,
            self.task.label_mode,
            tuple(self.samples),
            tuple(self.skipped),
            tuple(notes),
        )


def parse_list(path: Path, task: MedfmcTask) -> list[tuple[str, Label]]:
    """``(image name, label)`` per non-empty line; a malformed line is an error naming the line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read the MedFMC list {path}: {err}") from err
    entries: list[tuple[str, Label]] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            entries.append(_parse_line(line, task, f"{path.name} line {number}"))
    return entries


def _parse_line(line: str, task: MedfmcTask, where: str) -> tuple[str, Label]:
    name, _, rest = line.strip().partition(" ")
    values = [v for v in _SEPARATORS.split(rest.strip()) if v]
    try:
        numbers = [int(float(v)) for v in values]
    except ValueError as err:
        raise DatasetError(f"{where}: labels must be numbers, got {rest.strip()!r}") from err
    classes = len(task.class_names)
    if task.label_mode == "single":
        if len(numbers) != 1 or not 0 <= numbers[0] < classes:
            raise DatasetError(f"{where}: expected one class index 0..{classes - 1}, got {rest!r}")
        return name, numbers[0]
    if len(numbers) != classes or any(n not in (0, 1) for n in numbers):
        raise DatasetError(f"{where}: expected {classes} labels of 0 or 1, got {rest.strip()!r}")
    return name, tuple(numbers)


def _reader(path: Path) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        return decode_image(path)

    return read
