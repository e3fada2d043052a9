"""``bench sweep-report``: real (miniature) accuracy documents read back as a recipe table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_accuracy import faces_request, run

from ept_studio.cli import main
from ept_studio.common.errors import ConfigError
from ept_studio.core.training import PAPER_RECIPE, RECIPES
from ept_studio.evidence.sweep_report import (
    BaselineGain,
    baseline_gains,
    load_sweep,
    paired_interval,
    preset_in_command,
    recipe_gains,
    recipe_name,
    sweep_markdown,
    versus_markdown,
    wide_markdown,
    with_hold_out,
)

QUICK_DEFAULT = {"preset": "default", "device": "cpu", "min_steps": 2, "epochs": 1}


def faces_k1(out: Path, recipe: dict[str, Any]) -> None:
    """Three K = 1 draws of prototype and linear on lfw-faces, written to ``out``."""
    request = faces_request(
        out, shots=(1,), draws=3, methods=("prototype", "linear"), recipe=recipe
    )
    run(request)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    faces_k1(root / "faces-k1", QUICK_DEFAULT)
    return root


@pytest.fixture(scope="module")
def two_recipes(sweep: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sweep's document and the same draws with a normal-init head."""
    root = tmp_path_factory.mktemp("two-recipes")
    shutil.copytree(sweep / "faces-k1", root / "faces-k1")
    faces_k1(root / "faces-k1-normal", {**QUICK_DEFAULT, "head_init": "normal"})
    return root


def runs_of(root: Path, name: str = "faces-k1") -> list[dict[str, Any]]:
    document = json.loads((root / name / "results.json").read_text(encoding="utf-8"))
    return list(document["runs"])


def test_cells_hold_every_draw_and_the_documents_interval(sweep: Path) -> None:
    cells = load_sweep([sweep])
    assert [(c.dataset, c.shots, c.method, c.runs) for c in cells] == [
        ("lfw-faces", 1, "linear", 3),
        ("lfw-faces", 1, "prototype", 3),
    ]
    runs = runs_of(sweep)
    for cell in cells:
        mine = [r["metrics"]["accuracy"] for r in runs if r["method"] == cell.method]
        assert list(cell.by_draw.values()) == pytest.approx(mine)
        assert cell.mean == pytest.approx(np.mean(mine))
        assert cell.sd == pytest.approx(np.std(mine, ddof=1))
        assert cell.ci_low is not None
        assert cell.ci_high is not None
        assert cell.ci_low <= cell.mean <= cell.ci_high
        assert cell.recipe == "default + epochs=1, min_steps=2"
        assert cell.classes == 2
        assert cell.query_mean == 8


def test_the_gain_over_prototype_is_paired_by_draw(sweep: Path) -> None:
    (gain,) = baseline_gains(load_sweep([sweep]))
    runs = runs_of(sweep)
    by = {(r["method"], r["draw"]): r["metrics"]["accuracy"] for r in runs}
    differences = [by[("linear", d)] - by[("prototype", d)] for d in range(3)]
    assert gain.method == "linear"
    assert gain.draws == 3
    assert gain.gain == pytest.approx(np.mean(differences))
    assert gain.wins == sum(d > 0 for d in differences)
    assert min(differences) - 1e-9 <= gain.ci_low <= gain.gain <= gain.ci_high
    assert gain.ci_high <= max(differences) + 1e-9


def test_the_markdown_has_a_row_per_cell_and_a_verdict_per_method(sweep: Path) -> None:
    cells = load_sweep([sweep])
    markdown = sweep_markdown(cells, baseline_gains(cells))
    rows = [line for line in markdown.splitlines() if line.startswith("| lfw-faces")]
    assert len(rows) == 2
    assert "draws" in rows[0]
    assert rows[1].split("|")[8].strip() == "-"
    assert "- linear (default + epochs=1, min_steps=2 recipe): " in markdown


def test_the_wide_table_puts_k_in_columns(sweep: Path) -> None:
    cells = load_sweep([sweep])
    recipe = cells[0].recipe
    table = wide_markdown(cells, baseline_gains(cells), recipe)
    lines = table.splitlines()
    assert lines[0] == "| dataset | method | K = 1: accuracy % (gain, pp), s/run |"
    assert [line.split("|")[2].strip() for line in lines[2:]] == ["prototype", "linear"]
    assert lines[2].endswith("[2 cl.] |")
    (gain,) = baseline_gains(cells)
    assert f"({100 * gain.gain:+.1f})" in lines[3]
    with pytest.raises(ConfigError, match="no runs with the paper recipe"):
        wide_markdown(cells, [], "paper")


