"""A miniature of ``ept-studio bench accuracy``: tiny random ViT, one draw, real images.

The full runs are commands (resources/evidence/README.md), not tests; this keeps the runner, its JSON, its
markdown, its plots and the MedFMC path working.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from support import make_tiny_vit

from ept_studio.cli import evidence
from ept_studio.common.errors import ConfigError
from ept_studio.core.backbones import random_backbone
from ept_studio.core.backbones.loader import LoadedBackbone, freeze
from ept_studio.core.training import HeadInit, TieBreak, recipe_from_settings
from ept_studio.evidence.accuracy import (
    AccuracyPlanned,
    AccuracyRequest,
    AccuracySaved,
    EpisodeDone,
    recalibrate_results,
    run_accuracy,
)
from ept_studio.evidence.protocol_calibration import CalibrationProtocol, run_calibration

QUICK = {"epochs": 1, "lr": 0.05, "device": "cpu"}


def tiny_backbone() -> LoadedBackbone:
    spec = dataclasses.replace(random_backbone("vit_tiny_patch16_224", seed=0).spec, input_size=32)
    return LoadedBackbone(freeze(make_tiny_vit()), spec, "tiny-test", None)


def run(request: AccuracyRequest) -> tuple[list[object], dict[str, Any]]:
    events = list(run_accuracy(request, backbone=tiny_backbone()))
    saved = events[-1]
    assert isinstance(saved, AccuracySaved)
    return events, json.loads(saved.results_json.read_text(encoding="utf-8"))


def faces_request(out: Path, **changes: Any) -> AccuracyRequest:
    settings: dict[str, Any] = {
        "out": out,
        "dataset": "lfw-faces",
        "shots": (1, 2),
        "draws": 1,
        "seeds": 1,
        "methods": ("ept", "linear"),
        "recipe": QUICK,
        "queries_per_class": 4,
        "calibration_resplits": 20,
        "command": "ept-studio bench accuracy --dataset lfw-faces",
    }
    return AccuracyRequest(**{**settings, **changes})


def test_the_miniature_writes_numbers_tables_and_plots(tmp_path: Path) -> None:
    events, document = run(faces_request(tmp_path / "a"))
    planned = events[0]
    assert isinstance(planned, AccuracyPlanned)
    assert planned.counts == {"face": 100, "non-face": 100}
    assert planned.runs == 4
    done = [e for e in events if isinstance(e, EpisodeDone)]
    assert [(e.index, e.method, e.shots) for e in done] == [
        (1, "ept", 1),
        (2, "linear", 1),
        (3, "ept", 2),
        (4, "linear", 2),
    ]
    assert document["format"] == "ept-studio-accuracy/1"
    assert document["dataset"]["counts"] == {"face": 100, "non-face": 100}
    assert document["protocol"]["resamples"] == 1000
    assert document["recipe"]["epochs"] == 1
    assert document["backbone"]["sha256"] == "tiny-test"
    assert len(document["runs"]) == 4
    for run_row in document["runs"]:
        assert run_row["query_size"] == 8
        assert run_row["classes"] == 2
        assert 0.0 <= run_row["metrics"]["accuracy"] <= 1.0
    for summary in document["summaries"]:
        assert summary["metric"] == "accuracy"
        assert summary["runs"] == 1
        assert 0.0 <= summary["ci_low"] <= summary["mean"] <= summary["ci_high"] <= 1.0
        assert summary["sd"] == 0.0
        assert sum(b["count"] for b in summary["reliability"]) == 8
    saved = events[-1]
    assert isinstance(saved, AccuracySaved)
    markdown = saved.results_md.read_text(encoding="utf-8")
    assert "| method | 1-shot accuracy (%) | 2-shot accuracy (%) |" in markdown
    assert "| ept | 1 | 1 |" in markdown
    assert "For research use only" in markdown
    for plot in saved.plots:
        with Image.open(plot) as image:
            assert image.format == "PNG"
            assert image.size[0] > 300
    assert str(tmp_path) not in saved.results_json.read_text(encoding="utf-8")


def test_the_same_seed_gives_the_same_results(tmp_path: Path) -> None:
    _, first = run(faces_request(tmp_path / "a", shots=(1,)))
    _, second = run(faces_request(tmp_path / "b", shots=(1,)))

    def stable(document: dict[str, Any]) -> list[Any]:
        return [
            {k: v for k, v in s.items() if k != "train_seconds_mean"} for s in document["summaries"]
        ] + [[r["metrics"], r["calibration"]] for r in document["runs"]]

    assert stable(first) == stable(second)


def test_each_run_calibrates_on_one_part_of_the_query_and_measures_on_the_other(
    tmp_path: Path,
) -> None:
    _, document = run(faces_request(tmp_path / "c", shots=(1,), queries_per_class=10))
    assert document["protocol"]["calibration_fraction"] == 0.5
    assert document["protocol"]["set_coverage"] == 0.9
    for run_row in document["runs"]:
        row = run_row["calibration"]
        assert (row["calibration_size"], row["evaluation_size"]) == (10, 10)
        assert row["calibration_class_counts"] == [5, 5]
        assert row["temperature"] is not None
        assert 0.05 <= row["temperature"] <= 20.0
        assert 0.0 <= row["ece_after"] <= 1.0
        assert 0.0 <= row["ece_before"] <= 1.0
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["guaranteed"] is True
        assert 0.0 <= row["coverage"] <= 1.0
        assert 0.0 <= row["set_size"] <= 2.0
        assert row["coverage_upper_bound"] == pytest.approx(0.9 + 1 / 11, abs=1e-6)
        assert row["resplits"]["splits"] == 20
        scores = run_row["query_scores"]
        assert np.asarray(scores["logits"]).shape == (20, 2)
        assert sorted(scores["targets"]) == [0] * 10 + [1] * 10
        again = run_calibration(
            scores["logits"],
            scores["targets"],
            1,
            run_row["draw"],
            CalibrationProtocol(resplits=20),
        )
        assert again["ece_before"] == pytest.approx(row["ece_before"], abs=1e-4)
        assert again["coverage"] == row["coverage"]
    for summary in document["summaries"]:
        cell = summary["calibration"]
        assert cell["runs"] == cell["runs_with_sets"] == cell["guaranteed_runs"] == 1
        assert cell["calibration_size_mean"] == 10
        assert cell["coverage_low"] == 0.9
        assert cell["coverage_high"] == pytest.approx(0.9 + 1 / 11, abs=1e-6)
        assert 0.0 <= cell["coverage_mean"] <= 1.0
    text = (tmp_path / "c" / "results.md").read_text(encoding="utf-8")
    assert "ECE before -> after" in text


def write_colon_replica(root: Path) -> None:
    """A generated MedFMC ColonPath layout: real-looking format, synthetic 40 x 40 PNGs."""
    folder = root / "colon"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = [i % 2 for i in range(12)]
    for index, label in enumerate(labels):
        pixels = rng.integers(0, 80, (40, 40, 3)) + 150 * label
        Image.fromarray(pixels.astype(np.uint8)).save(folder / "images" / f"c{index}.png")
    test = "\n".join(f"c{i}.png {labels[i]}" for i in range(4, 12))
    (folder / "test_WithLabel.txt").write_text(test + "\n", encoding="utf-8")
    for exp in (1, 2):
        lines = [f"c{i}.png {labels[i]}" for i in ((exp - 1) * 2, (exp - 1) * 2 + 1)]
        (folder / f"colon_1-shot_train_exp{exp}.txt").write_text("\n".join(lines), encoding="utf-8")


def test_the_medfmc_path_prints_the_papers_layout(tmp_path: Path) -> None:
    write_colon_replica(tmp_path / "medfmc")
    request = AccuracyRequest(
        out=tmp_path / "out",
        medfmc_root=tmp_path / "medfmc",
        medfmc_task="colon",
        shots=(1,),
        draws=2,
        seeds=1,
        methods=("ept", "linear"),
        recipe=QUICK,
    )
    events, document = run(request)
    assert [s["shots"] for s in document["summaries"]] == [1, 1]
    assert {r["draw"] for r in document["runs"]} == {0, 1}
    assert all(r["query_size"] == 8 and r["support_size"] == 2 for r in document["runs"])
    markdown = events[-1].markdown  # type: ignore[attr-defined]
    assert "ColonPath (accuracy, %): this run vs Zu et al. 2024 Table 1" in markdown
    assert "(75.31)" in markdown
    assert "(70.24)" in markdown
    assert "| adapter | - (73.79) | - (83.03) | - (85.52) |" in markdown
    assert "5-shot split 1" not in markdown  # only the asked-for K are looked for


def test_a_request_needs_one_source_and_known_methods(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="either a built-in"):
        AccuracyRequest(out=tmp_path)
    with pytest.raises(ConfigError, match="--task"):
        AccuracyRequest(out=tmp_path, medfmc_root=tmp_path)
    with pytest.raises(ConfigError, match="unknown methods"):
        list(run_accuracy(faces_request(tmp_path, methods=("adapter",)), tiny_backbone()))


def test_the_cli_parses_and_hides_data_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    evidence.add_bench_commands(parser.add_subparsers(dest="bench_command"))
    args = parser.parse_args(
        ["accuracy", "--dataset", "textiles", "--shots", "1,5", "--methods", "ept,linear"]
    )
    assert (args.shots, args.methods, args.draws, args.seeds) == ((1, 5), ("ept", "linear"), 5, 4)
    assert args.handler is evidence.run_bench_accuracy
    with pytest.raises(SystemExit):
        parser.parse_args(["accuracy", "--dataset", "textiles", "--methods", "adapter"])
    argv = ["ept-studio", "bench", "accuracy", "--medfmc", "/home/x/MedFMC", "--weights=/w.st"]
    monkeypatch.setattr(sys, "argv", argv)
    assert evidence._command_line() == "ept-studio bench accuracy --medfmc PATH --weights=PATH"


def test_a_hold_out_run_records_what_it_held_out_and_the_epoch_it_kept(tmp_path: Path) -> None:
    request = faces_request(
        tmp_path / "held",
        shots=(5,),
        methods=("prototype", "linear"),
        recipe={**QUICK, "epochs": 3},
        hold_out=True,
    )
    _, document = run(request)
    assert document["protocol"]["hold_out"] is True
    prototype, linear = document["runs"]
    assert (prototype["support_size"], prototype["held_out_size"]) == (10, 0)
    assert (linear["support_size"], linear["held_out_size"]) == (8, 2)
    assert prototype["best_epoch"] is None
    assert linear["best_epoch"] in {1, 2, 3}
    parser = argparse.ArgumentParser()
    evidence.add_bench_commands(parser.add_subparsers(dest="bench_command"))
    assert parser.parse_args(["accuracy", "--dataset", "textiles", "--hold-out"]).hold_out


def test_recipe_options_become_settings_over_the_preset() -> None:
    parser = argparse.ArgumentParser()
    evidence.add_bench_commands(parser.add_subparsers(dest="bench_command"))
    base = ["accuracy", "--dataset", "textiles"]
    assert evidence.recipe_settings(parser.parse_args(base)) == {"preset": "paper"}
    args = parser.parse_args(
        [*base, "--recipe", "default", "--head-lr", "3e-4", "--min-crop", "0.8", "--device", "cpu"]
    )
    settings = evidence.recipe_settings(args)
    assert settings == {
        "preset": "default",
        "head_lr": 3e-4,
        "crop_scale": (0.8, 1.0),
        "device": "cpu",
    }
    recipe = recipe_from_settings(settings)
    assert (recipe.head_lr, recipe.crop_scale, recipe.lr) == (3e-4, (0.8, 1.0), 3e-4)
    assert recipe.head_init is HeadInit.PROTOTYPE
    normal = recipe_from_settings(
        evidence.recipe_settings(
            parser.parse_args([*base, "--recipe", "default", "--head-init", "normal"])
        )
    )
    assert normal.head_init is HeadInit.NORMAL
    assert normal.replace(head_init="prototype") == recipe_from_settings({"preset": "default"})
    on = evidence.recipe_settings(parser.parse_args([*base, "--bf16", "on"]))
    assert (on["bf16"], recipe_from_settings(on).bf16.value) == ("on", "on")
    assert "bf16" not in evidence.recipe_settings(parser.parse_args(base))
    full = evidence.recipe_settings(parser.parse_args([*base, "--full-lr", "1e-5"]))
    assert recipe_from_settings(full).method_learning_rate("full") == 1e-5
    ties = evidence.recipe_settings(parser.parse_args([*base, "--hold-out", "--tie-break", "loss"]))
    assert recipe_from_settings(ties).tie_break is TieBreak.LOSS
    assert recipe_from_settings({"preset": "default"}).tie_break is TieBreak.EARLIEST


def test_a_results_folder_is_recalibrated_from_the_scores_its_runs_kept(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    _, document = run(faces_request(folder, shots=(1,), queries_per_class=10))
    stale = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    for run_row in stale["runs"]:
        run_row["calibration"] = {"stale": True}
    (folder / "results.json").write_text(json.dumps(stale), encoding="utf-8")
    (folder / "results.md").write_text("stale\n", encoding="utf-8")
    assert recalibrate_results(folder)
    again = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    for fresh, first in zip(again["runs"], document["runs"], strict=True):
        # the kept logits are rounded to 5 decimals: the same sets, ECE to far below a point
        new, old = fresh["calibration"], first["calibration"]
        assert (new["coverage"], new["set_size"]) == (old["coverage"], old["set_size"])
        assert new["ece_after"] == pytest.approx(old["ece_after"], abs=1e-3)
        assert new["resplits"]["coverage"] == old["resplits"]["coverage"]
    assert [s["calibration"]["runs"] for s in again["summaries"]] == [1, 1]
    assert "ECE before -> after" in (folder / "results.md").read_text(encoding="utf-8")
    for run_row in again["runs"]:
        del run_row["query_scores"]
    (folder / "results.json").write_text(json.dumps(again), encoding="utf-8")
    assert not recalibrate_results(folder)
