"""The input-resolution table of resources/docs/evidence.md: ``.venv/bin/python packaging/resolution_table.py``.

Pairs each ``resources/evidence/resolution/px448-*`` run (the nearest-centroid prototype with the
offline backbone built for 448 px: ``bench accuracy --methods prototype --input-size 448``) with
the 224 px prototype of the sweep's ``share0.5-*`` runs on the same support draw, and prints the
markdown table: accuracy mean ± sd over the draws, the paired gain with a 10,000-resample
bootstrap 95 % interval over the draws, draws won, and seconds a run.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EVIDENCE = ROOT / "resources" / "evidence"
RESAMPLES = 10_000


def prototype_224() -> dict[tuple[str, int, int], float]:
    accuracies = {}
    for path in (EVIDENCE / "sweep" / "runs").glob("share0.5-*/results.json"):
        document = json.loads(path.read_text(encoding="utf-8"))
        for run in document["runs"]:
            if run["method"] == "prototype":
                key = (document["dataset"]["name"], run["shots"], run["draw"])
                accuracies[key] = run["metrics"]["accuracy"]
    return accuracies


def interval(gains: list[float]) -> tuple[float, float]:
    rng = random.Random(0)
    means = sorted(statistics.mean(rng.choice(gains) for _ in gains) for _ in range(RESAMPLES))
    return means[int(0.025 * RESAMPLES) - 1], means[int(0.975 * RESAMPLES) - 1]


def rows() -> list[str]:
    base = prototype_224()
    lines = []
    for path in sorted((EVIDENCE / "resolution").glob("px448-*/results.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        name = document["dataset"]["name"]
        runs = sorted(document["runs"], key=lambda run: run["draw"])
        shots = runs[0]["shots"]
        high = [100 * run["metrics"]["accuracy"] for run in runs]
        low = [100 * base[(name, shots, run["draw"])] for run in runs]
        gains = [h - lo for h, lo in zip(high, low, strict=True)]
        lower, upper = interval(gains)
        verdict = "beats" if lower > 0 else "below" if upper < 0 else "ties"
        seconds = statistics.mean(run["train_seconds"] for run in runs)
        lines.append(
            f"| {name} | {shots} | {statistics.mean(low):.1f} ± {statistics.stdev(low):.1f} | "
            f"{statistics.mean(high):.1f} ± {statistics.stdev(high):.1f} | "
            f"{statistics.mean(gains):+.1f} ({lower:+.1f} to {upper:+.1f}), "
            f"{sum(g > 0 for g in gains)}/{len(gains)} draws, {verdict} | {seconds:.0f} |"
        )
    return sorted(lines, key=lambda line: (line.split("|")[1], int(line.split("|")[2])))


def main() -> int:
    header = (
        "| dataset | K | prototype, 224 px % | prototype, 448 px % | gain, pp (95 % CI), "
        "draws won | s/run at 448 px |\n|---|---|---|---|---|---|\n"
    )
    sys.stdout.write(header + "\n".join(rows()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
