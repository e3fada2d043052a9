"""``ept-studio bench ray-sweep``: the same small ``bench accuracy`` sweep serially and on a local
Ray with a given number of CPUs, in one command; the wall time ratio and whether the two tables
agree.

The sweep: faces vs non-faces, ept and linear at K = 1 and 2, one draw, ``runs / 4`` seeds, on a
small seeded random ViT (64 px, patch 8, 4 blocks, width 128), bf16 off (the same arithmetic in
both). Ray's time includes starting the local Ray and its workers (each imports torch and plans
the sweep once), which a long sweep spreads over many runs.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from ept_studio.common.errors import ConfigError
from ept_studio.evidence.accuracy import AccuracyRequest, AccuracySaved, run_accuracy
from ept_studio.evidence.ray_sweep import run_accuracy_on_ray


@dataclasses.dataclass(frozen=True)
class RaySweepBench:
    runs: int
    cpus: int
    serial_s: float
    ray_s: float
    same_results: bool

    def markdown(self) -> str:
        same = "identical" if self.same_results else "DIFFERENT"
        return "\n".join(
            [
                f"# bench ray-sweep: {self.runs} training runs, serial vs a {self.cpus}-CPU local Ray",
                "",
                "| path | wall s | runs / min |",
                "|---|---|---|",
                f"| serial (this process) | {self.serial_s:.1f} | {self.runs / self.serial_s * 60:.1f} |",
                f"| Ray, {self.cpus} CPUs | {self.ray_s:.1f} | {self.runs / self.ray_s * 60:.1f} |",
                "",
                f"- serial / Ray wall time: {self.serial_s / self.ray_s:.2f}x",
                f"- results (accuracies, calibration, tables): {same}",
                "",
            ]
        )


def small_backbone() -> Any:
    from ept_studio.core.backbones import random_backbone

    return random_backbone(
        "vit_tiny_patch16_224",
        seed=0,
        img_size=64,
        patch_size=8,
        depth=4,
        embed_dim=128,
        num_heads=4,
    )


def run_ray_sweep_bench(runs: int = 8, cpus: int = 2) -> RaySweepBench:
    """Time the sweep serially, then on a fresh local Ray with ``cpus`` CPUs (see the module)."""
    from ept_studio.services.model import require_ray

    ray = require_ray()
    if runs < 4 or runs % 4:
        raise ConfigError(f"runs must be a multiple of 4 (2 methods x 2 K), got {runs}")
    if ray.is_initialized():
        raise ConfigError("bench ray-sweep starts its own local Ray: run it in a fresh process")
    with tempfile.TemporaryDirectory(prefix="ept-ray-bench-") as folder:
        root = Path(folder)
        start = time.perf_counter()
        serial = list(run_accuracy(_request(root / "serial", runs), backbone=small_backbone()))
        serial_s = time.perf_counter() - start
        start = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False)
        try:
            on_ray = list(
                run_accuracy_on_ray(_request(root / "ray", runs), "local", backbone=small_backbone)
            )
        finally:
            ray.shutdown()
        ray_s = time.perf_counter() - start
        same = isinstance(on_ray[-1], AccuracySaved) and _results(root / "ray") == _results(
            root / "serial"
        )
    assert isinstance(serial[-1], AccuracySaved)
    return RaySweepBench(runs, cpus, serial_s, ray_s, same)


def _request(out: Path, runs: int) -> AccuracyRequest:
    return AccuracyRequest(
        out=out,
        dataset="lfw-faces",
        shots=(1, 2),
        draws=1,
        seeds=runs // 4,
        methods=("ept", "linear"),
        recipe={"epochs": 5, "lr": 0.05, "device": "cpu", "bf16": "off"},
        queries_per_class=16,
    )


def _results(folder: Path) -> Any:
    """The runs' numbers in results.json, without the times."""
    document = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    return [{k: v for k, v in run.items() if k != "train_seconds"} for run in document["runs"]], [
        {k: v for k, v in s.items() if k != "train_seconds_mean"} for s in document["summaries"]
    ]
