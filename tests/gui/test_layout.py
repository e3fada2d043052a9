"""The window fits a laptop: 1280 x 720 and 1024 x 768 with every control reachable."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from ept_studio.gui.main_window import GALLERY_SHARE, SIDE_MAX_WIDTH, MainWindow

pytestmark = pytest.mark.gui

SCREENS = [(1280, 720), (1024, 768)]


def _fits(window: MainWindow, width: int, height: int) -> None:
    window.resize(width, height)
    QApplication.processEvents()
    hint, minimum = window.minimumSizeHint(), window.minimumSize()
    assert hint.width() <= width, f"minimum width {hint.width()}"
    assert hint.height() <= height, f"minimum height {hint.height()}"
    assert minimum.width() <= width
    assert minimum.height() <= height
    assert (window.width(), window.height()) == (width, height)


def _inside(window: MainWindow, widget: QWidget) -> bool:
    """Shown, and wholly inside the window (not clipped by it or by its parents)."""
    if not widget.isVisible():
        return False
    top_left = widget.mapTo(window, QPoint(0, 0))
    return window.rect().contains(QRect(top_left, widget.size()))


@pytest.mark.parametrize(("width", "height"), SCREENS)
def test_the_welcome_page_fits(window: MainWindow, width: int, height: int) -> None:
    _fits(window, width, height)
    for button in (window.welcome.new_button, window.welcome.demo_button):
        assert _inside(window, button)
    assert _inside(window, window.status.notice)


@pytest.mark.parametrize(("width", "height"), SCREENS)
def test_the_project_window_fits_with_every_tab_reachable(
    window: MainWindow, tmp_path: Path, width: int, height: int
) -> None:
    assert window.file_menu.new_project_at(tmp_path / "project")
    _fits(window, width, height)
    window.side.setCurrentWidget(window.training)
    QApplication.processEvents()
    assert _inside(window, window.training.train_button)
    assert _inside(window, window.training.cancel_button)
    window.side.setCurrentWidget(window.results)
    QApplication.processEvents()
    assert _inside(window, window.results.predict_all)
    window.side.setCurrentWidget(window.bins)
    QApplication.processEvents()
    assert _inside(window, window.bins.bins)
    assert _inside(window, window.status.notice)


def test_the_gallery_gets_the_larger_share(window: MainWindow, tmp_path: Path) -> None:
    window.resize(1280, 720)
    assert window.file_menu.new_project_at(tmp_path / "project")
    QApplication.processEvents()
    gallery, side = window.splitter.sizes()
    assert gallery > side
    assert side <= SIDE_MAX_WIDTH
    assert side >= window.side.minimumSizeHint().width()
    if window.side.minimumSizeHint().width() <= 0.38 * 1280:  # the side tabs allow the share
        assert abs(gallery / (gallery + side) - GALLERY_SHARE / 100) < 0.02


def test_long_status_messages_do_not_widen_the_window(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    assert window.file_menu.new_project_at(tmp_path / "project")
    window.resize(1024, 768)
    indicator = window.status.training
    assert indicator is not None
    indicator.show()
    indicator.results.show()
    indicator.text.setText("Training: step 1234 of 5678, about 12 h 34 min left " * 4)
    window.status.showMessage("A very long status message about the import " * 20)
    window.backbone_button.show()  # as on a machine without the offline backbone
    window.backbone_busy.show()
    QApplication.processEvents()
    assert window.minimumSizeHint().width() <= 1024
    assert window.status.minimumSizeHint().width() <= 1024
    assert window.width() == 1024
    assert indicator.text.text().startswith("Training: step 1234 of 5678")


def test_the_import_report_does_not_push_the_window_off_a_720_screen(
    window: MainWindow, tmp_path: Path
) -> None:
    assert window.file_menu.new_project_at(tmp_path / "project")
    window.resize(1280, 720)
    window.side.setCurrentWidget(window.results)  # the tallest page: it scrolls
    window.report.show()
    QApplication.processEvents()
    assert window.minimumSizeHint().height() <= 720
    assert window.height() == 720
    assert window.side.currentWidget() is window.results
    assert window.side.indexOf(window.training) == 1
    assert _inside(window, window.results.predict_all)
