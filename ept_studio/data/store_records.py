"""The plain records the project store takes and returns: enums and frozen dataclasses, no SQL."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any


class LabelMode(str, Enum):
    """One class per image (a new label replaces the old) or any number of classes per image."""

    SINGLE = "single"
    MULTI = "multi"


class Role(str, Enum):
    """Whether a labelled image is used to train the model or held out to test it."""

    TRAIN = "train"
    TEST = "test"


@dataclasses.dataclass(frozen=True)
class Label:
    image_id: int
    class_id: int
    role: Role
    time: str


@dataclasses.dataclass(frozen=True)
class ClassCount:
    """How many images carry a class, per role."""

    class_id: int
    name: str
    train: int
    test: int

    @property
    def total(self) -> int:
        return self.train + self.test


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class ImageStatus(str, Enum):
    """Whether an image's source file is where the project last saw it, with the same content."""

    OK = "ok"
    MISSING = "missing"
    CHANGED = "changed"
    UNREADABLE = "unreadable"


@dataclasses.dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    colour: str
    position: int
    shortcut: str | None


@dataclasses.dataclass(frozen=True)
class NewImage:
    """What an import knows about a new image (identifiers already hashed)."""

    sha256: str
    path: Path
    size: int
    mtime_ns: int
    kind: str
    modality: str | None = None
    rows: int | None = None
    columns: int | None = None
    frames: int = 1
    photometric: str | None = None
    rendering: dict[str, Any] = dataclasses.field(default_factory=dict)
    patient_hash: str | None = None
    study_hash: str | None = None
    burned_in_annotation: bool | None = None
    series_hash: str | None = None
    instance_number: int | None = None


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """An image of the project. ``path`` is None where this machine does not know the file."""

    id: int
    sha256: str
    path: Path | None
    size: int
    mtime_ns: int
    kind: str
    modality: str | None
    rows: int | None
    columns: int | None
    frames: int
    photometric: str | None
    rendering: dict[str, Any]
    patient_hash: str | None
    study_hash: str | None
    burned_in_annotation: bool | None
    status: ImageStatus
    added: str
    series_hash: str | None = None
    instance_number: int | None = None


@dataclasses.dataclass(frozen=True)
class ImageFilter:
    """Which images :meth:`Project.images` lists; unset fields do not filter."""

    status: ImageStatus | None = None
    class_id: int | None = None
    role: Role | None = None
    unlabelled: bool = False


@dataclasses.dataclass(frozen=True)
class RunRecord:
    id: int
    created: str
    finished: str | None
    status: str
    config: dict[str, Any]
    seed: int
    versions: dict[str, Any]
    device: str | None
    backbone: str
    backbone_sha256: str
    metrics: dict[str, Any]
    artifacts: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ExportRecord:
    id: int
    run_id: int | None
    kind: str
    file_name: str
    sha256: str
    created: str
