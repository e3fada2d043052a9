"""Starting the app: the window comes up before torch is imported; the first-run notice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QDialog, QLabel
from pytestqt.qtbot import QtBot

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.gui.app import accept_notice
from ept_studio.gui.dialogs import NoticeDialog
from ept_studio.gui.settings import AppSettings

pytestmark = pytest.mark.gui

STARTUP_PROBE = textwrap.dedent(
    """
    import json, runpy, sys, time
    started = time.perf_counter()
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, sys.argv[1])
    from ept_studio.gui.app import application
    from ept_studio.gui.settings import AppSettings

    AppSettings().accept_notice()
    app = application()

    def check():
        shown = [w for w in QApplication.topLevelWidgets() if type(w).__name__ == "MainWindow"]
        result = {
            "windows": [w.isVisible() for w in shown],
            "torch": "torch" in sys.modules,
            "notice": [w.status.notice.text() for w in shown],
            "seconds": time.perf_counter() - started,
        }
        print(json.dumps(result))
        for window in shown:
            window.close()

    QTimer.singleShot(0, check)
    sys.argv = ["ept-studio"]
    try:
        runpy.run_module("ept_studio", run_name="__main__")
    except SystemExit as done:
        print(json.dumps({"exit": done.code}))
    """
)


def test_python_m_ept_studio_shows_the_window_before_torch(tmp_path: Path) -> None:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", EPT_STUDIO_DATA=str(tmp_path / "data"))
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    done = subprocess.run(
        [sys.executable, "-c", STARTUP_PROBE, str(tmp_path / "settings")],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines[0]["windows"] == [True]
    assert lines[0]["torch"] is False
    assert lines[0]["notice"] == ["For research use only. Not for clinical diagnosis."]
    assert lines[1] == {"exit": 0}


def _answer_notice(accept: bool) -> None:
    dialog = QApplication.activeModalWidget()
    assert isinstance(dialog, NoticeDialog)
    dialog.accept() if accept else dialog.reject()


@pytest.mark.parametrize("accept", [True, False])
def test_first_run_notice_is_asked_once(
    qtbot: QtBot, app_settings: AppSettings, accept: bool
) -> None:
    QTimer.singleShot(0, lambda: _answer_notice(accept))
    assert accept_notice(app_settings) is accept
    assert app_settings.notice_accepted is accept
    if accept:  # remembered: no dialog the second time (no timer answers one)
        assert accept_notice(app_settings) is True


def test_notice_dialog_carries_the_full_notice(qtbot: QtBot) -> None:
    dialog = NoticeDialog()
    qtbot.addWidget(dialog)
    texts = [label.text() for label in dialog.findChildren(QLabel)]
    assert RESEARCH_USE_NOTICE in texts
    assert dialog.result() == QDialog.DialogCode.Rejected


def test_recent_projects_skip_deleted_folders(app_settings: AppSettings, tmp_path: Path) -> None:
    folders = [tmp_path / f"p{i}" for i in range(10)]
    for folder in folders:
        folder.mkdir()
        app_settings.add_recent_project(folder)
    app_settings.add_recent_project(folders[3])
    folders[9].rmdir()
    assert app_settings.recent_projects() == [folders[3], *folders[4:9][::-1], folders[2]]
