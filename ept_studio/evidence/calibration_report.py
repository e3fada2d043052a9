"""Calibrated scores and prediction sets across a sweep: one table from many ``results.json``.

Reads the per-cell calibration summaries ``bench accuracy`` writes
(:mod:`ept_studio.evidence.protocol_calibration`) and prints, per dataset, K and method: ECE before
-> after temperature scaling, the empirical coverage of the prediction sets against its
finite-sample bounds, the mean set size and the calibration images; then the two claims checked
cell by cell (ECE after <= ECE before in the mean over the draws; mean coverage within the bounds),
and which cells of the planned grid ran and which did not.

Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ept_studio.common.errors import ConfigError
from ept_studio.evidence.sweep_report import (
    SweepCell,
    preset_in_command,
    recipe_name,
    results_files,
)

GRID_DATASETS = ("dicom-modality", "lfw-faces", "mri-planes", "textiles")
GRID_SHOTS = (5, 10)
GRID_METHODS = ("linear", "ept")
IMPOSSIBLE = {
    ("dicom-modality", 10): "too few CT, MR and X-ray images for 10 support + 1 query a class",
}
"""Cells of the grid that cannot run, and why."""
_METHOD_ORDER = ("prototype", "linear", "ept", "vpt", "lora", "bias", "full")


@dataclasses.dataclass(frozen=True)
class CalibrationCell:
    """One method at one K on one dataset with one recipe: its calibration summary."""

    dataset: str
    shots: int
    recipe: str
    method: str
    summary: Mapping[str, Any]

    @property
    def ece_improves(self) -> bool | None:
        before, after = self.summary["ece_before_mean"], self.summary["ece_after_mean"]
        return None if before is None or after is None else after <= before

    @property
    def coverage_verdict(self) -> str:
        """``within``, ``below`` or ``above`` the bounds, or ``no sets``."""
        mean = self.summary["coverage_mean"]
        if mean is None or self.summary["coverage_high"] is None:
            return "no sets"
        if mean < self.summary["coverage_low"]:
            return "below"
        if mean > self.summary["coverage_high"]:
            return "above"
        return "within"


def load_calibration(paths: Iterable[Path]) -> list[CalibrationCell]:
    """The calibration cells of every results document found (documents without any are skipped)."""
    cells: dict[tuple[str, int, str, str], CalibrationCell] = {}
    for path in results_files(paths):
        document = json.loads(path.read_text(encoding="utf-8"))
        for cell in document_calibration(document):
            key = (cell.dataset, cell.shots, cell.recipe, cell.method)
            if key in cells and cells[key].summary != cell.summary:
                raise ConfigError(
                    f"{path}: calibration of {cell.method} at K = {cell.shots} on {cell.dataset} "
                    f"({cell.recipe}) is in two results files with different numbers; keep one"
                )
            cells[key] = cell
    return sorted(cells.values(), key=_order)


def document_calibration(document: Mapping[str, Any]) -> list[CalibrationCell]:
    """One results document's cells that carry a calibration summary."""
    preset = document.get("preset") or preset_in_command(str(document.get("command", "")))
    held_out = bool(document.get("protocol", {}).get("hold_out"))
    cells = []
    for summary in document["summaries"]:
        if not summary.get("calibration"):
            continue
        method = str(summary["method"])
        recipe = recipe_name(document["recipe"], preset, method, held_out)
        cells.append(
            CalibrationCell(
                str(document["dataset"]["name"]),
                int(summary["shots"]),
                recipe + (" + hold_out" if held_out else ""),
                method,
                summary["calibration"],
            )
        )
    return cells


def _order(cell: CalibrationCell) -> tuple[str, int, str, int, str]:
    rank = _METHOD_ORDER.index(cell.method) if cell.method in _METHOD_ORDER else 99
    return (cell.dataset, cell.shots, cell.recipe, rank, cell.method)


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{100.0 * value:.{digits}f}"


def _row(cell: CalibrationCell) -> str:
    s = cell.summary
    se = "" if s["coverage_se"] is None else f" ± {_pct(s['coverage_se'])}"
    temperature = "n/a" if s["temperature_mean"] is None else f"{s['temperature_mean']:.2f}"
    size = "n/a" if s["set_size_mean"] is None else f"{s['set_size_mean']:.2f}"
    n_range = (
        f"{s['calibration_size_min']}"
        if s["calibration_size_min"] == s["calibration_size_max"]
        else f"{s['calibration_size_min']}-{s['calibration_size_max']}"
    )
    return (
        f"| {cell.dataset} | {cell.shots} | {cell.method} | {s['runs']} | "
        f"{_pct(s['accuracy_mean'])} | {_pct(s['ece_before_mean'])} -> "
        f"{_pct(s['ece_after_mean'])} | {temperature} ({s['calibrated_runs']}/{s['runs']}) | "
        f"{_pct(s['coverage_mean'])}{se} | {_pct(s['coverage_low'])}-{_pct(s['coverage_high'])} "
        f"| {cell.coverage_verdict} | {size} | {n_range} | "
        f"{s['guaranteed_runs']}/{s['runs_with_sets']} |"
    )