def test_the_same_cell_twice_is_kept_once_and_a_different_one_refused(
    sweep: Path, tmp_path: Path
) -> None:
    shutil.copytree(sweep / "faces-k1", tmp_path / "again")
    assert load_sweep([sweep, tmp_path]) == load_sweep([sweep])
    path = tmp_path / "again" / "results.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document["runs"][0]["metrics"]["accuracy"] += 0.125
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ConfigError, match="in two results files with different numbers"):
        load_sweep([sweep, tmp_path])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"no results\.json"):
        load_sweep([tmp_path / "empty"])
    with pytest.raises(ConfigError, match="neither"):
        load_sweep([tmp_path / "missing"])


def test_a_preset_is_named_whatever_its_seed_and_device() -> None:
    for name, preset in RECIPES.items():
        assert recipe_name(preset.replace(seed=7, device="cpu").to_dict()) == name
    changed = RECIPES["default"].replace(lr=1e-2, crop_scale=(0.8, 1.0)).to_dict()
    assert recipe_name(changed) == "custom"
    assert recipe_name(changed, "default") == "default + crop_scale=0.8-1, lr=0.01"


def test_the_tie_break_names_a_recipe_only_where_a_held_out_set_reads_it() -> None:
    default = RECIPES["default"]
    by_loss = default.replace(tie_break="loss").to_dict()
    older = {k: v for k, v in default.to_dict().items() if k != "tie_break"}  # before tie_break
    assert recipe_name(by_loss, "default", "ept") == "default"
    assert recipe_name(by_loss, "default", "ept", held_out=True) == "default + tie_break=loss"
    assert recipe_name(older, "default", "ept", held_out=True) == "default"


def test_a_recipe_is_named_as_its_method_reads_it() -> None:
    default = RECIPES["default"]
    assert default.full_lr == 1e-5
    older = {k: v for k, v in default.to_dict().items() if k != "full_lr"}  # before full_lr
    for method in ("ept", "lora", "bias", "linear"):
        assert recipe_name(default.replace(full_lr=3e-5).to_dict(), "default", method) == (
            recipe_name(default.to_dict(), "default", method)
        )
        assert recipe_name(older, "default", method) == recipe_name(
            default.to_dict(), "default", method
        )
    by_lr = {**older, "lr": 1e-5}  # full fine-tuning at 1e-5 asked for with --lr
    full = RECIPES["default"].to_dict()
    assert recipe_name(by_lr, "default", "ept") == "default + lr=1e-05"
    assert recipe_name(by_lr, "default", "full") == "default"
    assert recipe_name(older, "default", "full") == "default + lr=0.0003"  # its full ran at lr
    assert recipe_name({**full, "full_lr": 2e-5}, "default", "full") == "default + lr=2e-05"
    paper_full = PAPER_RECIPE.replace(full_lr=1e-5).to_dict()
    assert recipe_name(paper_full, "paper", "full") == "paper + head_lr=0.0006, lr=1e-05"
    assert recipe_name(paper_full, "paper", "ept") == "paper"


def test_a_recipe_without_prototype_runs_is_paired_with_the_defaults(
    sweep: Path, tmp_path: Path
) -> None:
    document = json.loads((sweep / "faces-k1" / "results.json").read_text(encoding="utf-8"))
    document["recipe"]["crop_scale"] = [0.8, 1.0]
    document["runs"] = [r for r in document["runs"] if r["method"] != "prototype"]
    document["summaries"] = [s for s in document["summaries"] if s["method"] != "prototype"]
    (tmp_path / "crop").mkdir()
    (tmp_path / "crop" / "results.json").write_text(json.dumps(document), encoding="utf-8")
    cells = load_sweep([sweep, tmp_path])
    assert sorted(c.method for c in cells) == ["linear", "linear", "prototype"]
    own, borrowed = sorted(baseline_gains(cells), key=lambda g: "crop" in g.recipe)
    assert borrowed.recipe == PROTOTYPE_HEAD.replace("default + ", "default + crop_scale=0.8-1, ")
    assert (borrowed.gain, borrowed.draws, borrowed.wins) == (own.gain, own.draws, own.wins)
    assert (own.recipe, own.draws) == (PROTOTYPE_HEAD, 3)


def test_a_hold_out_run_is_its_own_recipe(sweep: Path, tmp_path: Path) -> None:
    document = json.loads((sweep / "faces-k1" / "results.json").read_text(encoding="utf-8"))
    document["protocol"]["hold_out"] = True
    (tmp_path / "held").mkdir()
    (tmp_path / "held" / "results.json").write_text(json.dumps(document), encoding="utf-8")
    cells = load_sweep([sweep, tmp_path])
    assert {c.recipe for c in cells} == {PROTOTYPE_HEAD, f"{PROTOTYPE_HEAD}, hold_out"}
    assert with_hold_out("default") == "default + hold_out"


