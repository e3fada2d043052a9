"""The Train tab's "Slices per series" setting in the real window (offscreen), on a real project of
one 12-slice CT series (Brain) and three single CT images (Bone): the number set is the one the
run takes (``TrainingOptions.slices_per_series``) and the one the plan states; "All" is 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from labelled_projects import write_layout, write_series
from pytestqt.qtbot import QtBot
from support import tiny_backbone

from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.training_settings import ALL_SLICES
from ept_studio.services.model import DEFAULT_SLICES_PER_SERIES
from ept_studio.services.project import Project, import_paths

pytestmark = pytest.mark.gui


def _open_series_project(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    root = write_layout(tmp_path / "data", {"Bone": ["P2", "P3", "P4"]})
    write_series(root / "Brain" / "ct", 12, patient="P1", seed=1)
    locations = tmp_path / "app-data" / "locations"  # the app's own (EPT_STUDIO_DATA)
    with Project.create(tmp_path / "project", locations_dir=locations) as project:
        import_paths(project, [root], folders_as_classes=True, thumbnails=False)
    window.jobs.backbone = tiny_backbone()
    assert window.file_menu.open_project_at(tmp_path / "project")
    window.side.setCurrentWidget(window.training)
    qtbot.waitUntil(lambda: window.training.plan is not None, timeout=10_000)


def _series_note(window: MainWindow) -> str:
    notes = window.training.notes_label.text().splitlines()
    return next((note for note in notes if "series of 12 slices" in note), "")


def test_the_slices_set_are_the_slices_trained_and_planned(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    _open_series_project(qtbot, window, tmp_path)
    panel = window.training
    spin = panel.advanced.slices_per_series
    assert spin.value() == DEFAULT_SLICES_PER_SERIES == 8
    assert panel.options().slices_per_series == 8
    assert "one long CT series does not outweigh the others" in spin.toolTip()
    assert "1 series of 12 slices: 8 slices taken from each" in _series_note(window)

    spin.setValue(3)
    assert panel.options().slices_per_series == 3
    assert panel.plan is not None
    assert panel.plan.train_images == 3 + 3
    note = _series_note(window)
    assert "1 series of 12 slices: 3 slices taken from each" in note
    assert "9 slices are not trained on" in note


def test_all_takes_every_slice(qtbot: QtBot, window: MainWindow, tmp_path: Path) -> None:
    _open_series_project(qtbot, window, tmp_path)
    panel = window.training
    spin = panel.advanced.slices_per_series
    spin.setValue(0)
    assert spin.text() == ALL_SLICES == "All"
    assert panel.options().slices_per_series == 0
    assert panel.plan is not None
    assert panel.plan.train_images == 12 + 3
    assert _series_note(window) == ""
    assert spin.maximum() == 1000
