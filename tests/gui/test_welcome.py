"""The shell a clinician meets first: the welcome page, reopening the last project, New project,
empty-state hints and the Help menu."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import PySide6
import pytest
from gui_support import import_by_drop
from PySide6.QtCore import QSettings, Qt, qVersion
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QDialogButtonBox, QLabel, QMenu, QMessageBox
from pytestqt.qtbot import QtBot

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.gui.app import reopen_last_project
from ept_studio.gui.class_bins import NO_CLASS_HINT
from ept_studio.gui.gallery_panel import IMPORT_HINT, NO_MATCH_HINT, PREDICT_FIRST_HINT
from ept_studio.gui.help import HelpDialog, library_versions, menu_shortcuts
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.new_project_dialog import NewProjectDialog
from ept_studio.gui.settings import AppSettings
from ept_studio.gui.status import SHORT_NOTICE
from ept_studio.gui.welcome import FLOW_STEPS
from ept_studio.services.project import LabelMode, is_project_folder
from ept_studio.services.project.demo import MANIFEST
from ept_studio.services.project.gallery import GalleryFilter, GalleryView

pytestmark = pytest.mark.gui


def _texts(window: MainWindow) -> list[str]:
    return [label.text() for label in window.welcome.findChildren(QLabel)]


def test_a_first_start_shows_the_welcome_page_not_an_empty_gallery(window: MainWindow) -> None:
    assert window.pages.currentWidget() is window.welcome
    assert window.welcome.isVisible()
    assert not window.gallery.isVisible()
    buttons = [window.welcome.new_button, window.welcome.demo_button, window.welcome.open_button]
    assert [b.text() for b in buttons] == ["New project…", "Open the demo", "Open a project…"]
    assert all(b.isVisible() and b.height() >= 48 for b in buttons)
    texts = _texts(window)
    for number, (title, detail) in enumerate(FLOW_STEPS, start=1):
        assert {str(number), title, detail} <= set(texts)
    assert FLOW_STEPS[0] == ("Add images", "drop DICOM/PNG files or folders")
    assert SHORT_NOTICE in texts
    assert window.welcome.no_recent.isVisible()
    assert not window.welcome.recent.isVisible()


def test_a_recent_project_opens_with_one_click(
    qtbot: QtBot, app_settings: AppSettings, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    window = MainWindow(app_settings)
    qtbot.addWidget(window)
    assert window.file_menu.new_project_at(first)
    assert window.file_menu.new_project_at(second)
    window.session.close()
    window.close()
    again = MainWindow(app_settings)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    assert again.welcome.recent_folders() == [second, first]
    row = again.welcome.recent.visualItemRect(again.welcome.recent.item(1)).center()
    qtbot.mouseClick(again.welcome.recent.viewport(), Qt.MouseButton.LeftButton, pos=row)
    assert again.session.folder == first
    assert again.pages.currentWidget() is again.splitter
    assert again.windowTitle() == "EPT Studio - first"
    again.session.close()


def test_the_last_project_is_reopened_at_start(
    qtbot: QtBot, app_settings: AppSettings, tmp_path: Path
) -> None:
    window = MainWindow(app_settings)
    qtbot.addWidget(window)
    assert window.file_menu.new_project_at(tmp_path / "chest", LabelMode.MULTI)
    window.session.close()
    assert app_settings.last_project == tmp_path / "chest"
    later = MainWindow(
        AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    )
    qtbot.addWidget(later)
    assert reopen_last_project(later)
    assert later.session.folder == tmp_path / "chest"
    assert later.session.multi_label
    assert later.status.currentMessage() == (
        f"Reopened your last project, “chest”, from {tmp_path}"
    )
    assert later.pages.currentWidget() is later.splitter
    later.session.close()


def test_a_last_project_that_is_gone_leaves_a_note_on_the_welcome_page(
    qtbot: QtBot, app_settings: AppSettings, tmp_path: Path
) -> None:
    app_settings.set_last_project(tmp_path / "moved away")
    window = MainWindow(app_settings)
    qtbot.addWidget(window)
    window.show()
    assert not reopen_last_project(window)
    assert window.session.project is None
    assert window.pages.currentWidget() is window.welcome
    assert window.welcome.note.isVisible()
    assert window.welcome.note.text() == (
        f"The last project, “moved away”, is no longer in {tmp_path}. "
        "If it was moved, open it where it is now."
    )


def test_close_project_returns_to_the_welcome_page_but_not_while_a_task_runs(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    assert window.file_menu.new_project_at(tmp_path / "study")

    def slow_task(cancel: Callable[[], bool]) -> Iterator[object]:
        yield "started"
        while not cancel():
            time.sleep(0.01)

    with qtbot.waitSignal(window.jobs.task_event, timeout=5_000):
        assert window.jobs.start("Prediction", slow_task)
    assert not window.close_project()
    assert window.status.currentMessage() == (
        "Prediction is running: cancel it or let it finish, then close the project."
    )
    with qtbot.waitSignal(window.jobs.finished, timeout=5_000):
        window.jobs.cancel()
    assert window.file_menu.actions()[5] is window.close_project_action  # after Open recent
    assert window.close_project_action.shortcut().toString() == "Ctrl+W"
    window.close_project_action.trigger()
    assert window.session.project is None
    assert window.pages.currentWidget() is window.welcome
    assert window.windowTitle() == "EPT Studio"
    assert window.welcome.recent_folders() == [tmp_path / "study"]
    assert window.settings.last_project is None  # the next start shows the welcome page
    assert window.gallery.model.rowCount() == 0
    window.main_tabs.setCurrentWidget(window.viewer)
    assert window.file_menu.open_project_at(tmp_path / "study")
    assert window.main_tabs.currentWidget() is window.gallery


def test_the_demo_button_opens_the_demo_project(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.mouseClick(window.welcome.demo_button, Qt.MouseButton.LeftButton)
    assert window.session.folder is not None
    assert window.pages.currentWidget() is window.splitter
    assert window.session.image_count() == len(MANIFEST) == 21
    assert [c.name for c in window.session.classes()] == ["CT", "MR", "US"]


def test_new_project_makes_a_folder_of_its_own_from_a_name(
    qtbot: QtBot, tmp_path: Path, samples: Path
) -> None:
    dialog = NewProjectDialog(tmp_path / "projects")
    qtbot.addWidget(dialog)
    create = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not create.isEnabled()  # no name yet
    assert dialog.error.text() == ""  # nor an error before anything is typed
    dialog.name.setText("Fundus vs histology")
    assert create.isEnabled()
    assert dialog.folder() == tmp_path / "projects" / "Fundus vs histology"
    assert str(tmp_path / "projects" / "Fundus vs histology") in dialog.preview.text()
    dialog.location.setText(str(samples.parent))
    dialog.name.setText(samples.name)  # the image folder itself: refused, with the reason
    assert not create.isEnabled()
    assert "is not empty (it holds 3 files or folders)" in dialog.error.text()
    dialog.name.setText("a/b")
    assert dialog.error.text().startswith("A project name cannot hold /")
    dialog.multi_label.setChecked(True)
    assert dialog.label_mode() is LabelMode.MULTI


def test_new_project_at_refuses_an_image_folder_and_creates_a_missing_one(
    window: MainWindow, samples: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warnings.append(text))
    before = sorted(samples.rglob("*"))
    assert not window.file_menu.new_project_at(samples)
    assert sorted(samples.rglob("*")) == before  # no project.db, cache/ or runs/ among the images
    assert len(warnings) == 1
    assert "is not empty" in warnings[0]
    assert "never mix with your images" in warnings[0]
    folder = tmp_path / "EPT Studio projects" / "study"
    assert window.file_menu.new_project_at(folder)
    assert is_project_folder(folder)
    assert window.status.currentMessage() == (
        f"New project “study” created in {folder}. Drop images on it, or File > Import…"
    )


def _has_text_pixels(window: MainWindow) -> bool:
    viewport = window.gallery.view.viewport()
    image = viewport.grab().toImage()
    base = viewport.palette().color(viewport.backgroundRole())
    row = image.height() // 2
    return any(QColor(image.pixel(x, row)) != base for x in range(image.width()))


def test_every_empty_view_says_what_to_do(
    qtbot: QtBot, window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    assert window.file_menu.new_project_at(tmp_path / "project")
    view, bins = window.gallery.view, window.bins.bins
    assert view.empty_hint == IMPORT_HINT
    assert _has_text_pixels(window)  # drawn in the empty viewport
    assert bins.empty_hint == NO_CLASS_HINT
    assert "press “+ Add class…”" in NO_CLASS_HINT
    import_by_drop(qtbot, window, samples)
    fundus = window.session.add_class("fundus")
    assert bins.empty_hint == ""
    window.gallery.set_filter(GalleryFilter(GalleryView.CLASS, fundus.id))
    assert window.gallery.model.rowCount() == 0
    assert view.empty_hint == NO_MATCH_HINT == "No image matches this filter"
    window.gallery.set_filter(GalleryFilter(GalleryView.MISCLASSIFIED))
    assert view.empty_hint == PREDICT_FIRST_HINT == "Predict images in the Results tab first"
    tip = window.gallery.filter.itemData(
        window.gallery.filter.currentIndex(), Qt.ItemDataRole.ToolTipRole
    )
    assert tip == "Needs predictions: predict images in the Results tab first"
    window.gallery.set_filter(GalleryFilter(GalleryView.ALL))
    assert window.gallery.model.rowCount() == 8


def _dialog_text(dialog: HelpDialog) -> str:
    text = dialog.text.toPlainText()
    dialog.close()
    return text


def test_help_tells_the_flow_the_keys_the_notice_and_the_versions(window: MainWindow) -> None:
    menu = window.help_menu
    assert [a.text() for a in menu.actions() if not a.isSeparator()] == [
        "&How it works",
        "&Keyboard shortcuts",
        "&Research-use notice",
        "&About EPT Studio",
    ]
    how = _dialog_text(menu.show_how_it_works())
    assert all(f"{n}. {title}: {detail}." in how for n, (title, detail) in enumerate(FLOW_STEPS, 1))
    keys = _dialog_text(menu.show_shortcuts())
    for line in ("1 – 9", "Ctrl+Z", "Ctrl+Y", "Ctrl+N", "Ctrl+O", "Ctrl+I", "Toggle train / test"):
        assert line in keys
    edit = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Edit")
    assert isinstance(edit, QMenu)
    assert window.training.split_action in edit.actions()
    rows = dict((text, keys) for keys, text in menu_shortcuts([window.file_menu]))
    assert rows["Import files"] == "Ctrl+I"
    assert rows["New project"] == "Ctrl+N"
    assert _dialog_text(menu.show_notice()) == RESEARCH_USE_NOTICE
    about = _dialog_text(menu.show_about())
    for name, version in [
        ("EPT Studio", __version__),
        ("Python", platform.python_version()),
        ("Qt", qVersion()),
        ("PySide6", PySide6.__version__),
        ("torch", importlib.metadata.version("torch")),
        ("timm", importlib.metadata.version("timm")),
        ("onnxruntime", library_versions()["onnxruntime"]),
    ]:
        assert f"\n{name}\n{version}\n" in about  # one table row per library
    assert RESEARCH_USE_NOTICE in about


def test_library_versions_import_no_engine_library(tmp_path: Path) -> None:
    probe = (
        "import json, sys\n"
        "from ept_studio.gui.help import library_versions\n"
        "versions = library_versions()\n"
        "print(json.dumps([versions, sorted({'torch', 'timm', 'onnxruntime'} & set(sys.modules))]))"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", EPT_STUDIO_DATA=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True
    )
    versions, imported = json.loads(done.stdout.strip().splitlines()[-1])
    assert versions == library_versions()
    assert versions["torch"] == importlib.metadata.version("torch")
    assert imported == []
