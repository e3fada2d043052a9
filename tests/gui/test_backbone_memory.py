"""The backbone chosen on the Train tab is kept in the project: a new window that opens the project
again shows it and the next run loads it, and one that is not on this computer stays chosen with the
command that gets it (Train off), never replaced by another backbone. Nothing downloads: the
weights folder is temporary and holds one file that is not a real safetensors file."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import label_project
from pytestqt.qtbot import QtBot

from ept_studio.gui.jobs import TRAINING
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.settings import AppSettings

pytestmark = pytest.mark.gui

REG4 = "dinov2-vits14-reg4"
DEFAULT_SHOWN = "Offline default (DINOv2 ViT-S/14)"


def _reopen(window: MainWindow, settings: AppSettings, qtbot: QtBot) -> MainWindow:
    """Close the project and its window; a new window opens the same project folder."""
    folder = window.session.folder
    assert folder is not None
    window.session.close()
    window.close()
    again = MainWindow(settings)
    qtbot.addWidget(again)
    again.show()
    qtbot.waitExposed(again)
    assert again.training.backbone.label.text() == DEFAULT_SHOWN  # no project yet
    assert again.file_menu.open_project_at(folder)
    again.side.setCurrentWidget(again.training)
    return again


def test_the_chosen_backbone_is_shown_and_trains_after_reopening(
    window: MainWindow,
    app_settings: AppSettings,
    tmp_path: Path,
    qtbot: QtBot,
    one_backbone_here: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PySide6.QtWidgets import QMessageBox

    label_project(window, tmp_path, qtbot, train=4, test=2)
    window.training.backbone.choose(REG4)
    assert window.jobs.backbone_name == REG4

    again = _reopen(window, app_settings, qtbot)
    panel = again.training
    assert (panel.backbone.label.text(), again.jobs.backbone_name) == (REG4, REG4)
    assert again.jobs.backbone is None  # the new window loads the named backbone
    assert panel.reasons == []  # the offline default is not here: only reg4 lets Train on
    assert panel.plan is not None
    assert panel.train_button.isEnabled()

    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: shown.append(str(args[2])))
    with qtbot.waitSignal(again.jobs.failed, timeout=60_000) as blocker:
        assert panel.start()
    assert blocker.args[0] == TRAINING
    assert f"{one_backbone_here} is not a readable safetensors file" in blocker.args[1]
    again.session.close()


def test_a_remembered_backbone_missing_here_stays_chosen_and_says_how_to_get_it(
    window: MainWindow,
    app_settings: AppSettings,
    tmp_path: Path,
    qtbot: QtBot,
    one_backbone_here: Path,
) -> None:
    label_project(window, tmp_path, qtbot, train=4, test=2)
    window.training.backbone.choose("rad-dino")

    again = _reopen(window, app_settings, qtbot)
    panel = again.training
    assert (panel.backbone.label.text(), again.jobs.backbone_name) == ("rad-dino", "rad-dino")
    assert panel.reasons == [
        "The backbone rad-dino is not on this computer: run `ept-studio models get rad-dino "
        "--accept-licence`, or choose another backbone."
    ]
    assert not panel.train_button.isEnabled()

    panel.backbone.choose(None)  # back to the default: forgotten in the project too
    assert again.file_menu.open_project_at(tmp_path / "project")
    assert panel.backbone.label.text() == DEFAULT_SHOWN
    assert again.jobs.backbone_name is None
    again.session.close()
