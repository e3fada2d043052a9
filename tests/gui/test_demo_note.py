"""The demo says, in the app, what it shows and why its score means little: a note on the Train tab
(the task, 2 training images a class, 12 test images) and one beside the score on the Results tab
(one test image is 8 points; label more of your own). A project of one's own shows neither."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from ept_studio.gui.main_window import MainWindow

pytestmark = pytest.mark.gui


def _open_demo(window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "app-data"))
    assert window.file_menu.open_demo(tmp_path / "demo")
    assert window.session.folder == tmp_path / "demo" / "project"


def test_the_demo_notes_say_what_it_shows_and_what_its_score_is_worth(
    window: MainWindow, tmp_path: Path, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    _open_demo(window, tmp_path, monkeypatch)
    window.side.setCurrentWidget(window.training)
    note = window.training.demo_note
    qtbot.waitUntil(note.isVisible, timeout=5_000)
    assert "(CT, MR or US)" in note.text()
    assert "only 2 training images a class and 12 images to test on" in note.text()
    assert "label more images of your own" in note.text()
    assert "few-shot" not in note.text().lower()  # the ML terms only in the tooltip
    assert "few-shot" in note.toolTip()
    assert "nearest-centroid prototype" in note.toolTip()

    window.side.setCurrentWidget(window.results)
    score_note = window.results.view.note
    qtbot.waitUntil(score_note.isVisible, timeout=5_000)
    assert "with 12 images to test on, one image moves the score by about 8 points" in (
        score_note.text()
    )
    assert "not what the method does on your data" in score_note.text()
    assert "label more images of your own" in score_note.text()
    assert "nearest-centroid" not in score_note.text()


def test_a_project_of_ones_own_shows_no_demo_note(
    window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _open_demo(window, tmp_path, monkeypatch)
    assert not window.training.demo_note.isHidden()
    assert window.file_menu.new_project_at(tmp_path / "mine")
    window.side.setCurrentWidget(window.training)
    for note in (window.training.demo_note, window.results.view.note):
        assert note.isHidden()
        assert (note.text(), note.toolTip()) == ("", "")