def test_old_documents_name_their_preset_from_the_command() -> None:
    assert preset_in_command("ept-studio bench accuracy --dataset x --recipe default") == "default"
    assert preset_in_command("ept-studio bench accuracy --recipe=default") == "default"
    assert preset_in_command("ept-studio bench accuracy --dataset x") == "paper"
    assert preset_in_command("") is None


def test_paired_intervals() -> None:
    assert paired_interval(np.array([0.1])) == (0.1, 0.1)
    low, high = paired_interval(np.array([0.05, 0.1, 0.15, 0.2, 0.1]))
    assert 0.05 <= low < 0.12 < high <= 0.2
    assert (
        paired_interval(np.array([0.1, -0.1, 0.0]))[0]
        < 0
        < paired_interval(np.array([0.1, -0.1, 0.0]))[1]
    )


@pytest.mark.parametrize(
    ("low", "high", "verdict"), [(0.01, 0.2, "beats"), (-0.1, 0.1, "ties"), (-0.2, -0.01, "below")]
)
def test_verdicts(low: float, high: float, verdict: str) -> None:
    gain = BaselineGain("d", 5, "default", "ept", 5, (low + high) / 2, low, high, 3)
    assert gain.verdict == verdict


def test_the_command_prints_and_writes_the_table(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "table.md"
    assert main(["bench", "sweep-report", str(sweep), "--out", str(out)]) == 0
    table = out.read_text(encoding="utf-8")
    assert table.count("| lfw-faces (2 classes) | 1 |") == 2
    assert table in capsys.readouterr().out


PROTOTYPE_HEAD = "default + epochs=1, min_steps=2"
NORMAL_HEAD = "default + epochs=1, head_init=normal, min_steps=2"


def test_one_recipe_against_another_is_paired_by_method_and_draw(two_recipes: Path) -> None:
    cells = load_sweep([two_recipes])
    assert {c.recipe for c in cells} == {PROTOTYPE_HEAD, NORMAL_HEAD}
    (gain,) = recipe_gains(cells, PROTOTYPE_HEAD, NORMAL_HEAD)
    by = {
        (name, r["draw"]): r["metrics"]["accuracy"]
        for name in ("faces-k1", "faces-k1-normal")
        for r in runs_of(two_recipes, name)
        if r["method"] == "linear"
    }
    differences = [by[("faces-k1-normal", d)] - by[("faces-k1", d)] for d in range(3)]
    assert (gain.method, gain.recipe, gain.draws) == ("linear", NORMAL_HEAD, 3)
    assert gain.gain == pytest.approx(np.mean(differences))
    assert gain.wins == sum(d > 0 for d in differences)
    assert any(d != 0 for d in differences)  # the head's start changed what was learned
    table = versus_markdown(cells, [gain], PROTOTYPE_HEAD, NORMAL_HEAD)
    (row,) = [line for line in table.splitlines() if line.startswith("| lfw-faces")]
    assert row.startswith("| lfw-faces | 1 | linear |")
    assert f"{100 * gain.gain:+.1f} (" in row
    assert f"- linear: {NORMAL_HEAD} beats {PROTOTYPE_HEAD} in" in table
    with pytest.raises(ConfigError, match="no runs with the paper recipe"):
        recipe_gains(cells, "paper", NORMAL_HEAD)


def test_the_command_compares_two_recipes(
    two_recipes: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "sweep-report", str(two_recipes), "--versus", PROTOTYPE_HEAD, NORMAL_HEAD]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert f"| dataset | K | method | {PROTOTYPE_HEAD} % | {NORMAL_HEAD} % |" in shown
    assert shown.count("| lfw-faces | 1 | linear |") == 1


def test_recipes_with_different_draws_are_shown_on_the_draws_they_share() -> None:
    from ept_studio.evidence.sweep_report import SweepCell, paired_gain

    def cell(recipe: str, by_draw: dict[int, float]) -> SweepCell:
        values = list(by_draw.values())
        sd = float(np.std(values, ddof=1))
        return SweepCell(
            "lfw-faces", "Faces", 5, recipe, "ept", "accuracy", by_draw,
            float(np.mean(values)), sd, None, None, 10.0, 0, 2, 40.0,
        )  # fmt: skip

    five = cell("default", {0: 0.5, 1: 0.6, 2: 0.9, 3: 0.9, 4: 0.8})
    two = cell("default + bf16=on", {0: 0.5, 1: 0.7})
    gain = paired_gain(two, five)
    assert gain is not None
    assert (gain.draws, gain.gain) == (2, pytest.approx(0.05))
    table = versus_markdown([five, two], [gain], "default", "default + bf16=on")
    (row,) = [line for line in table.splitlines() if line.startswith("| lfw-faces")]
    columns = [part.strip() for part in row.split("|")]
    assert columns[4] == "55.0 ± 7.1 (2 of 5 draws)"  # not the five draws' 74.0 ± 17.1
    assert columns[5] == "60.0 ± 14.1"
