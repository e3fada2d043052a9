"""The fine-detail table of resources/docs/evidence.md: ``.venv/bin/python packaging/detail_table.py``.

The app's default scores an image with the tuned EPT model averaged, in probability space, with
the untrained nearest-centroid prototype of the training images on the backbone built for 448 px
(:func:`ept_studio.core.detail.combine_logits`). This pairs, on each support draw, the query
scores that three ``bench accuracy`` commands kept:

- the 224 px prototype (the baseline) and EPT keeping half of its training
  (``--trained-share 0.5``, what the app does from 5 training images a class): ``share0.5-*``;
- EPT keeping all of its training (what the app does below 5 a class, so at K = 1): ``keepall-*``;
- the prototype at 448 px (``--input-size 448``): ``px448-*``.

Two sets of draws: ``--seed 0``, the sweep's draws, on which the combination was chosen (runs in
``resources/evidence/sweep/runs``, ``resources/evidence/resolution`` and ``detail/seed0``), and
``--seed 1``, fresh draws measured after the choice (``resources/evidence/detail/seed1``). Each
table row: accuracy mean ± sd over the draws, the paired gain over the 224 px prototype with a
10,000-resample bootstrap 95 % interval over the draws, draws won, and the seconds a run (EPT's
training plus fitting the 448 px prototype).
"""

from __future__ import annotations

import dataclasses
import json
import random
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "resources" / "evidence"
DETAIL = EVIDENCE / "detail"
RESAMPLES = 10_000
SHARE_MINIMUM = 5
"""Training images a class from which the app keeps half of the training (``SHARE_MINIMUM``)."""


@dataclasses.dataclass(frozen=True)
class Draws:
    """Where one set of draws keeps each kind of run."""

    name: str
    share: Path
    keep_all: Path
    high: Path


SETS = (
    Draws(
        "chosen on (sweep draws, --seed 0)",
        EVIDENCE / "sweep" / "runs",
        DETAIL / "seed0",
        EVIDENCE / "resolution",
    ),
    Draws(
        "confirmed on (fresh draws, --seed 1)", DETAIL / "seed1", DETAIL / "seed1", DETAIL / "seed1"
    ),
)

Key = tuple[str, int, int]
Scores = tuple[np.ndarray, np.ndarray, float]


def _runs(files: Iterable[Path], method: str) -> dict[Key, Scores]:
    """(dataset, K, draw) -> (query logits, targets, train seconds) of ``method``'s runs."""
    found: dict[Key, Scores] = {}
    for path in files:
        document = json.loads(path.read_text(encoding="utf-8"))
        for run in document["runs"]:
            if run["method"] != method or run["failure"] is not None:
                continue
            key = (document["dataset"]["name"], run["shots"], run["draw"])
            scores = run["query_scores"]
            found[key] = (
                np.asarray(scores["logits"], dtype=np.float64),
                np.asarray(scores["targets"]),
                float(run["train_seconds"]),
            )
    return found


def _glob(folder: Path, prefix: str) -> list[Path]:
    return sorted(folder.glob(f"{prefix}*/results.json"))


def _interval(gains: list[float]) -> tuple[float, float]:
    rng = random.Random(0)
    means = sorted(statistics.mean(rng.choice(gains) for _ in gains) for _ in range(RESAMPLES))
    return means[int(0.025 * RESAMPLES) - 1], means[int(0.975 * RESAMPLES) - 1]


def _accuracy(logits: np.ndarray, targets: np.ndarray) -> float:
    return 100.0 * float(np.mean(logits.argmax(axis=1) == targets))


@dataclasses.dataclass(frozen=True)
class Cell:
    dataset: str
    shots: int
    prototype: list[float]
    tuned: list[float]
    combined: list[float]
    seconds: float

    @property
    def gains(self) -> list[float]:
        return [c - p for c, p in zip(self.combined, self.prototype, strict=True)]

    @property
    def verdict(self) -> str:
        lower, upper = _interval(self.gains)
        return "beats" if lower > 0 else "below" if upper < 0 else "ties"


