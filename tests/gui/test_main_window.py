"""The main window on a real project: drop real files, label by keys and by bins, undo, filter."""

from __future__ import annotations

from pathlib import Path

import pytest
from gui_support import (
    bin_point,
    file_mime,
    gallery_drag,
    import_by_drop,
    label_project,
    select_rows,
    send_drop,
    stored_labels,
)
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from ept_studio.common.training_events import StepFinished
from ept_studio.gui.class_bins import UNLABELLED
from ept_studio.gui.jobs import TRAINING
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.status import SHORT_NOTICE, STOPPING, rough_eta
from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import ProjectTrainingSaved, open_project
from ept_studio.services.project.gallery import GalleryFilter, GalleryView
from ept_studio.services.project.tuning import TuningCancelled

pytestmark = pytest.mark.gui

IMAGES_IN_SAMPLES = 8
"""2 DICOM + 6 PNG; ``notes.txt`` is skipped."""


@pytest.fixture
def project_window(window: MainWindow, tmp_path: Path) -> MainWindow:
    assert window.file_menu.new_project_at(tmp_path / "project")
    return window


def test_notice_is_always_visible(window: MainWindow) -> None:
    assert window.status.notice.text() == SHORT_NOTICE
    assert window.status.notice.isVisible()
    assert SHORT_NOTICE == "For research use only. Not for clinical diagnosis."


