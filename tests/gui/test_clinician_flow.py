"""The flow a new user takes, in one real window, checked for honesty rather than for mechanics:
new project -> drop a folder of CT (DICOM, several patients) and fundus / histology (PNG) images ->
three classes labelled by keys -> Split for me -> Train (one press) -> See results -> Predict all ->
model card and predictions CSV. No score the app shows or exports may count an image the model was
trained on, and the window fits a 1280 x 720 laptop screen throughout."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
from gui_support import import_by_drop, select_rows
from labelled_projects import write_layout
from PySide6.QtCore import QSize, Qt
from pytestqt.qtbot import QtBot
from support import tiny_backbone, write_class_folders

from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.results_panel import PREDICTION
from ept_studio.gui.training_panel import TRAINING
from ept_studio.services.project import ProjectTrainingSaved, Role, open_project
from ept_studio.services.project.inference import ProjectPredicted

pytestmark = pytest.mark.gui

LAPTOP = QSize(1280, 720)
CT_PATIENTS = ("p1", "p1", "p2", "p3", "p4", "p5")
"""Six CT slices of five patients: p1's two images must land on one side of the split."""


def fits(window: MainWindow, screen: QSize) -> bool:
    hint = window.minimumSizeHint().expandedTo(window.minimumSize())
    return hint.width() <= screen.width() and hint.height() <= screen.height()


def rows_from(window: MainWindow, folder: str) -> list[int]:
    project = window.session.project
    assert project is not None
    wanted = {i.id for i in project.images() if i.path is not None and i.path.parent.name == folder}
    model = window.gallery.model
    return [row for row in range(model.rowCount()) if model.image_id(row) in wanted]


def label_by_key(qtbot: QtBot, window: MainWindow, folder: str, key: Qt.Key) -> int:
    rows = rows_from(window, folder)
    select_rows(window, rows)
    qtbot.keyClick(window.gallery.view, key)
    return len(rows)


def roles(folder: Path) -> dict[str, tuple[Role, str | None]]:
    """sha256 -> (role, patient hash) of every labelled image, read back from disk."""
    with open_project(folder) as project:
        by_id = {image.id: image for image in project.images()}
        return {
            by_id[label.image_id].sha256: (label.role, by_id[label.image_id].patient_hash)
            for label in project.labels.all()
        }


def test_a_new_user_reaches_an_honest_result_on_a_laptop_screen(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    window.resize(LAPTOP)
    assert window.pages.currentWidget() is window.welcome  # a first start: the welcome page
    assert fits(window, LAPTOP)

    studies = tmp_path / "studies"
    write_class_folders(studies, per_class=7, size=96)
    write_layout(studies, {"ct": CT_PATIENTS})
    folder = tmp_path / "projects" / "first"
    assert window.file_menu.new_project_at(folder)
    import_by_drop(qtbot, window, studies)
    assert window.gallery.model.rowCount() == 20
    assert fits(window, LAPTOP)

    panel = window.training
    assert not panel.train_button.isEnabled()  # no class yet: the checklist says why
    assert panel.train_button.toolTip()
    for name in ("fundus", "histology", "ct"):
        window.session.add_class(name)
    counts = [
        label_by_key(qtbot, window, "fundus", Qt.Key.Key_1),
        label_by_key(qtbot, window, "histology", Qt.Key.Key_2),
        label_by_key(qtbot, window, "ct", Qt.Key.Key_3),
    ]
    assert counts == [7, 7, 6]

    # Split for me: a fifth to test, stratified, p1's two slices on one side
    window.side.setCurrentWidget(panel)
    panel.split_action.trigger()
    split = roles(folder)
    tested = [sha for sha, (role, _) in split.items() if role is Role.TEST]
    trained = [sha for sha, (role, _) in split.items() if role is Role.TRAIN]
    assert (len(tested), len(trained)) == (4, 16)
    patients = {hash_ for _, hash_ in split.values() if hash_}
    for patient in patients:
        sides = {role for role, hash_ in split.values() if hash_ == patient}
        assert len(sides) == 1, "a patient's images are on both sides of the split"
    assert "Test: 4 images" in panel.counts_label.text()

    # Train in one press, on the tiny backbone (the real one is exercised elsewhere)
    window.jobs.backbone = tiny_backbone()
    assert panel.train_button.isEnabled(), panel.train_button.toolTip()
    with qtbot.waitSignal(window.jobs.finished, timeout=120_000) as finished:
        qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    name, saved = finished.args
    assert name == TRAINING
    assert isinstance(saved, ProjectTrainingSaved)
    indicator = window.status.training
    assert indicator.results.isVisible()  # "See results" in the status bar, on every tab
    qtbot.mouseClick(indicator.results, Qt.MouseButton.LeftButton)
    assert window.side.currentWidget() is window.results

    shown = window.results.view.results
    assert shown is not None
    assert shown.scores is not None
    assert shown.evaluated == 4
    assert "on 4 test images" in window.results.view.headline.text()

    # Predict every image: the view that opens still scores only the 4 test images
    with qtbot.waitSignal(window.jobs.finished, timeout=120_000) as finished:
        assert window.results.predict(None)
    name, predicted = finished.args
    assert (name, type(predicted)) == (PREDICTION, ProjectPredicted)
    assert predicted.predicted == 20
    shown = window.results.view.results
    assert shown is not None
    assert (shown.evaluated, shown.not_scored) == (4, 16)
    headline = window.results.view.headline.text()
    assert "on 4 test images" in headline
    assert "16 training images not scored" in headline

    # the exports: the card describes the training run, scored on the 4 test images only
    card = tmp_path / "out" / "model-card.md"
    assert window.results.model_card_to(card)
    text = card.read_text(encoding="utf-8")
    assert text.startswith(f"# Model card: run {saved.run_id} ")
    scored = [int(n) for n in re.findall(r"[Ss]cored on (\d+) (?:test )?images", text)]
    assert scored
    assert set(scored) == {4}
    assert not re.search(r"\bon (16|20) (test |labelled |evaluated )?images\b", text)
    assert "research use" in text.lower()
    table = tmp_path / "out" / "predictions.csv"
    assert window.results.export_csv_to(table)
    rows = list(csv.DictReader(table.read_text(encoding="utf-8").splitlines()))
    assert len(rows) == 20
    assert {sha for sha in tested} == {r["sha256"] for r in rows if r["trained_on"] == "no"}
    assert fits(window, LAPTOP)
