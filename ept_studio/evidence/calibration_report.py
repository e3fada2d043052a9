"""Calibrated scores and prediction sets across a sweep: one table from many ``results.json``.

Reads the per-cell calibration summaries ``bench accuracy`` writes
(:mod:`ept_studio.evidence.protocol_calibration`) and prints, per dataset, K and method: ECE before
-> after temperature scaling, the empirical coverage of the prediction sets against its
finite-sample bounds, the mean set size and the calibration images; then the two claims checked
cell by cell (ECE after <= ECE before in the mean over the draws; mean coverage within the bounds),
and which cells of the planned grid ran and which did not.

Where every run of a cell also kept its re-split means (``resplits`` in the summary), the table's
numbers are those means: each run's ECE and coverage averaged over many calibration / evaluation
splits of its query, then over the runs; a mean coverage is then within its bounds when it lies
inside them give or take 2 Monte-Carlo standard errors. Cells without them show their one split.

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
    def figures(self) -> dict[str, Any]:
        """The numbers the table shows: the re-split means where the cell has them, else its
        one split's (``mc_se`` then None)."""
        s = self.summary
        r = s.get("resplits")
        if r:
            return {
                "ece_before": r["ece_before_mean"],
                "ece_after": r["ece_after_mean"],
                "temperature": r["temperature_median"],
                "calibrated": f"{100.0 * (r['calibrated_share'] or 0.0):.0f} % of splits",
                "coverage": r["coverage_mean"],
                "coverage_se": r["coverage_se"],
                "mc_se": r["coverage_mc_se"],
                "coverage_high": r["coverage_high"],
                "set_size": r["set_size_mean"],
                "guaranteed": f"{100.0 * (r['guaranteed_share'] or 0.0):.0f} % of splits",
                "splits": r["splits"],
            }
        return {
            "ece_before": s["ece_before_mean"],
            "ece_after": s["ece_after_mean"],
            "temperature": s["temperature_mean"],
            "calibrated": f"{s['calibrated_runs']}/{s['runs']} runs",
            "coverage": s["coverage_mean"],
            "coverage_se": s["coverage_se"],
            "mc_se": None,
            "coverage_high": s["coverage_high"],
            "set_size": s["set_size_mean"],
            "guaranteed": f"{s['guaranteed_runs']}/{s['runs_with_sets']} runs",
            "splits": 1,
        }

    @property
    def ece_improves(self) -> bool | None:
        before, after = self.figures["ece_before"], self.figures["ece_after"]
        return None if before is None or after is None else after <= before

    @property
    def coverage_verdict(self) -> str:
        """``within``, ``below`` or ``above`` the bounds (give or take 2 Monte-Carlo standard
        errors where the numbers are re-split means), or ``no sets``."""
        f = self.figures
        mean, high = f["coverage"], f["coverage_high"]
        if mean is None or high is None:
            return "no sets"
        slack = 2.0 * (f["mc_se"] or 0.0)
        if mean < self.summary["coverage_low"] - slack:
            return "below"
        if mean > high + slack:
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
    s, f = cell.summary, cell.figures
    se = "" if f["coverage_se"] is None else f" ± {_pct(f['coverage_se'])}"
    mc = "" if f["mc_se"] is None else f" (MC {_pct(f['mc_se'], 2)})"
    temperature = "n/a" if f["temperature"] is None else f"{f['temperature']:.2f}"
    size = "n/a" if f["set_size"] is None else f"{f['set_size']:.2f}"
    n_range = (
        f"{s['calibration_size_min']}"
        if s["calibration_size_min"] == s["calibration_size_max"]
        else f"{s['calibration_size_min']}-{s['calibration_size_max']}"
    )
    return (
        f"| {cell.dataset} | {cell.shots} | {cell.method} | {s['runs']} x {f['splits']} | "
        f"{_pct(s['accuracy_mean'])} | {_pct(f['ece_before'])} -> "
        f"{_pct(f['ece_after'])} | {temperature} ({f['calibrated']}) | "
        f"{_pct(f['coverage'])}{se}{mc} | {_pct(s['coverage_low'])}-{_pct(f['coverage_high'])} "
        f"| {cell.coverage_verdict} | {size} | {n_range} | {f['guaranteed']} |"
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
        "| dataset | K | method | runs x splits | accuracy, evaluation part (%) "
        "| ECE before -> after (%) | T (calibrated) | coverage (%) ± se over runs (MC se) "
        "| bound (%) | coverage vs bound | set size | n calibration | coverage promised |",
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
    single = [c for c in outside if c.figures["mc_se"] is None]
    if single:
        near = [c for c in single if _gap(c) <= 2 * (c.figures["coverage_se"] or 0.0)]
        lines.append(
            f"- Of the {len(single)} outside measured on one split a run, {len(near)} miss the "
            "bounds by at most 2 standard errors of their mean coverage (the chance spread of a "
            "mean over a few draws of small evaluation parts); the bounds are on E[coverage], "
            "the mean only estimates it."
        )
    partial = [c for c in with_sets if _partly_promised(c)]
    if partial:
        lines.append(
            "- Not every split had enough calibration images to promise the coverage (its sets "
            "then hold every class) in: " + _list(partial, lambda c: c.figures["guaranteed"]) + "."
        )
    return lines


def _partly_promised(cell: CalibrationCell) -> bool:
    r = cell.summary.get("resplits")
    if r:
        return bool((r["guaranteed_share"] or 0.0) < 1.0)
    return bool(cell.summary["guaranteed_runs"] < cell.summary["runs_with_sets"])


def _list(cells: Sequence[CalibrationCell], text: Any) -> str:
    return "; ".join(f"{c.method} on {c.dataset} at K = {c.shots} ({text(c)})" for c in cells)


def _ece(cell: CalibrationCell) -> str:
    f = cell.figures
    return f"{_pct(f['ece_before'])} -> {_pct(f['ece_after'])} %"


def _gap(cell: CalibrationCell) -> float:
    """How far the mean coverage lies outside its bounds (0 inside)."""
    f = cell.figures
    low, high, mean = cell.summary["coverage_low"], f["coverage_high"], f["coverage"]
    return float(max(0.0, low - mean, mean - high))


def _coverage(cell: CalibrationCell) -> str:
    f = cell.figures
    gap = _gap(cell)
    se = f["mc_se"] if f["mc_se"] is not None else f["coverage_se"]
    how = "" if not se else f", {gap / se:.1f} {'MC ' if f['mc_se'] is not None else ''}se"
    return f"{_pct(f['coverage'])} %, {cell.coverage_verdict} the bound by {_pct(gap)} pp{how}"


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
