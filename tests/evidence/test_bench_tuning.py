"""``bench tune-time``: the app's Train, timed on a real project of offline images."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from support import tiny_backbone

from ept_studio.common.errors import ConfigError
from ept_studio.core.training import RECIPES
from ept_studio.data.store import LabelMode
from ept_studio.evidence.bench_tuning import (
    BUDGET_SECONDS,
    Precision,
    TuneTimeReport,
    plan_precisions,
    time_tuning,
    tune_time_markdown,
    write_support_folder,
)
from ept_studio.services.project.training import held_out_sizes


def test_the_support_folder_has_k_images_of_c_offline_classes(tmp_path: Path) -> None:
    names = write_support_folder(tmp_path, shots=3, classes=4)
    assert names == ["nominal", "local defect", "global defect", "face"]
    for name in names:
        files = sorted((tmp_path / name).glob("*.png"))
        assert len(files) == 3
        with Image.open(files[0]) as image:
            assert min(image.size) >= 25
    with pytest.raises(ConfigError, match="2 to 5 classes"):
        write_support_folder(tmp_path / "x", shots=3, classes=6)


def test_held_out_sizes_follow_the_support_split_rule() -> None:
    assert held_out_sizes([5, 5, 5, 5], True, LabelMode.SINGLE) == [1, 1, 1, 1]
    assert held_out_sizes([10, 5], True, LabelMode.SINGLE) == [2, 1]
    assert held_out_sizes([10, 4], True, LabelMode.SINGLE) == [0, 0]
    assert held_out_sizes([10, 10], False, LabelMode.SINGLE) == [0, 0]
    assert held_out_sizes([10, 10], True, LabelMode.MULTI) == [0, 0]


def _cells(table: str, preset: str) -> list[str]:
    row = next(line for line in table.splitlines() if line.startswith(f"| {preset} |"))
    return [c.strip() for c in row.split("|")[1:-1]]


def test_each_preset_is_timed_through_the_apps_train() -> None:
    plan = plan_precisions(("off",), "cpu")
    report = time_tuning(
        5, 4, ("default", "paper"), device="cpu", plan=plan, backbone=tiny_backbone()
    )
    default, paper = report.results
    assert (default.preset, paper.preset) == ("default", "paper")
    for result in report.results:
        assert result.train_images == 20
        assert result.held_out == 4
        assert 0 < result.setup_seconds < result.seconds
        assert result.device.startswith("CPU")
        assert result.precision == Precision("off", False, "off, as chosen")
    # 16 support images in batches of 4: the default's 10 epochs are raised to its 50-step floor,
    # the paper's 20 epochs are 80 steps.
    assert default.steps == RECIPES["default"].total_steps(16) == 52
    assert paper.steps == RECIPES["paper"].total_steps(16) == 80
    table = tune_time_markdown(report)
    assert "- fp32: bf16 off, off, as chosen." in table
    cells = _cells(table, "default")
    assert cells[1:6] == ["20 (4)", "52", f"{default.seconds:.1f}", "-", "-"]
    fp32_budget, bf16_budget = cells[8].split(" / ")
    assert float(fp32_budget) == pytest.approx(default.seconds / BUDGET_SECONDS, abs=0.006)
    assert bf16_budget == "-"
    assert float(cells[9].split(" / ")[0]) == pytest.approx(
        default.seconds / paper.seconds, abs=0.006
    )


def test_fp32_and_bf16_are_timed_side_by_side_with_their_ratio() -> None:
    plan = plan_precisions(("off", "on"), "cpu")
    assert [(p.setting, p.label) for p in plan.timed] == [("off", "fp32"), ("on", "bf16")]
    report = time_tuning(5, 2, ("default",), device="cpu", plan=plan, backbone=tiny_backbone())
    fp32, bf16 = report.results
    assert (fp32.precision.bf16, bf16.precision.bf16) == (False, True)
    assert bf16.precision.reason == "on, as chosen"
    # The same images, split and recipe: only the precision differs.
    assert (fp32.train_images, fp32.held_out, fp32.steps) == (10, 2, 50)
    assert (bf16.train_images, bf16.held_out, bf16.steps) == (10, 2, 50)
    assert report.result("default", True) is bf16
    assert report.result("paper", True) is None
    table = tune_time_markdown(report)
    assert "- bf16: bf16 on, on, as chosen." in table
    cells = _cells(table, "default")
    assert cells[3:5] == [f"{fp32.seconds:.1f}", f"{bf16.seconds:.1f}"]
    assert float(cells[5]) == pytest.approx(bf16.seconds / fp32.seconds, abs=0.006)
    per_step = [float(v) for v in cells[6].split(" / ")]
    assert per_step == pytest.approx([fp32.seconds_per_step, bf16.seconds_per_step], abs=0.006)
    assert cells[9] == "- / -"  # no paper preset was timed


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / f"cpuinfo-{len(flags)}"
    path.write_text(f"model name\t: Test CPU\nflags\t\t: fpu sse2 {flags}\n", encoding="utf-8")
    return path


def test_auto_is_timed_as_bf16_only_where_it_turns_bf16_on(tmp_path: Path) -> None:
    cache = tmp_path / "bf16-check.json"
    plain = plan_precisions(("off", "auto"), "cpu", cpuinfo=_cpuinfo(tmp_path, "avx2"), cache=cache)
    assert [p.label for p in plain.timed] == ["fp32"]
    assert plain.not_timed == (Precision("auto", False, "off: this CPU has no AVX512-BF16 or AMX"),)
    flagged = _cpuinfo(tmp_path, "avx512f avx512_bf16")
    faster = plan_precisions(
        ("auto", "off"), "cpu", cpuinfo=flagged, measure=lambda: (0.7, 0.5), cache=cache
    )
    assert [(p.setting, p.bf16) for p in faster.timed] == [("off", False), ("auto", True)]
    assert faster.timed[1].reason == "on: this CPU has AVX512-BF16 and ran the check 1.4x faster"
    assert faster.not_timed == ()
    with pytest.raises(ConfigError, match="at least one bf16 setting"):
        plan_precisions((), "cpu")


def test_the_table_says_which_setting_was_not_timed_twice(tmp_path: Path) -> None:
    plan = plan_precisions(
        ("off", "auto"), "cpu", cpuinfo=_cpuinfo(tmp_path, "avx2"), cache=tmp_path / "c.json"
    )
    report = TuneTimeReport(5, 4, (), plan)
    table = tune_time_markdown(report)
    assert (
        "- bf16 auto is fp32 here (off: this CPU has no AVX512-BF16 or AMX): not timed twice."
        in table
    )


def test_tune_time_takes_the_bf16_settings_to_time() -> None:
    from ept_studio.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["bench", "tune-time"]).bf16 == ("off", "auto")
    assert parser.parse_args(["bench", "tune-time", "--bf16", "off, ON"]).bf16 == ("off", "on")
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "tune-time", "--bf16", "off,fast"])
