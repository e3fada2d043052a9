"""One file per finished run of ``bench accuracy``: what lets a sweep resume, on one machine or a
Ray cluster.

Each run (method, K, draw, seed) is saved as ``<out>/runs/<method>-k<K>-d<draw>-s<seed>.json`` as
soon as it finishes, written whole (a ``.partial`` file, then a rename). A run file carries the
sweep's fingerprint (every setting that changes a run's numbers, and the backbone's sha256): a
later sweep into the same folder skips the runs whose file has its fingerprint and runs the rest
(again).
The results table is always assembled from these files, in the plan's order, so a serial sweep, a
Ray sweep and a resumed sweep write the same numbers.

The arrays (scores, targets, logits) are kept exactly, with their dtype; the files hold no image
names or paths (no PHI).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ept_studio.common.files import atomic_write_text

if TYPE_CHECKING:
    from ept_studio.evidence.protocol import EpisodeResult

RUN_FORMAT = "ept-studio-accuracy-run/1"
RUNS_FOLDER = "runs"

_NOT_FINGERPRINTED = ("out", "command", "shots", "draws", "seeds", "methods", "resamples")
"""Request fields that change no run's numbers: where it is written, how it was typed, which runs
are planned (each run is seeded by its own K, draw and seed number) and the summaries' bootstrap.
A sweep that adds a K, draws, seeds or methods reuses the runs it shares with an earlier one."""


@dataclasses.dataclass(frozen=True, order=True)
class RunKey:
    """Which run: a method on draw ``draw`` of K = ``shots`` with seed number ``seed_index``."""

    method: str
    shots: int
    draw: int
    seed_index: int

    @property
    def file_name(self) -> str:
        return f"{self.method}-k{self.shots}-d{self.draw}-s{self.seed_index}.json"

    def __str__(self) -> str:
        return f"{self.method} K={self.shots} draw {self.draw} seed {self.seed_index}"


def sweep_fingerprint(request: Any, backbone_sha256: str, *, whole_plan: bool = False) -> str:
    """A sha256 over every setting of ``request`` (an
    :class:`~ept_studio.evidence.accuracy.AccuracyRequest`) that changes a run's numbers, and the
    backbone;
    ``whole_plan``: over every setting that changes the plan too (all but ``out`` and
    ``command``)."""
    left_out = _NOT_FINGERPRINTED[:2] if whole_plan else _NOT_FINGERPRINTED
    settings = {
        field.name: getattr(request, field.name)
        for field in dataclasses.fields(request)
        if field.name not in left_out
    }
    settings["backbone_sha256"] = backbone_sha256
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def run_record(key: RunKey, fingerprint: str, result: EpisodeResult) -> dict[str, Any]:
    """A finished run as plain data (what a Ray task sends back and a run file holds)."""
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(result)}
    for name in ("probabilities", "targets", "logits"):
        fields[name] = _array_dict(fields[name])
    fields["classes"] = list(result.classes)
    return {
        "format": RUN_FORMAT,
        "fingerprint": fingerprint,
        "key": dataclasses.asdict(key),
        "result": fields,
    }


def episode_result(record: Mapping[str, Any]) -> EpisodeResult:
    """The :class:`EpisodeResult` a run record holds, arrays and all."""
    from ept_studio.evidence.protocol import EpisodeResult

    fields = dict(record["result"])
    for name in ("probabilities", "targets", "logits"):
        fields[name] = _array(fields[name])
    fields["classes"] = tuple(fields["classes"])
    fields["metrics"] = {k: math.nan if v is None else v for k, v in fields["metrics"].items()}
    return EpisodeResult(**fields)


def save_run(out: Path, key: RunKey, record: Mapping[str, Any]) -> Path:
    """Write one run's file whole (NaN is kept as JSON's ``NaN`` token: the file is read back
    by :func:`finished_runs` only)."""
    path = out / RUNS_FOLDER / key.file_name
    return atomic_write_text(path, json.dumps(record, sort_keys=True) + "\n", "run file")


def finished_runs(
    out: Path, fingerprint: str, keys: Iterable[RunKey]
) -> dict[RunKey, dict[str, Any]]:
    """The runs of ``keys`` already in ``out`` for this fingerprint; a file that cannot be read,
    or belongs to another sweep, counts as not run."""
    found: dict[RunKey, dict[str, Any]] = {}
    for key in keys:
        path = out / RUNS_FOLDER / key.file_name
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            isinstance(record, dict)
            and record.get("format") == RUN_FORMAT
            and record.get("fingerprint") == fingerprint
            and record.get("key") == dataclasses.asdict(key)
        ):
            found[key] = record
    return found


def _array_dict(values: np.ndarray | None) -> dict[str, Any] | None:
    if values is None:
        return None
    array = np.asarray(values)
    return {"dtype": str(array.dtype), "shape": list(array.shape), "values": array.ravel().tolist()}


def _array(stored: Mapping[str, Any] | None) -> np.ndarray | None:
    if stored is None:
        return None
    flat = np.asarray(stored["values"], dtype=np.dtype(stored["dtype"]))
    return flat.reshape(tuple(stored["shape"]))
