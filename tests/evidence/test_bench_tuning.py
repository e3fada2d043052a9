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


def test_each_preset_is_timed_through_the_apps_train() -> None:
    results = time_tuning(5, 4, ("default", "paper"), device="cpu", backbone=tiny_backbone())
    default, paper = results
    assert (default.preset, paper.preset) == ("default", "paper")
    for result in results:
        assert result.train_images == 20
        assert result.held_out == 4
        assert 0 < result.setup_seconds < result.seconds
        assert result.device.startswith("CPU")
    # 16 support images in batches of 4: the default's 10 epochs are raised to its 50-step floor,
    # the paper's 20 epochs are 80 steps.
    assert default.steps == RECIPES["default"].total_steps(16) == 52
    assert paper.steps == RECIPES["paper"].total_steps(16) == 80
    table = tune_time_markdown(results, 5, 4)
    row = next(line for line in table.splitlines() if line.startswith("| default |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:3] == ["20 (4)", "52"]
    assert float(cells[6]) == pytest.approx(default.seconds / BUDGET_SECONDS, abs=0.006)
    assert float(cells[7]) == pytest.approx(default.seconds / paper.seconds, abs=0.006)