def test_new_and_open_project_are_remembered(window: MainWindow, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert window.file_menu.new_project_at(first)
    assert window.file_menu.new_project_at(second)
    assert window.file_menu.open_project_at(first)
    assert window.windowTitle() == "EPT Studio - first"
    assert window.settings.recent_projects() == [first, second]
    assert [a.text() for a in window.file_menu.recent.actions()] == [str(first), str(second)]


def test_dropped_folder_is_imported_off_the_gui_thread(
    qtbot: QtBot, project_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    progress: list[tuple[int, int]] = []
    project_window.session.import_progress.connect(
        lambda done, total: progress.append((done, total))
    )
    import_by_drop(qtbot, project_window, samples)
    assert project_window.gallery.model.rowCount() == IMAGES_IN_SAMPLES
    assert progress[-1] == (IMAGES_IN_SAMPLES + 1, IMAGES_IN_SAMPLES + 1)
    with open_project(tmp_path / "project") as project:
        assert len(project.images()) == IMAGES_IN_SAMPLES
        assert sorted(i.kind for i in project.images()).count("dicom") == 2
    dialog = project_window.report
    assert dialog.isVisible()
    assert "Added: 8" in dialog.text.toPlainText()
    assert "notes.txt: not a DICOM, PNG, JPEG, TIFF or BMP file" in dialog.text.toPlainText()
    assert project_window.session.project is not None
    icon = project_window.gallery.model.data(
        project_window.gallery.model.index(0, 0), Qt.ItemDataRole.DecorationRole
    )
    assert isinstance(icon, QIcon)
    assert not icon.isNull()


def test_drop_on_the_window_and_dropping_again_adds_nothing(
    qtbot: QtBot, project_window: MainWindow, samples: Path
) -> None:
    ct = samples / "dicom" / "ct.dcm"
    with qtbot.waitSignal(project_window.session.import_finished, timeout=20_000):
        assert send_drop(project_window, file_mime(ct))
    assert project_window.gallery.model.rowCount() == 1
    with qtbot.waitSignal(project_window.session.import_finished, timeout=20_000) as blocker:
        assert send_drop(project_window, file_mime(ct))
    assert len(blocker.args[0].duplicates) == 1
    assert project_window.session.image_count() == 1


def test_file_import_takes_chosen_files(
    qtbot: QtBot, project_window: MainWindow, samples: Path
) -> None:
    chosen = [samples / "dicom" / "ct.dcm", samples / "photos" / "fundus"]
    with qtbot.waitSignal(project_window.session.import_finished, timeout=20_000) as blocker:
        assert project_window.file_menu.import_at(chosen)
    assert len(blocker.args[0].added) == 4
    assert project_window.gallery.model.rowCount() == 4
    assert not project_window.report.isVisible()  # nothing skipped: no report panel
    assert (
        project_window.status.currentMessage() == "Import done: 4 added, 0 already there, 0 skipped"
    )


def test_a_drop_without_a_project_imports_nothing(window: MainWindow, samples: Path) -> None:
    assert send_drop(window.gallery.view.viewport(), file_mime(samples))
    assert not window.session.importing
    assert "Create or open a project first" in window.status.currentMessage()


def test_keys_label_the_selection_and_undo_redo(
    qtbot: QtBot, project_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    import_by_drop(qtbot, project_window, samples)
    session, view = project_window.session, project_window.gallery.view
    first, second = session.add_class("fundus"), session.add_class("histology")
    ids = [project_window.gallery.model.image_id(row) for row in range(4)]
    select_rows(project_window, [0, 1, 2])
    qtbot.keyClick(view, Qt.Key.Key_1)
    select_rows(project_window, [3])
    qtbot.keyClick(view, Qt.Key.Key_2)
    qtbot.keyClick(view, Qt.Key.Key_7)  # no 7th class: nothing happens
    folder = tmp_path / "project"
    expected = {ids[0]: first.id, ids[1]: first.id, ids[2]: first.id, ids[3]: second.id}
    assert stored_labels(folder) == expected
    select_rows(project_window, [0])
    qtbot.keyClick(view, Qt.Key.Key_0)
    assert ids[0] not in stored_labels(folder)
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert stored_labels(folder) == expected
    qtbot.keyClick(view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert ids[3] not in stored_labels(folder)
    shift_ctrl = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    qtbot.keyClick(view, Qt.Key.Key_Z, shift_ctrl)
    assert stored_labels(folder) == expected
    counts = {c.name: c.train for c in session.counts().values()}
    assert counts == {"fundus": 3, "histology": 1}


def test_dragging_thumbnails_onto_bins_labels_them(
    qtbot: QtBot, project_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    import_by_drop(qtbot, project_window, samples)
    fundus = project_window.session.add_class("fundus")
    ids = [project_window.gallery.model.image_id(row) for row in range(3)]
    viewport = project_window.bins.bins.viewport()
    assert send_drop(
        viewport, gallery_drag(project_window, [0, 1, 2]), bin_point(project_window, fundus.id)
    )
    assert stored_labels(tmp_path / "project") == dict.fromkeys(ids, fundus.id)
    assert "fundus: 3 (train 3, test 0)" in project_window.bins.bins.item(1).text()
    assert project_window.bins.bins.item(0).text() == "Unlabelled (5)"
    back = gallery_drag(project_window, [1])
    assert send_drop(viewport, back, bin_point(project_window, UNLABELLED))
    assert stored_labels(tmp_path / "project") == {ids[0]: fundus.id, ids[2]: fundus.id}
    send_drop(viewport, file_mime(samples / "notes.txt"), bin_point(project_window, fundus.id))
    assert stored_labels(tmp_path / "project") == {ids[0]: fundus.id, ids[2]: fundus.id}


def test_filters_show_what_they_say(
    qtbot: QtBot, project_window: MainWindow, samples: Path
) -> None:
    import_by_drop(qtbot, project_window, samples)
    session, gallery = project_window.session, project_window.gallery
    fundus = session.add_class("fundus")
    ids = [gallery.model.image_id(row) for row in range(5)]
    session.label(ids[:3], fundus.id)
    project = session.project
    assert project is not None
    project.labels.set_role([ids[0]], "test")
    expected = {
        GalleryFilter(GalleryView.ALL): 8,
        GalleryFilter(GalleryView.UNLABELLED): 5,
        GalleryFilter(GalleryView.CLASS, fundus.id): 3,
        GalleryFilter(GalleryView.TRAIN): 2,
        GalleryFilter(GalleryView.TEST): 1,
    }
    shown = {}
    for selection in expected:
        gallery.set_filter(selection)
        shown[selection] = gallery.model.rowCount()
    assert shown == expected
    assert gallery.summary.text() == "1 shown of 8 images"


def test_classes_rename_and_delete(
    qtbot: QtBot, project_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    import_by_drop(qtbot, project_window, samples)
    session = project_window.session
    normal = session.add_class("normal")
    session.label([project_window.gallery.model.image_id(0)], normal.id)
    session.rename_class(normal.id, "no finding")
    texts = [
        project_window.bins.bins.item(r).text() for r in range(project_window.bins.bins.count())
    ]
    assert texts == ["Unlabelled (7)", "[1] no finding: 1 (train 1, test 0)"]
    assert project_window.gallery.filter.itemText(2) == "Class: no finding"
    session.delete_class(normal.id)
    assert project_window.bins.bins.count() == 1
    assert stored_labels(tmp_path / "project") == {}
    with open_project(tmp_path / "project") as project:
        assert project.labels.classes() == []


def _labelled(window: MainWindow, tmp_path: Path, qtbot: QtBot) -> MainWindow:
    """Two classes of 4 train + 2 test images and the tiny backbone; the Classes tab in front."""
    label_project(window, tmp_path, qtbot, train=4, test=2)
    window.side.setCurrentWidget(window.bins)
    return window


def _train(window: MainWindow, epochs: int, batch_size: int) -> bool:
    options = TrainingOptions(
        method="linear", recipe="paper", epochs=epochs, batch_size=batch_size, hold_out=False
    )
    return window.jobs.start_training(options)


def test_training_shows_in_the_status_bar_and_leads_to_the_results(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    labelled = _labelled(window, tmp_path, qtbot)
    indicator = labelled.status.training
    assert indicator is not None
    assert not indicator.isVisible()
    seen: list[str] = []
    labelled.jobs.task_event.connect(
        lambda _name, item: (
            seen.append(indicator.text.text()) if isinstance(item, StepFinished) else None
        )
    )
    with qtbot.waitSignal(labelled.jobs.finished, timeout=120_000) as blocker:
        assert _train(labelled, epochs=2, batch_size=4)
        assert indicator.isVisible()  # on the Classes tab too
        assert indicator.cancel.isVisible()
    assert isinstance(blocker.args[1], ProjectTrainingSaved)
    assert len(seen) == 4  # 8 training images, batches of 4, 2 epochs
    assert seen[-1] == "Training: step 4 of 4, less than a minute left"
    assert labelled.status.currentMessage() == "Training finished: see results on 4 test images"
    assert indicator.results.isVisible()
    assert not indicator.cancel.isVisible()
    assert labelled.side.currentWidget() is labelled.bins
    qtbot.mouseClick(indicator.results, Qt.MouseButton.LeftButton)
    assert labelled.side.currentWidget() is labelled.results
    assert not indicator.isVisible()


def test_cancel_in_the_status_bar_says_so_at_once(
    qtbot: QtBot, window: MainWindow, tmp_path: Path
) -> None:
    labelled = _labelled(window, tmp_path, qtbot)
    indicator = labelled.status.training
    assert indicator is not None
    with qtbot.waitSignal(labelled.jobs.task_event, timeout=30_000):
        assert _train(labelled, epochs=500, batch_size=1)
    with qtbot.waitSignal(labelled.jobs.finished, timeout=60_000) as blocker:
        qtbot.mouseClick(indicator.cancel, Qt.MouseButton.LeftButton)
        assert indicator.text.text() == STOPPING
        assert not indicator.cancel.isEnabled()
    assert isinstance(blocker.args[1], TuningCancelled)
    steps = blocker.args[1].steps_done
    assert labelled.status.currentMessage() == (
        f"Training cancelled after {steps} steps; nothing was kept"
    )
    assert not indicator.isVisible()


def test_closing_while_training_shows_it_is_stopping_before_waiting(
    qtbot: QtBot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labelled = _labelled(window, tmp_path, qtbot)
    monkeypatch.setattr(QMessageBox, "question", lambda *_a, **_k: QMessageBox.StandardButton.Yes)
    with qtbot.waitSignal(labelled.jobs.task_event, timeout=30_000):
        assert _train(labelled, epochs=500, batch_size=1)
    during: list[tuple[str, bool, bool, bool]] = []

    def look() -> None:  # runs inside the wait: the event loop is not blocked
        cursor = QApplication.overrideCursor()
        during.append(
            (
                labelled.status.currentMessage(),
                labelled.centralWidget().isEnabled(),
                cursor is not None and cursor.shape() == Qt.CursorShape.WaitCursor,
                labelled.jobs.current == TRAINING,
            )
        )

    QTimer.singleShot(0, look)
    labelled.close()
    assert during == [(f"{STOPPING} The window closes when it has stopped.", False, True, True)]
    assert not labelled.isVisible()
    assert not labelled.jobs.busy
    assert QApplication.overrideCursor() is None
    with open_project(tmp_path / "project") as project:
        assert [run.status for run in project.runs()] == ["cancelled"]


def test_time_left_reads_like_a_person_said_it() -> None:
    assert rough_eta(12) == "less than a minute left"
    assert rough_eta(170) == "about 3 min left"
    assert rough_eta(2 * 3600 + 5 * 60) == "about 2 h 05 min left"