def reproduction(repeats: Sequence[SweepCell], sweep: Sequence[SweepCell]) -> list[str]:
    """Whether runs made again for this table gave the sweep's whole-query accuracy, draw by draw."""
    if not repeats:
        return []
    found = {(c.dataset, c.shots, c.recipe, c.method): c for c in sweep}
    same, differ, new = [], [], []
    for cell in repeats:
        earlier = found.get((cell.dataset, cell.shots, cell.recipe, cell.method))
        name = f"{cell.method} on {cell.dataset} at K = {cell.shots}"
        if earlier is None:
            new.append(name)
        elif all(earlier.by_draw.get(d) == v for d, v in cell.by_draw.items()):
            same.append(name)
        else:
            differ.append(name)
    line = (
        f"- Whole-query accuracy of these runs, draw by draw, the same as the sweep's runs of the "
        f"same cell in {len(same)} of {len(same) + len(differ)} cells"
    )
    line += "." if not differ else "; different in: " + "; ".join(differ) + "."
    if new:
        line += " No sweep runs to compare with: " + "; ".join(new) + "."
    return [line]


def calibration_markdown(
    cells: Sequence[CalibrationCell],
    recipe: str = "default",
    grid_methods: Sequence[str] = GRID_METHODS,
    reproduced: Sequence[str] = (),
) -> str:
    """The table of ``recipe``'s cells, the two claims checked, the grid's cells not run, and
    the ``reproduced`` lines of :func:`reproduction`."""
    chosen = [c for c in cells if c.recipe == recipe]
    lines = [
        "| dataset | K | method | runs | accuracy, evaluation part (%) | ECE before -> after (%) "
        "| T (runs fitted) | coverage (%) ± se | bound (%) | coverage vs bound | set size | "
        "n calibration | guaranteed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(c) for c in chosen),
        "",
        *_claims(chosen),
        *_not_run(chosen, grid_methods),
        *reproduced,
    ]
    return "\n".join(lines) + "\n"


def _claims(cells: Sequence[CalibrationCell]) -> list[str]:
    judged = [c for c in cells if c.ece_improves is not None]
    worse = [c for c in judged if not c.ece_improves]
    lines = [
        f"- ECE after <= ECE before (mean over the draws) in {len(judged) - len(worse)} of "
        f"{len(judged)} cells" + ("." if not worse else "; not in: " + _list(worse, _ece) + ".")
    ]
    with_sets = [c for c in cells if c.coverage_verdict != "no sets"]
    within = [c for c in with_sets if c.coverage_verdict == "within"]
    outside = [c for c in with_sets if c.coverage_verdict != "within"]
    lines.append(
        f"- Mean coverage within its finite-sample bounds in {len(within)} of {len(with_sets)} "
        "cells" + ("." if not outside else "; outside: " + _list(outside, _coverage) + ".")
    )
    if outside:
        near = [c for c in outside if _gap(c) <= 2 * (c.summary["coverage_se"] or 0.0)]
        lines.append(
            f"- Of the {len(outside)} outside, {len(near)} miss the bounds by at most 2 standard "
            "errors of their mean coverage (the chance spread of a mean over a few draws of "
            "small evaluation parts); the bounds are on E[coverage], the mean only estimates it."
        )
    partial = [c for c in with_sets if c.summary["guaranteed_runs"] < c.summary["runs_with_sets"]]
    if partial:
        lines.append(
            "- Not every run had enough calibration images to promise the coverage (its sets "
            "then hold every class) in: " + _list(partial, _guaranteed) + "."
        )
    return lines


def _list(cells: Sequence[CalibrationCell], text: Any) -> str:
    return "; ".join(f"{c.method} on {c.dataset} at K = {c.shots} ({text(c)})" for c in cells)


def _ece(cell: CalibrationCell) -> str:
    s = cell.summary
    return f"{_pct(s['ece_before_mean'])} -> {_pct(s['ece_after_mean'])} %"


def _gap(cell: CalibrationCell) -> float:
    """How far the mean coverage lies outside its bounds (0 inside)."""
    s = cell.summary
    low, high, mean = s["coverage_low"], s["coverage_high"], s["coverage_mean"]
    return float(max(0.0, low - mean, mean - high))


def _coverage(cell: CalibrationCell) -> str:
    s = cell.summary
    gap, se = _gap(cell), s["coverage_se"]
    how = "" if not se else f", {gap / se:.1f} se"
    return f"{_pct(s['coverage_mean'])} %, {cell.coverage_verdict} the bound by {_pct(gap)} pp{how}"


def _guaranteed(cell: CalibrationCell) -> str:
    s = cell.summary
    return f"{s['guaranteed_runs']} of {s['runs_with_sets']} runs"


def _not_run(cells: Sequence[CalibrationCell], methods: Sequence[str]) -> list[str]:
    ran = {(c.dataset, c.shots, c.method) for c in cells}
    missing = [
        f"{method} on {dataset} at K = {k}"
        for dataset in GRID_DATASETS
        for k in GRID_SHOTS
        for method in methods
        if (dataset, k) not in IMPOSSIBLE and (dataset, k, method) not in ran
    ]
    lines = [
        f"- Cannot run: {dataset} at K = {k} ({why})." for (dataset, k), why in IMPOSSIBLE.items()
    ]
    lines.append(
        "- Not run yet: " + "; ".join(missing) + "."
        if missing
        else "- Every other cell of the grid ran."
    )
    return lines
