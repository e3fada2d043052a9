"""Choosing the backbone in the Train tab, in a real offscreen window: the list from the manifest
with licence, size and whether each is here; one that is here trains the next run (a broken weights
file under its name shows that the run loads it); one that is not shows the command that gets it.
Nothing downloads: the weights folders are temporary and hold one file."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import label_project
from pytestqt.qtbot import QtBot

from ept_studio.gui.backbone_dialog import HERE, NOT_HERE, BackboneDialog
from ept_studio.gui.jobs import TRAINING
from ept_studio.gui.main_window import MainWindow
from ept_studio.services.model import backbone_choices

pytestmark = pytest.mark.gui

REG4 = "dinov2-vits14-reg4"


def rows(dialog: BackboneDialog) -> list[tuple[str, ...]]:
    table, shown = dialog.table, []
    for row in range(table.rowCount()):
        items = [table.item(row, column) for column in range(table.columnCount())]
        shown.append(tuple(item.text() if item is not None else "" for item in items))
    return shown


def test_the_list_shows_licence_size_and_whether_each_is_here(
    qtbot: QtBot, one_backbone_here: Path
) -> None:
    dialog = BackboneDialog(backbone_choices(), None)
    qtbot.addWidget(dialog)
    shown = rows(dialog)
    assert len(shown) == 7
    assert shown[0] == ("dinov2-vits14-imgfocus (default)", "MIT", "88 MB", NOT_HERE)
    assert (REG4, "Apache-2.0", "88 MB", HERE) in shown
    assert ("rad-dino", "MIT", "346 MB", NOT_HERE) in shown
    assert [row[3] for row in shown].count(HERE) == 1

    dialog.select("dinov2-vits14-imgfocus")
    assert "'Get the offline backbone…' in the status bar" in dialog.details.text()
    dialog.select("rad-dino")
    assert not dialog.use_button.isEnabled()
    assert dialog.command.text() == "ept-studio models get rad-dino --accept-licence"
    assert "Not on this computer. To get it (about 346 MB)" in dialog.details.text()
    assert "research only" in dialog.details.text()  # the publisher's notice
    dialog.select("biomedclip-vitb16")
    assert dialog.command.text() == (
        "ept-studio models get biomedclip-vitb16 --accept-licence --from-file FILE.safetensors"
    )
    assert "never opens" in dialog.details.text()
    dialog.select(REG4)
    assert dialog.use_button.isEnabled()
    assert dialog.command.text() == ""
    assert dialog.command.isHidden()


def test_a_backbone_chosen_in_the_train_tab_trains_the_next_run(
    window: MainWindow,
    tmp_path: Path,
    qtbot: QtBot,
    one_backbone_here: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PySide6.QtWidgets import QMessageBox

    label_project(window, tmp_path, qtbot, train=4, test=2)
    window.jobs.backbone = None  # load the named backbone, as the app does
    panel = window.training
    panel.refresh()
    picker = panel.backbone
    assert picker.label.text() == "Offline default (DINOv2 ViT-S/14)"
    assert any("offline default backbone is not set up" in r for r in panel.reasons)

    picker.ask()
    dialog = picker.dialog
    assert dialog is not None
    qtbot.waitExposed(dialog)
    dialog.select(REG4)
    dialog.use_button.click()
    assert (window.jobs.backbone_name, picker.label.text()) == (REG4, REG4)
    assert panel.reasons == []
    assert panel.train_button.isEnabled()

    picker.choose("rad-dino")  # not here: Train says how to get it
    assert panel.reasons == [
        "The backbone rad-dino is not on this computer: run `ept-studio models get rad-dino "
        "--accept-licence`, or choose another backbone."
    ]
    assert not panel.train_button.isEnabled()

    picker.choose(REG4)
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: shown.append(str(args[2])))
    with qtbot.waitSignal(window.jobs.failed, timeout=60_000) as blocker:
        assert panel.start()
    assert blocker.args[0] == TRAINING
    assert f"{one_backbone_here} is not a readable safetensors file" in blocker.args[1]
    assert shown == [blocker.args[1]]
