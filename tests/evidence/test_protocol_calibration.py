"""The protocol's calibration split, temperature and prediction-set numbers, on synthetic logits."""

from __future__ import annotations

import numpy as np
import pytest

from ept_studio.evidence.protocol_calibration import (
    CalibrationProtocol,
    recalibrate,
    run_calibration,
    split_query,
    summarise_calibration,
)

PROTOCOL = CalibrationProtocol(resplits=0)


def overconfident(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is far too sure: a weak signal for the true class, scaled by 8."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, size=n)
    logits = rng.normal(size=(n, classes))
    logits[np.arange(n), targets] += 1.0
    return 8.0 * logits, targets


def test_the_split_is_disjoint_complete_stratified_and_seeded() -> None:
    targets = np.array([0] * 7 + [1] * 10 + [2] * 3)
    cal, ev = split_query(targets, 5, 0, PROTOCOL)
    assert not set(cal) & set(ev)
    assert sorted([*cal, *ev]) == list(range(targets.size))
    assert np.bincount(targets[cal]).tolist() == [3, 5, 1]
    assert np.bincount(targets[ev]).tolist() == [4, 5, 2]
    again = split_query(targets, 5, 0, PROTOCOL)
    assert all(np.array_equal(a, b) for a, b in zip((cal, ev), again, strict=True))
    other_draw = split_query(targets, 5, 1, PROTOCOL)
    assert not np.array_equal(cal, other_draw[0])
    quarter = split_query(targets, 5, 0, CalibrationProtocol(fraction=0.25))
    assert np.bincount(targets[quarter[0]], minlength=3).tolist() == [1, 2, 0]


def test_a_run_reports_temperature_ece_and_sets_on_the_evaluation_part() -> None:
    logits, targets = overconfident(400, 3, seed=1)
    row = run_calibration(logits, targets, 5, 0, PROTOCOL)
    assert (row["calibration_size"], row["evaluation_size"]) == (
        sum(np.bincount(targets) // 2),
        400 - sum(np.bincount(targets) // 2),
    )
    assert sum(row["calibration_class_counts"]) == row["calibration_size"]
    _, ev = split_query(targets, 5, 0, PROTOCOL)
    assert row["accuracy"] == pytest.approx(np.mean(logits[ev].argmax(axis=1) == targets[ev]))
    assert row["temperature"] > 1.0
    assert row["uncalibrated_reason"] is None
    assert 0.0 <= row["ece_after"] < row["ece_before"] <= 1.0
    assert row["guaranteed"] is True
    assert 0.0 <= row["coverage"] <= 1.0
    assert 1.0 <= row["set_size"] <= 3.0
    assert row["coverage_upper_bound"] == pytest.approx(0.9 + 1 / (row["calibration_size"] + 1))
    assert run_calibration(logits, targets, 5, 0, PROTOCOL) == row


def test_too_few_calibration_images_are_said_and_the_sets_keep_every_class() -> None:
    logits, targets = overconfident(12, 2, seed=2)
    row = run_calibration(logits, targets, 1, 0, PROTOCOL)
    assert row["calibration_size"] < 9
    assert row["temperature"] is None
    assert "uncalibrated" in row["uncalibrated_reason"]
    assert row["ece_after"] == row["ece_before"]
    assert row["guaranteed"] is False
    assert "Cannot promise" in row["sets_reason"]
    assert (row["coverage"], row["set_size"]) == (1.0, 2.0)


def test_coverage_over_many_splits_lies_within_the_finite_sample_bounds() -> None:
    """Exchangeable synthetic scores: the mean coverage over 400 runs is 1 - alpha to
    1 - alpha + 1 / (n + 1), up to three standard errors."""
    rows = []
    for seed in range(400):
        logits, targets = overconfident(40, 4, seed=100 + seed)
        rows.append(run_calibration(logits, targets, 5, seed, PROTOCOL))
    summary = summarise_calibration(rows)
    assert summary is not None
    assert summary["runs"] == summary["runs_with_sets"] == 400
    assert summary["guaranteed_runs"] == 400
    slack = 3 * summary["coverage_se"]
    assert summary["coverage_low"] - slack <= summary["coverage_mean"]
    assert summary["coverage_mean"] <= summary["coverage_high"] + slack
    assert summary["ece_after_mean"] < summary["ece_before_mean"]


def test_a_multi_label_run_says_it_has_no_sets() -> None:
    row = run_calibration(np.zeros((4, 2)), np.array([0, 1, 0, 1]), 1, 0, PROTOCOL, "multi")
    assert "single-label" in row["skipped"]
    assert summarise_calibration([row, None]) is None


def test_the_protocol_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="fraction"):
        CalibrationProtocol(fraction=1.0)
    with pytest.raises(ValueError, match="coverage"):
        CalibrationProtocol(coverage=0.0)


def test_a_calibration_part_without_errors_does_not_sharpen_the_scores_to_the_bound() -> None:
    from ept_studio.core.temperature import MIN_TEMPERATURE, Calibration, fit_calibration

    rng = np.random.default_rng(5)
    targets = np.arange(20) % 2
    logits = rng.normal(size=(20, 2))
    logits[np.arange(20), targets] += 3.0  # every image right, with margins of 1-5
    assert np.all(logits.argmax(axis=1) == targets)
    fitted = fit_calibration(logits, targets, source="test")
    assert not (isinstance(fitted, Calibration) and fitted.temperature < 1.001 * MIN_TEMPERATURE)


def test_re_splits_are_seeded_other_splits_and_the_first_is_the_runs_own() -> None:
    targets = np.repeat(np.arange(3), 12)
    own = split_query(targets, 5, 2, PROTOCOL)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(own, split_query(targets, 5, 2, PROTOCOL, 0), strict=True)
    )
    first, second = (split_query(targets, 5, 2, PROTOCOL, r)[0] for r in (1, 2))
    assert not np.array_equal(first, own[0])
    assert not np.array_equal(first, second)
    assert np.array_equal(first, split_query(targets, 5, 2, PROTOCOL, 1)[0])
    assert np.bincount(targets[first]).tolist() == [6, 6, 6]


def test_one_draw_re_split_many_times_covers_within_its_bounds() -> None:
    """Split conformal's bound is on E[coverage] over the random split of exchangeable images:
    re-splitting one draw's 60 images 600 times measures that expectation to a Monte-Carlo error,
    so the mean must lie within 1 - alpha .. 1 - alpha + 1 / (n + 1), give or take 3 of it."""
    logits, targets = overconfident(60, 3, seed=7)
    protocol = CalibrationProtocol(resplits=600)
    row = run_calibration(logits, targets, 5, 0, protocol)
    r = row["resplits"]
    assert r["splits"] == r["splits_with_sets"] == 600
    assert r["guaranteed_share"] == 1.0
    slack = 3 * r["coverage_mc_se"]
    assert 0.0 < r["coverage_mc_se"] < 0.01
    assert 0.9 - slack <= r["coverage"] <= r["coverage_upper_bound"] + slack
    assert r["coverage_upper_bound"] == pytest.approx(0.9 + 1 / (row["calibration_size"] + 1))
    assert r["ece_after"] < r["ece_before"]
    assert r["calibrated_share"] > 0.9


def test_a_wrong_threshold_rule_is_caught_by_the_re_split_mean() -> None:
    """The same draw, sets fitted for 80 % but judged against the 90 % bounds: the re-split
    mean lies far below 0.9, outside any Monte-Carlo slack (the test above can fail)."""
    logits, targets = overconfident(60, 3, seed=7)
    low = run_calibration(logits, targets, 5, 0, CalibrationProtocol(coverage=0.8, resplits=300))
    r = low["resplits"]
    assert r["coverage"] + 3 * r["coverage_mc_se"] < 0.9


def test_recalibrate_measures_a_document_again_from_its_query_scores() -> None:
    runs = []
    for draw in range(3):
        logits, targets = overconfident(30, 3, seed=40 + draw)
        runs.append(
            {
                "method": "ept",
                "shots": 5,
                "draw": draw,
                "calibration": {"stale": True},
                "query_scores": {"logits": logits.tolist(), "targets": targets.tolist()},
            }
        )
    runs.append({"method": "linear", "shots": 5, "draw": 0, "calibration": {"kept": True}})
    document = {
        "protocol": {"calibration_fraction": 0.5, "set_coverage": 0.9, "seed": 0},
        "dataset": {"label_mode": "single"},
        "runs": runs,
        "summaries": [
            {"method": "ept", "shots": 5, "calibration": None},
            {"method": "linear", "shots": 5, "calibration": {"kept": True}},
        ],
    }
    document["protocol"]["calibration_resplits"] = 25
    assert recalibrate(document)
    protocol = CalibrationProtocol(resplits=25)
    for run in runs[:3]:
        scores = run["query_scores"]
        expected = run_calibration(scores["logits"], scores["targets"], 5, run["draw"], protocol)
        assert run["calibration"] == expected
        assert run["calibration"]["resplits"]["splits"] == 25
    assert runs[3]["calibration"] == {"kept": True}
    ept = document["summaries"][0]["calibration"]
    assert ept == summarise_calibration([r["calibration"] for r in runs[:3]])
    assert ept["runs"] == 3
    assert ept["resplits"]["splits"] == 25
    assert document["summaries"][1]["calibration"] == {"kept": True}
    assert not recalibrate({"runs": runs[3:], "summaries": []})
