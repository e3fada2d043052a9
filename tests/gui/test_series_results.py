"""The Results tab's per-series table in the real window (offscreen), on a real project whose
inference run stored chosen scores (``series_runs``): one row per series with its slice count,
the max aggregation changes a row's score to what the service computes, a double-click opens
the decisive slice in the Viewer with the run's attention, and the table is hidden while no shown
series has two slices."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QTableWidget, QTableWidgetItem
from pytestqt.qtbot import QtBot
from series_runs import inference_run, loose_ids, series_project, slice_ids

import ept_studio.services.project as project_services
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.series_results import AGGREGATION_TOOLTIP
from ept_studio.services.project import open_project

pytestmark = pytest.mark.gui


def _project(tmp_path: Path, slices_kept: int = 4) -> tuple[Path, int]:
    """The project folder and its run; ``slices_kept`` of the CT series' 4 slices stay in it."""
    project = series_project(tmp_path, tmp_path.parent / "app-data" / "locations")  # the app's
    run_id = inference_run(project, calibrated=True)
    project.remove_images(slice_ids(project)[slices_kept:])
    folder = project.folder
    project.close()
    return folder, run_id


def _open(qtbot: QtBot, window: MainWindow, folder: Path, run_id: int) -> None:
    assert window.file_menu.open_project_at(folder)
    window.show_results()
    qtbot.waitUntil(lambda: window.results.view.results is not None, timeout=10_000)
    assert window.results.shown_run == run_id


def _cells(window: MainWindow) -> list[list[str]]:
    table = window.results.series.table
    return [
        [_item(table, row, column).text() for column in range(table.columnCount())]
        for row in range(table.rowCount())
    ]


def _item(table: QTableWidget, row: int, column: int) -> QTableWidgetItem:
    item = table.item(row, column)
    assert item is not None
    return item


def test_series_rows_and_the_max_aggregation(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    folder, run_id = _project(tmp_path / "slices")
    _open(qtbot, window, folder, run_id)
    series = window.results.series
    assert "'is the finding present anywhere'" in series.aggregation.toolTip()
    assert series.aggregation.toolTip() == AGGREGATION_TOOLTIP
    assert series.chosen_aggregation == "mean"
    with open_project(folder) as project:
        first, middle, third = slice_ids(project)[:3]
        photo0, photo1 = loose_ids(project)
        by_max = project_services.series_predictions(project, run_id, "max")
    assert _cells(window) == [  # each series as the gallery's tile shows it: its middle slice
        [f"#{middle} (4 slices)", "Bone 55 %", f"image {first}"],
        [f"#{photo0} (1 slice)", "Brain 70 %", f"image {photo0}"],
        [f"#{photo1} (1 slice)", "Bone 75 %", f"image {photo1}"],
    ]
    series.set_aggregation("max")
    assert by_max[0].probability == pytest.approx(0.9 / 1.7)
    assert _cells(window)[0] == [
        f"#{middle} (4 slices)",
        f"Brain {by_max[0].probability * 100:.0f} %",
        f"image {third}",
    ]
    assert _cells(window)[0][1] == "Brain 53 %"
    assert [row[1] for row in _cells(window)[1:]] == ["Brain 70 %", "Bone 75 %"]


def test_a_double_click_opens_the_decisive_slice_with_attention(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    folder, run_id = _project(tmp_path / "slices")
    _open(qtbot, window, folder, run_id)
    series = window.results.series
    series.set_aggregation("max")
    with open_project(folder) as project:
        third = slice_ids(project)[2]
    table = series.table
    item = _item(table, 0, 0)
    table.scrollToItem(item)
    centre = table.visualItemRect(item).center()
    opened = []
    series.slice_opened.connect(lambda image, run: opened.append((image, run)))
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert opened == [(third, run_id)]
    assert window.main_tabs.currentWidget() is window.viewer
    assert window.viewer.image_id == third
    assert window.viewer.overlay_shown


def test_the_table_shows_only_once_a_series_has_two_slices(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    folder, run_id = _project(tmp_path / "single", slices_kept=1)
    _open(qtbot, window, folder, run_id)
    series = window.results.series
    assert [p.slice_count for p in series.predictions] == [1, 1, 1]
    assert not series.isVisible()
    assert not series.save_reports.isVisible()
    assert window.results.view.isVisible()

    folder, run_id = _project(tmp_path / "two", slices_kept=2)
    _open(qtbot, window, folder, run_id)
    assert [p.slice_count for p in series.predictions] == [2, 1, 1]
    assert series.isVisible()
    assert series.save_reports.isVisible()
    assert series.table.rowCount() == 3

    window.results.shown.setCurrentIndex(-1)  # no results chosen: nothing to list
    assert not series.isVisible()