def cells(draws: Draws) -> list[Cell]:
    """Every (dataset, K) cell of one set of draws, paired draw by draw."""
    from ept_studio.core.detail import combine_logits

    share_files = _glob(draws.share, "share0.5-")
    prototype = _runs(share_files, "prototype")
    half = _runs(share_files, "ept")
    whole = _runs(_glob(draws.keep_all, "keepall-"), "ept")
    high = _runs(_glob(draws.high, "px448-"), "prototype")
    out = []
    for dataset, shots in sorted({key[:2] for key in high}):
        keys = sorted(key for key in high if key[:2] == (dataset, shots))
        tuned_runs = half if shots >= SHARE_MINIMUM else whole
        if not all(key in prototype and key in tuned_runs for key in keys):
            raise SystemExit(f"{draws.name}: runs missing for {dataset} K = {shots}")
        base, tuned, combined, seconds = [], [], [], []
        for key in keys:
            base_logits, targets, _ = prototype[key]
            tuned_logits, tuned_targets, tuned_seconds = tuned_runs[key]
            high_logits, high_targets, high_seconds = high[key]
            if not (
                np.array_equal(targets, tuned_targets) and np.array_equal(targets, high_targets)
            ):
                raise SystemExit(f"{draws.name}: {key} has other query images in another run")
            base.append(_accuracy(base_logits, targets))
            tuned.append(_accuracy(tuned_logits, targets))
            combined.append(_accuracy(combine_logits(tuned_logits, high_logits), targets))
            seconds.append(tuned_seconds + high_seconds)
        out.append(Cell(dataset, shots, base, tuned, combined, statistics.mean(seconds)))
    return out


def _spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1f} ± {sd:.1f}"


def table(rows: list[Cell]) -> str:
    lines = [
        "| dataset | K | draws | prototype, 224 px % | EPT as the app trains it % | "
        "EPT + fine detail % | gain over the prototype, pp (95 % CI), draws won | s/run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cell in rows:
        gains = cell.gains
        lower, upper = _interval(gains)
        lines.append(
            f"| {cell.dataset} | {cell.shots} | {len(gains)} | {_spread(cell.prototype)} | "
            f"{_spread(cell.tuned)} | {_spread(cell.combined)} | "
            f"{statistics.mean(gains):+.1f} ({lower:+.1f} to {upper:+.1f}), "
            f"{sum(g > 0 for g in gains)}/{len(gains)} draws, {cell.verdict} | {cell.seconds:.0f} |"
        )
    return "\n".join(lines) + "\n"


def verdict(name: str, rows: list[Cell], what: str = "EPT + fine detail") -> str:
    counts = {
        kind: sum(cell.verdict == kind for cell in rows) for kind in ("beats", "ties", "below")
    }
    means = [statistics.mean(cell.gains) for cell in rows]
    worst = min(range(len(rows)), key=means.__getitem__)
    return (
        f"- {name}: {what} beats the prototype in {counts['beats']} of {len(rows)} "
        f"dataset x K cells, ties in {counts['ties']}, below in {counts['below']}; mean gain "
        f"{statistics.mean(means):+.1f} pp; worst {means[worst]:+.1f} pp "
        f"({rows[worst].dataset}, K = {rows[worst].shots})."
    )


def tuned_alone(rows: list[Cell]) -> list[Cell]:
    """The same cells with EPT's own scores in place of the combination (the comparison)."""
    return [dataclasses.replace(cell, combined=cell.tuned) for cell in rows]


def pooled(first: list[Cell], second: list[Cell]) -> list[Cell]:
    """The two sets' draws of each cell together (10 draws a cell)."""
    by_key = {(cell.dataset, cell.shots): cell for cell in second}
    out = []
    for cell in first:
        other = by_key[(cell.dataset, cell.shots)]
        out.append(
            Cell(
                cell.dataset,
                cell.shots,
                cell.prototype + other.prototype,
                cell.tuned + other.tuned,
                cell.combined + other.combined,
                statistics.mean([cell.seconds, other.seconds]),
            )
        )
    return out


def markdown() -> str:
    """The tables of both sets of draws and the verdict lines, as evidence.md quotes them."""
    chosen, confirmed = (cells(draws) for draws in SETS)
    both = pooled(chosen, confirmed)
    parts = [
        f"Fresh draws (`--seed 1`), measured after the choice:\n\n{table(confirmed)}",
        f"The sweep's draws (`--seed 0`), on which it was chosen:\n\n{table(chosen)}",
        "\n".join(
            [
                verdict("Fresh draws", confirmed),
                verdict("Sweep draws", chosen),
                verdict("Both, 10 draws a cell", both),
                verdict("Fresh draws", tuned_alone(confirmed), "EPT alone"),
                verdict("Sweep draws", tuned_alone(chosen), "EPT alone"),
                verdict("Both, 10 draws a cell", tuned_alone(both), "EPT alone"),
            ]
        )
        + "\n",
    ]
    return "\n".join(parts)


def main() -> int:
    sys.path.insert(0, str(ROOT))
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
