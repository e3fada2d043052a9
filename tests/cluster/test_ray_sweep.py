"""``bench accuracy --ray`` on a local two-CPU Ray: the same table as the serial sweep, a killed
worker loses no finished run, a failed task is tried again, and the rerun runs only what is
missing."""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray_hooks import dying_backbone, tiny_backbone

from ept_studio.evidence.accuracy import (
    AccuracyPlanned,
    AccuracyRequest,
    AccuracySaved,
    EpisodeDone,
    run_accuracy,
)
from ept_studio.evidence.ray_sweep import EpisodeFailed, SweepIncomplete, run_accuracy_on_ray
from ept_studio.evidence.sweep_runs import RUNS_FOLDER

HERE = Path(__file__).parent


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    paths = os.pathsep.join([str(HERE), str(HERE.parent)])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": paths}},
    )
    yield
    ray.shutdown()


def request(out: Path, shots: tuple[int, ...] = (1, 2)) -> AccuracyRequest:
    """Four runs (ept and linear at K = 1 and 2) on 16 face / non-face query images each."""
    return AccuracyRequest(
        out=out,
        dataset="lfw-faces",
        shots=shots,
        draws=1,
        seeds=1,
        methods=("ept", "linear"),
        recipe={"epochs": 2, "lr": 0.05, "device": "cpu", "bf16": "off"},
        queries_per_class=8,
        calibration_resplits=20,
    )


def comparable(folder: Path) -> tuple[dict[str, Any], str]:
    """results.json and results.md without what the clock measured (wall and training times)."""
    document = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    del document["wall_seconds"], document["machine"]
    for run in document["runs"]:
        del run["train_seconds"]
    for summary in document["summaries"]:
        del summary["train_seconds_mean"]
    markdown = (folder / "results.md").read_text(encoding="utf-8")
    markdown = re.sub(r"^- Machine: .*$", "", markdown, flags=re.MULTILINE)
    markdown = re.sub(r"\| [\d.]+ \| ([\d,]+) \|$", r"| s | \1 |", markdown, flags=re.MULTILINE)
    return document, markdown


@pytest.fixture(scope="module")
def serial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serial")
    events = list(run_accuracy(request(out), backbone=tiny_backbone()))
    assert isinstance(events[-1], AccuracySaved)
    return out


def test_a_ray_sweep_writes_the_serial_sweeps_results(serial: Path, tmp_path: Path) -> None:
    events = list(run_accuracy_on_ray(request(tmp_path), "local", backbone=tiny_backbone))
    assert isinstance(events[-1], AccuracySaved)
    done = [e for e in events if isinstance(e, EpisodeDone)]
    assert len(done) == 4
    assert sorted(p.name for p in (tmp_path / RUNS_FOLDER).iterdir()) == [
        "ept-k1-d0-s0.json",
        "ept-k2-d0-s0.json",
        "linear-k1-d0-s0.json",
        "linear-k2-d0-s0.json",
    ]
    ray_document, ray_markdown = comparable(tmp_path)
    serial_document, serial_markdown = comparable(serial)
    assert ray_document == serial_document
    assert ray_markdown == serial_markdown
    accuracies = [run["metrics"]["accuracy"] for run in ray_document["runs"]]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    assert "| ept | 1 | 1 |" in ray_markdown


def test_a_killed_worker_loses_no_finished_run_and_the_rerun_runs_only_the_missing(
    serial: Path, tmp_path: Path
) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    out = tmp_path / "out"
    dies = functools.partial(dying_backbone, calls, 3, os.getpid())
    events = list(run_accuracy_on_ray(request(out), "local", backbone=dies, retries=0))
    failed = [e for e in events if isinstance(e, EpisodeFailed)]
    assert len(failed) == 1
    assert "died" in failed[0].reason.lower() or "crash" in failed[0].reason.lower()
    end = events[-1]
    assert isinstance(end, SweepIncomplete)
    assert (end.finished, end.total) == (3, 4)
    assert len([e for e in events if isinstance(e, EpisodeDone)]) == 3
    assert len(list((out / RUNS_FOLDER).glob("*.json"))) == 3
    assert not (out / "results.json").exists()

    again = list(run_accuracy_on_ray(request(out), "local", backbone=tiny_backbone))
    planned = again[0]
    assert isinstance(planned, AccuracyPlanned)
    assert (planned.runs, planned.finished) == (4, 3)
    rerun = [e for e in again if isinstance(e, EpisodeDone)]
    assert [(e.method, e.shots) for e in rerun] == [(failed[0].run.split()[0], rerun[0].shots)]
    assert isinstance(again[-1], AccuracySaved)
    assert comparable(out) == comparable(serial)


def test_a_task_whose_worker_dies_is_tried_again(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    calls.mkdir()
    dies = functools.partial(dying_backbone, calls, 1, os.getpid())
    events = list(run_accuracy_on_ray(request(tmp_path, (1,)), "local", backbone=dies, retries=1))
    assert not [e for e in events if isinstance(e, EpisodeFailed)]
    assert isinstance(events[-1], AccuracySaved)
    assert len(list(calls.iterdir())) == 3  # two runs, one of them twice
    assert len(list((tmp_path / RUNS_FOLDER).glob("*.json"))) == 2


def test_a_serial_sweep_resumes_from_the_ray_sweeps_runs(serial: Path, tmp_path: Path) -> None:
    list(run_accuracy_on_ray(request(tmp_path, (1,)), "local", backbone=tiny_backbone))
    events = list(run_accuracy(request(tmp_path), backbone=tiny_backbone()))
    planned = events[0]
    assert isinstance(planned, AccuracyPlanned)
    assert planned.finished == 2
    assert [(e.method, e.shots) for e in events if isinstance(e, EpisodeDone)] == [
        ("ept", 2),
        ("linear", 2),
    ]
    assert comparable(tmp_path) == comparable(serial)
