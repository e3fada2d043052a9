"""Errors one click away, in the real window on a real project whose run stored chosen scores:
a confusion-matrix cell or a reliability bar filters the gallery to exactly its images (the filter
bar says which, "All images" goes back), the Results tab shows calibration before and after and
the prediction sets, an uncalibrated run says why, and the viewer's caption shows the set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from labelled_projects import write_layout
from PySide6.QtCore import QPoint, Qt
from pytestqt.qtbot import QtBot
from recorded_runs import CLASSES, record_training_run

from ept_studio.core.conformal import ConformalSets
from ept_studio.core.temperature import Calibration, apply_temperature
from ept_studio.gui.main_window import MainWindow
from ept_studio.services.project import GalleryView, Project, import_paths

pytestmark = pytest.mark.gui
TEMPERATURE = 2.5


def _project(tmp_path: Path, calibrated: bool = True) -> tuple[Path, dict[int, int], list[int]]:
    """12 images (6 a class): per class 2 trained on, 2 calibrated on, 2 tested; one run."""
    root = write_layout(tmp_path / "data", {name: [None] * 6 for name in CLASSES})
    project = Project.create(tmp_path / "project", "single")  # the app's own locations
    import_paths(project, [root], folders_as_classes=True, thumbnails=False)
    names = {c.id: c.name for c in project.labels.classes()}
    targets = {x.image_id: CLASSES.index(names[x.class_id]) for x in project.labels.all()}
    train, calibration, test = [], [], []
    for k in range(len(CLASSES)):
        ids = sorted(i for i, t in targets.items() if t == k)
        train, calibration, test = train + ids[:2], calibration + ids[2:4], test + ids[4:]
    ids = sorted(targets)
    logits = np.random.default_rng(3).normal(0.0, 3.0, size=(len(ids), 2))
    stored = apply_temperature(logits, TEMPERATURE)
    block = Calibration(
        temperature=TEMPERATURE,
        images=4,
        source="held-out support images",
        ece_before=0.3,
        ece_after=0.1,
    )
    sets = ConformalSets(
        coverage=0.9,
        thresholds=(0.6,),
        mondrian=False,
        label_mode="single",
        n=4,
        class_counts=(2, 2),
        guaranteed=False,
    )
    record_training_run(
        project,
        {i: stored[k].tolist() for k, i in enumerate(ids)},
        targets,
        train=train,
        calibration=calibration if calibrated else [],
        test=test if calibrated else test + calibration,
        calibration_block=block.to_dict() if calibrated else {"reason": REASON},
        conformal_block=sets.to_dict() if calibrated else {"reason": NO_SETS},
    )
    folder = project.folder
    project.close()
    return folder, targets, sorted(test if calibrated else test + calibration)


REASON = "scores are uncalibrated: only 4 held-out images; at least 10 are needed"
NO_SETS = "no prediction sets: there are no calibration images"


def _open_results(qtbot: QtBot, window: MainWindow, folder: Path) -> None:
    assert window.file_menu.open_project_at(folder)
    window.show_results()
    qtbot.waitUntil(lambda: window.results.view.results is not None, timeout=10_000)


def _shown_ids(window: MainWindow) -> list[int]:
    model = window.gallery.model
    return [model.image_id(row) for row in range(model.rowCount())]


def test_a_confusion_cell_filters_the_gallery_to_its_images_and_back(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    folder, targets, test = _project(tmp_path)
    _open_results(qtbot, window, folder)
    view = window.results.view
    results = view.results
    assert results is not None
    assert results.scores is not None
    assert sorted(i.image_id for i in results.scored) == test
    for t, p in ((0, 0), (0, 1), (1, 0), (1, 1)):
        expected = [
            i.image_id
            for i in results.scored
            if targets[i.image_id] == t and int(np.argmax([i.scores[c] for c in CLASSES])) == p
        ]
        item = view.confusion.item(t, p)
        assert item.text() == str(len(expected))
        view.confusion.scrollToItem(item)
        centre = view.confusion.visualItemRect(item).center()
        qtbot.mouseClick(view.confusion.viewport(), Qt.MouseButton.LeftButton, pos=centre)
        assert window.main_tabs.currentWidget() is window.gallery
        assert _shown_ids(window) == expected
        label = f"Run {results.run_id} test images: true {CLASSES[t]}, predicted {CLASSES[p]}"
        assert window.gallery.current_filter().view is GalleryView.IMAGES
        assert window.gallery.filter.currentText() == label
        assert window.gallery.summary.text() == f"{len(expected)} shown of 12 images"
        assert window.gallery.show_all.isVisible()
        window.show_results()
    qtbot.mouseClick(window.gallery.show_all, Qt.MouseButton.LeftButton)
    assert len(_shown_ids(window)) == 12
    assert window.gallery.filter.currentText() == "All images"
    assert not window.gallery.show_all.isVisible()
    assert all(
        window.gallery.filter.itemText(k) != label for k in range(window.gallery.filter.count())
    )


def test_a_reliability_bar_filters_the_gallery_to_that_score_band(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    folder, _, _ = _project(tmp_path)
    _open_results(qtbot, window, folder)
    view = window.results.view
    results = view.results
    assert results is not None
    assert results.calibration is not None
    for plot, members, bins, when in (
        (
            view.reliability_after,
            results.calibration.members_after,
            results.calibration.reliability_after,
            "after",
        ),
        (
            view.reliability_before,
            results.calibration.members_before,
            results.calibration.reliability_before,
            "before",
        ),
    ):
        assert plot.isVisible()
        index = next(k for k, b in enumerate(bins) if b.count)
        bar = plot.bar_rect(index)
        qtbot.mouseClick(
            plot,
            Qt.MouseButton.LeftButton,
            pos=QPoint(int(bar.center().x()), int(bar.bottom() - 2)),
        )
        expected = [results.scored[k].image_id for k in members[index]]
        assert _shown_ids(window) == expected
        assert window.gallery.filter.currentText().endswith(f"{when} calibration")
        window.show_results()


def test_calibration_and_sets_are_shown_and_the_caption_shows_the_set(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    folder, _, test = _project(tmp_path)
    _open_results(qtbot, window, folder)
    view = window.results.view
    text = view.calibration.text()
    assert text.startswith("Calibration error ")
    assert " before, " in text
    assert " after calibration (temperature 2.50, fitted on 4 held-out" in text
    assert "both on the same 4 test images" in text
    assert "calibration error (ECE" in view.calibration.toolTip()
    assert view.sets.text().startswith("90 % sets: the right class was in the set for ")
    assert "Cannot promise 90 % coverage: 4 calibration images" in view.sets.text()
    assert "n >= 1/alpha - 1" in view.sets.toolTip()
    assert "4 training images and 4 calibration images not scored" in view.headline.text()
    assert window.open_image(test[0])
    model_text = window.viewer.image_caption.model.text()
    assert "(model score; set: " in model_text
    assert "at 90 %)" in model_text
    window.main_tabs.setCurrentWidget(window.gallery)
    row = _shown_ids(window).index(test[0])
    tip = window.gallery.model.data(window.gallery.model.index(row, 0), Qt.ItemDataRole.ToolTipRole)
    assert "set: " in str(tip)
    assert "at 90 %" in str(tip)


def test_an_uncalibrated_run_shows_the_reason_and_says_uncalibrated(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    folder, _, test = _project(tmp_path, calibrated=False)
    _open_results(qtbot, window, folder)
    view = window.results.view
    assert view.calibration.text().startswith(
        "Scores are uncalibrated: only 4 held-out images; at least 10 are needed. "
    )
    assert view.calibration.text().endswith("on the 8 test images (uncalibrated scores).")
    assert "(uncalibrated scores)" in view.headline.text()
    assert view.sets.text() == "No prediction sets: there are no calibration images."
    assert not view.reliability_before.isVisible()
    assert view.reliability_after.title == "Uncalibrated scores"
    assert window.open_image(test[0])
    assert "uncalibrated" in window.viewer.image_caption.model.text()


def test_the_coverage_control_sets_the_training_options(window: MainWindow) -> None:
    panel = window.training
    assert panel.options().coverage == pytest.approx(0.90)
    assert "n >= 1/alpha - 1" in panel.advanced.coverage.toolTip()
    panel.advanced.coverage.setValue(95)
    assert panel.options().coverage == pytest.approx(0.95)


def test_calibrating_on_test_images_is_a_choice_the_options_carry(window: MainWindow) -> None:
    panel = window.training
    box = panel.advanced.calibrate_on_test
    assert not box.isChecked()
    assert panel.options().calibrate_on_test is False
    assert "not scored as test images" in box.toolTip()
    box.setChecked(True)
    assert panel.options().calibrate_on_test is True
