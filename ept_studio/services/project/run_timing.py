"""How long a training step takes here: from this project's finished runs, else a rough figure.

The Train tab's "52 steps on CPU, about 1 min" multiplies the planned steps by seconds a step.
Earlier finished runs of the project on the same kind of device and the same backbone are the best
guide (their run records hold the training time and the passes run; the method too, when a run
of the same method exists). Without one, a per-backbone figure stands in, said to be rough.
"""

from __future__ import annotations

import math

from ept_studio.common.errors import RunRecordError
from ept_studio.data.store import Project, RunRecord
from ept_studio.services.model.run_record import read_run_record
from ept_studio.services.project.training import RUN_RECORD_NAME

FALLBACK_SECONDS_PER_STEP: dict[tuple[str, str], float] = {
    ("dinov2-vits14-imgfocus", "cpu"): 1.2,
    ("dinov2-vits14-imgfocus", "cuda"): 0.05,
    ("dinov2-vits14-imgfocus", "mps"): 0.3,
}
"""Seconds an EPT step takes (batch 4, validation included) for a backbone on a kind of device.
The CPU figure is the measured 1.16 s a step on 2 CPU cores (resources/evidence/sweep/
tune-time.md); the GPU and Apple GPU figures are guesses from the model's size."""

GENERIC_SECONDS_PER_STEP = {"cpu": 4.0, "cuda": 0.1, "mps": 1.0}
"""A ViT-B/16 step, four times a ViT-S/14's work: for backbones without a figure of their own."""

RUNS_CONSIDERED = 5
"""The latest matching runs averaged: recent enough to reflect this machine as it is now."""


def estimate_seconds(
    project: Project, steps: int, device_kind: str, backbone: str | None, method: str
) -> tuple[float, str]:
    """(seconds for ``steps`` steps, what the figure is based on)."""
    per_step, basis = _from_runs(project, device_kind, backbone, method)
    if per_step is None:
        per_step, basis = _fallback(device_kind, backbone)
    return per_step * steps, basis


def device_kind_of(described: str | None) -> str | None:
    """``cpu``, ``mps`` or ``cuda`` for a run's recorded device (``CPU (2 threads)``, ...)."""
    if not described:
        return None
    if described.startswith("CPU"):
        return "cpu"
    return "mps" if described.startswith("Apple GPU") else "cuda"


def _from_runs(
    project: Project, device_kind: str, backbone: str | None, method: str
) -> tuple[float | None, str]:
    matching = [
        run
        for run in project.runs()
        if run.status == "finished"
        and device_kind_of(run.device) == device_kind
        and (backbone is None or run.backbone == backbone)
    ]
    same_method = [r for r in matching if _method_key(r.config) == method]
    runs = (same_method or matching)[-RUNS_CONSIDERED:]
    timings = [t for t in (_timing(project, run) for run in runs) if t is not None]
    seconds = sum(s for s, _ in timings)
    steps = sum(n for _, n in timings)
    if not steps:
        return None, ""
    per_step = seconds / steps
    which = "run" if len(timings) == 1 else "runs"
    return per_step, (
        f"Based on {len(timings)} earlier {which} of this project on this kind of device "
        f"({per_step:.2g} s a step). Loading the images and the backbone adds a little."
    )


def _fallback(device_kind: str, backbone: str | None) -> tuple[float, str]:
    known = FALLBACK_SECONDS_PER_STEP.get((backbone or "", device_kind))
    per_step = known if known is not None else GENERIC_SECONDS_PER_STEP[device_kind]
    return per_step, (
        f"A rough estimate: about {per_step:g} s a step for "
        f"{'this backbone' if known is not None else 'a ViT-B backbone'} on this kind of "
        "device. No finished run of this project to time yet; the first run also loads the "
        "backbone."
    )


def _method_key(config: dict[str, object]) -> str | None:
    """The Train tab's method key (``ept``, ``ept-add``, ``linear``) of a recorded run config."""
    method = config.get("method")
    if not isinstance(method, dict):
        return None
    name = str(method.get("method"))
    embedding = method.get("embedding")
    if name == "ept" and embedding not in (None, "pure_cat"):
        return f"ept-{embedding}"
    return name


def _timing(project: Project, run: RunRecord) -> tuple[float, int] | None:
    """(seconds, steps) of a finished run from its run record; None when it cannot be read."""
    try:
        record = read_run_record(project.run_dir(run.id) / RUN_RECORD_NAME)
        support = len(record.data.train) - record.training.validation_size
        batch = int(record.recipe["batch_size"])
        steps = record.training.epochs_run * math.ceil(support / batch)
        seconds = record.training.elapsed_s
    except (RunRecordError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    if steps <= 0 or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds, steps
