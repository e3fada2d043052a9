"""``ept-studio bench accuracy --ray``: the protocol's runs as Ray tasks, one per (method, K,
draw, seed).

Every node rebuilds the same seeded plan from the request (its data must be readable there: the
built-in datasets come with the ``evidence`` extra, a MedFMC folder must be at the same path) and
loads the same backbone; a task trains one run with
:func:`~ept_studio.evidence.accuracy.run_sweep_episode`, the function the serial sweep calls, and
sends back its run record. This process writes each record to the results folder as it arrives
(:mod:`ept_studio.evidence.sweep_runs`), so a sweep stopped by a crash or a lost node resumes
where it stopped, and assembles the same ``results.json`` and table as a serial sweep.

A task that fails (its worker died, its node was lost, an error) is tried again up to ``retries``
times; a run still failing then is reported as :class:`EpisodeFailed`, the sweep ends with
:class:`SweepIncomplete` instead of writing results, and the finished runs stay saved.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ept_studio.evidence.accuracy import (
    AccuracyRequest,
    PreparedSweep,
    prepare_sweep,
    run_sweep_episode,
    save_sweep,
)
from ept_studio.evidence.sweep_runs import RunKey, finished_runs, save_run, sweep_fingerprint

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone

BackboneLoader = Callable[[], "LoadedBackbone"]
"""Loads the sweep's backbone where it is called (on each node); sent to the tasks, so it must be
importable there (a module-level function, a ``functools.partial`` of one, or a dataclass)."""

DEFAULT_RETRIES = 2


@dataclasses.dataclass(frozen=True)
class EpisodeFailed:
    """A run that failed on every try; ``reason`` is the last try's error in one line."""

    run: str
    reason: str


@dataclasses.dataclass(frozen=True)
class SweepIncomplete:
    """The sweep ended with failed runs: no results were written; ``finished`` runs are saved."""

    failed: tuple[EpisodeFailed, ...]
    finished: int
    total: int


@dataclasses.dataclass(frozen=True)
class ManifestBackbone:
    """A manifest backbone (``None``: the default), loaded once per worker process."""

    name: str | None = None
    weights: Path | None = None
    img_size: int | None = None

    def __call__(self) -> LoadedBackbone:
        from ept_studio.core.backbones import load_backbone

        if self not in _BACKBONES:
            if len(_BACKBONES) > 1:  # a sweep needs at most two: its backbone and the detail view
                _BACKBONES.clear()
            _BACKBONES[self] = load_backbone(
                self.name, weights=self.weights, img_size=self.img_size
            )
        return _BACKBONES[self]


_BACKBONES: dict[ManifestBackbone, LoadedBackbone] = {}
_SWEEPS: dict[str, PreparedSweep] = {}


def run_accuracy_on_ray(
    request: AccuracyRequest,
    address: str,
    backbone: BackboneLoader | None = None,
    retries: int = DEFAULT_RETRIES,
) -> Iterator[object]:
    """The events of :func:`~ept_studio.evidence.accuracy.run_accuracy` (``EpisodeDone`` in the
    order runs finish), plus :class:`EpisodeFailed` per failed run and :class:`SweepIncomplete`
    in place of ``AccuracySaved`` when any failed. ``address``: see
    :mod:`ept_studio.services.model.cluster`."""
    from ept_studio.services.model import connect_ray, gpus_per_task

    start = time.perf_counter()
    ray = connect_ray(address)
    sweep = prepare_sweep(request)
    loader = backbone or ManifestBackbone(
        request.backbone, request.backbone_weights, request.input_size
    )
    loaded = loader()
    fingerprint = sweep_fingerprint(request, loaded.weights_sha256)
    records = finished_runs(request.out, fingerprint, sweep.keys)
    missing = [key for key in sweep.keys if key not in records]
    yield sweep.planned(len(records))
    task = ray.remote(_run_on_worker).options(
        num_cpus=1,
        num_gpus=gpus_per_task(ray),
        max_retries=retries,
        retry_exceptions=True,
    )
    pending = {task.remote(request, key, loader): key for key in missing}
    failed: list[EpisodeFailed] = []
    done = 0
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except ray.exceptions.RayError as err:
                failed.append(EpisodeFailed(str(key), _one_line(err)))
                yield failed[-1]
                continue
            if record["fingerprint"] != fingerprint:
                failed.append(EpisodeFailed(str(key), _OTHER_BACKBONE))
                yield failed[-1]
                continue
            save_run(request.out, key, record)
            records[key] = record
            done += 1
            elapsed = time.perf_counter() - start
            yield sweep.episode_done(record, done, len(missing), elapsed)
    finally:  # also when the caller stops early: nothing keeps running on the cluster
        for ref in pending:
            ray.cancel(ref, force=True)
    if failed:
        yield SweepIncomplete(tuple(failed), len(records), len(sweep.keys))
        return
    yield save_sweep(sweep, loaded, records, start)


_OTHER_BACKBONE = (
    "the node that ran it has other backbone weights than this computer (a different sha256): "
    "give every node the same weights file"
)


def _run_on_worker(
    request: AccuracyRequest, key: RunKey, backbone: BackboneLoader
) -> dict[str, Any]:
    """One Ray task: the run's record (the plan is rebuilt once per worker process)."""
    plan_id = sweep_fingerprint(request, "", whole_plan=True)
    if plan_id not in _SWEEPS:
        _SWEEPS.clear()
        _SWEEPS[plan_id] = prepare_sweep(request)
    detail = (
        None
        if request.detail_size is None
        else ManifestBackbone(request.backbone, request.backbone_weights, request.detail_size)()
    )
    return run_sweep_episode(_SWEEPS[plan_id], key, backbone(), detail=detail)


def _one_line(err: BaseException) -> str:
    """The error's cause in one line: its type and first line (a Ray error's traceback dropped)."""
    cause = getattr(err, "cause", None)
    shown = cause if isinstance(cause, BaseException) else err
    lines = [line.strip() for line in str(shown).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    return f"{type(shown).__name__}: {text}"[:300]
