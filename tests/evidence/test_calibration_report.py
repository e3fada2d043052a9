"""The sweep's calibration table: read from results documents, claims checked, missing cells named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ept_studio.common.errors import ConfigError
from ept_studio.core.training import recipe_from_settings
from ept_studio.evidence.calibration_report import (
    calibration_markdown,
    load_calibration,
    reproduction,
)
from ept_studio.evidence.sweep_report import SweepCell


def summary(
    method: str, shots: int, before: float, after: float, coverage: float
) -> dict[str, Any]:
    return {
        "method": method,
        "shots": shots,
        "metric": "accuracy",
        "calibration": {
            "runs": 5,
            "calibration_size_mean": 30.0,
            "calibration_size_min": 30,
            "calibration_size_max": 30,
            "evaluation_size_mean": 30.0,
            "accuracy_mean": 0.7,
            "calibrated_runs": 5,
            "temperature_mean": 2.0,
            "ece_before_mean": before,
            "ece_after_mean": after,
            "runs_with_sets": 5,
            "guaranteed_runs": 5,
            "mondrian_runs": 0,
            "coverage_target": 0.9,
            "coverage_mean": coverage,
            "coverage_se": 0.02,
            "coverage_low": 0.9,
            "coverage_high": 0.9 + 1 / 31,
            "set_size_mean": 1.6,
            "empty_sets": 0,
        },
    }


def write(folder: Path, dataset: str, summaries: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True)
    document = {
        "dataset": {"name": dataset, "title": dataset},
        "preset": "default",
        "command": "ept-studio bench accuracy --recipe default",
        "recipe": recipe_from_settings({"preset": "default", "device": "cpu"}).to_dict(),
        "protocol": {"hold_out": False},
        "summaries": summaries,
        "runs": [],
    }
    (folder / "results.json").write_text(json.dumps(document), encoding="utf-8")


def test_the_table_checks_both_claims_and_names_the_cells_not_run(tmp_path: Path) -> None:
    write(
        tmp_path / "a",
        "textiles",
        [summary("linear", 5, 0.20, 0.08, 0.91), summary("ept", 5, 0.10, 0.12, 0.85)],
    )
    write(tmp_path / "b", "lfw-faces", [{"method": "linear", "shots": 5, "calibration": None}])
    cells = load_calibration([tmp_path])
    assert [(c.dataset, c.method, c.coverage_verdict) for c in cells] == [
        ("textiles", "linear", "within"),
        ("textiles", "ept", "below"),
    ]
    text = calibration_markdown(cells)
    assert (
        "| textiles | 5 | linear | 5 x 1 | 70.0 | 20.0 -> 8.0 | 2.00 (5/5 runs) | 91.0 ± 2.0 |"
        in text
    )
    assert "- ECE after <= ECE before (mean over the draws) in 1 of 2 cells; not in: ept" in text
    assert "within its finite-sample bounds in 1 of 2 cells; outside: ept on textiles" in text
    assert "below the bound by 5.0 pp, 2.5 se" in text
    assert (
        "Of the 1 outside measured on one split a run, 0 miss the bounds by at most 2 standard"
        in text
    )
    assert "- Cannot run: dicom-modality at K = 10" in text
    assert "linear on lfw-faces at K = 5" in text.split("Not run yet:")[1]
    assert "linear on textiles at K = 5" not in text.split("Not run yet:")[1]


def with_resplits(
    entry: dict[str, Any], before: float, after: float, coverage: float, mc_se: float
) -> dict[str, Any]:
    entry["calibration"]["resplits"] = {
        "splits": 1000,
        "ece_before_mean": before,
        "ece_after_mean": after,
        "calibrated_share": 0.96,
        "temperature_median": 3.0,
        "runs_with_sets": 5,
        "coverage_mean": coverage,
        "coverage_mc_se": mc_se,
        "coverage_se": 0.01,
        "coverage_high": 0.93,
        "set_size_mean": 1.5,
        "guaranteed_share": 0.9,
    }
    return entry


def test_re_split_means_are_shown_and_judged_within_their_monte_carlo_error(
    tmp_path: Path,
) -> None:
    """The one split's numbers would fail both claims; the re-split means decide instead, and a
    mean 1 Monte-Carlo error below 0.9 is within, 3 errors below is not."""
    write(
        tmp_path / "a",
        "textiles",
        [
            with_resplits(summary("linear", 5, 0.10, 0.20, 0.80), 0.25, 0.15, 0.899, 0.001),
            with_resplits(summary("ept", 5, 0.10, 0.20, 0.80), 0.25, 0.15, 0.897, 0.001),
        ],
    )
    cells = load_calibration([tmp_path])
    assert [(c.method, c.coverage_verdict, c.ece_improves) for c in cells] == [
        ("linear", "within", True),
        ("ept", "below", True),
    ]
    text = calibration_markdown(cells)
    row = "| textiles | 5 | linear | 5 x 1000 | 70.0 | 25.0 -> 15.0 | 3.00 (96 % of splits) | "
    assert row + "89.9 ± 1.0 (MC 0.10) | 90.0-93.0 | within | 1.50 | 30 | 90 % of splits |" in text
    assert "in 2 of 2 cells." in text
    assert "ept on textiles at K = 5 (89.7 %, below the bound by 0.3 pp, 3.0 MC se)" in text
    assert "measured on one split a run" not in text
    assert "linear on textiles at K = 5 (90 % of splits)" in text


def test_the_same_cell_with_other_numbers_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "a", "textiles", [summary("linear", 5, 0.2, 0.1, 0.9)])
    write(tmp_path / "b", "textiles", [summary("linear", 5, 0.2, 0.1, 0.9)])
    assert len(load_calibration([tmp_path])) == 1
    write(tmp_path / "c", "textiles", [summary("linear", 5, 0.3, 0.1, 0.9)])
    with pytest.raises(ConfigError, match="two results files"):
        load_calibration([tmp_path])


def test_runs_made_again_are_checked_against_the_sweeps_accuracy() -> None:
    def cell(method: str, by_draw: dict[int, float]) -> SweepCell:
        return SweepCell(
            "textiles", "t", 5, "default", method, "accuracy", by_draw, 0.5, 0.0, None, None,
            1.0, 0, 3, 60.0,
        )  # fmt: skip

    sweep = [cell("linear", {0: 0.5, 1: 0.6}), cell("ept", {0: 0.5, 1: 0.6})]
    repeats = [cell("linear", {0: 0.5, 1: 0.6}), cell("ept", {0: 0.5, 1: 0.7})]
    [line] = reproduction([*repeats, cell("vpt", {0: 0.1})], sweep)
    assert "the same as the sweep's runs of the same cell in 1 of 2 cells" in line
    assert "different in: ept on textiles at K = 5." in line
    assert "No sweep runs to compare with: vpt on textiles at K = 5." in line
    assert reproduction([], sweep) == []
