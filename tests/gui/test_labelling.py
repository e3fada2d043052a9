"""Labelling in the main window on a real project: bins (drag, recolour, reorder), the train / test
toggle, multi-label projects, folders as classes and the review filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gui_support import (
    bin_point,
    gallery_drag,
    import_by_drop,
    select_rows,
    send_drop,
    stored_labels,
)
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from ept_studio.data.store import PredictionRow
from ept_studio.gui.class_bins import UNLABELLED
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.thumbnail_delegate import CLASS_COLOURS_ROLE, LABEL_ROLE_ROLE
from ept_studio.services.project import open_project
from ept_studio.services.project.gallery import GalleryFilter, GalleryView

pytestmark = pytest.mark.gui


def stored_label_sets(folder: Path) -> dict[int, set[int]]:
    """image id -> class ids, read back through a new connection."""
    with open_project(folder) as project:
        found: dict[int, set[int]] = {}
        for label in project.labels.all():
            found.setdefault(label.image_id, set()).add(label.class_id)
        return found


def stored_roles(folder: Path) -> dict[int, str]:
    with open_project(folder) as project:
        return {label.image_id: label.role.value for label in project.labels.all()}


def bin_texts(window: MainWindow) -> list[str]:
    bins = window.bins.bins
    return [bins.item(row).text() for row in range(bins.count())]


def swatch_colour(window: MainWindow, row: int) -> str:
    icon: QIcon = window.bins.bins.item(row).icon()
    return icon.pixmap(16, 16).toImage().pixelColor(8, 8).name()


@pytest.fixture
def project_window(window: MainWindow, tmp_path: Path) -> MainWindow:
    assert window.file_menu.new_project_at(tmp_path / "project")
    return window


@pytest.fixture
def multi_window(window: MainWindow, tmp_path: Path) -> MainWindow:
    assert window.file_menu.new_project_at(tmp_path / "project", "multi")
    return window


def test_drag_a_selection_between_bins_and_back(
    qtbot: QtBot, project_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    import_by_drop(qtbot, project_window, samples)
    session, gallery = project_window.session, project_window.gallery
    fundus, histology = session.add_class("fundus"), session.add_class("histology")
    viewport = project_window.bins.bins.viewport()
    ids = [gallery.model.image_id(row) for row in range(3)]
    assert send_drop(
        viewport, gallery_drag(project_window, [0, 1, 2]), bin_point(project_window, fundus.id)
    )
    gallery.set_filter(GalleryFilter(GalleryView.CLASS, fundus.id))
    assert gallery.model.rowCount() == 3
    moved = gallery_drag(project_window, [1, 2])
    assert send_drop(viewport, moved, bin_point(project_window, histology.id))
    folder = tmp_path / "project"
    assert stored_labels(folder) == {ids[0]: fundus.id, ids[1]: histology.id, ids[2]: histology.id}
    assert gallery.model.rowCount() == 1  # the fundus view lost the two moved away
    assert bin_texts(project_window) == [
        "Unlabelled (5)",
        "[1] fundus: 1 (train 1, test 0)",
        "[2] histology: 2 (train 2, test 0)",
    ]
    gallery.set_filter(GalleryFilter(GalleryView.CLASS, histology.id))
    back = gallery_drag(project_window, [0, 1])
    assert send_drop(viewport, back, bin_point(project_window, UNLABELLED))
    assert stored_labels(folder) == {ids[0]: fundus.id}
    project_window.undo_action.trigger()  # the drag back is one step
    assert stored_labels(folder) == {ids[0]: fundus.id, ids[1]: histology.id, ids[2]: histology.id}


def test_recolour_shows_on_bins_and_thumbnails_and_survives_reopening(
    qtbot: QtBot,
    project_window: MainWindow,
    samples: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text: warnings.append(text))
    import_by_drop(qtbot, project_window, samples)
    session, model = project_window.session, project_window.gallery.model
    fundus = session.add_class("fundus")
    session.label([model.image_id(0)], fundus.id)
    assert swatch_colour(project_window, 1) == fundus.colour == "#e6194b"
    project_window.bins.recolour(fundus.id, "teal")  # any colour name Qt knows
    assert swatch_colour(project_window, 1) == "#008080"
    assert model.data(model.index(0, 0), CLASS_COLOURS_ROLE) == [QColor("#008080")]
    assert model.data(model.index(1, 0), CLASS_COLOURS_ROLE) == []  # unlabelled: no band
    project_window.bins.recolour(fundus.id, "not a colour")
    assert warnings == ["'not a colour' is not a colour"]
    assert project_window.file_menu.open_project_at(tmp_path / "project")
    assert [(c.name, c.colour) for c in session.classes()] == [("fundus", "#008080")]
    assert swatch_colour(project_window, 1) == "#008080"


def test_reordered_classes_change_what_the_keys_assign(
    qtbot: QtBot, project_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    import_by_drop(qtbot, project_window, samples)
    session, view, bins = project_window.session, project_window.gallery.view, project_window.bins
    first, second, third = (session.add_class(name) for name in ("a", "b", "c"))
    bins.select_class(third.id)
    bins.move_up()
    bins.move_up()
    bins.move_up()  # already at the top: nothing happens
    assert [c.name for c in session.classes()] == ["c", "a", "b"]
    assert bins.selected_class_id() == third.id  # the moved bin stays selected
    bins.select_class(first.id)
    bins.move_down()
    assert [line.split(":")[0] for line in bin_texts(project_window)[1:]] == [
        "[1] c",
        "[2] b",
        "[3] a",
    ]
    ids = [project_window.gallery.model.image_id(row) for row in range(2)]
    select_rows(project_window, [0])
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_1)
    select_rows(project_window, [1])
    qtbot.keyClick(view, Qt.Key.Key_3)
    assert stored_labels(tmp_path / "project") == {ids[0]: third.id, ids[1]: first.id}
    with open_project(tmp_path / "project") as project:
        assert [c.name for c in project.labels.classes()] == ["c", "b", "a"]
    assert second.id not in stored_labels(tmp_path / "project").values()


def test_key_t_toggles_train_and_test(
    qtbot: QtBot, project_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    import_by_drop(qtbot, project_window, samples)
    session, gallery = project_window.session, project_window.gallery
    fundus = session.add_class("fundus")
    ids = [gallery.model.image_id(row) for row in range(4)]
    session.label(ids[:3], fundus.id)
    select_rows(project_window, [0, 1, 3])  # row 3 is unlabelled: it has no role to change
    gallery.view.setFocus()
    qtbot.keyClick(gallery.view, Qt.Key.Key_T)
    folder = tmp_path / "project"
    assert stored_roles(folder) == {ids[0]: "test", ids[1]: "test", ids[2]: "train"}
    assert bin_texts(project_window)[1] == "[1] fundus: 3 (train 1, test 2)"
    model = gallery.model
    assert [model.data(model.index(r, 0), LABEL_ROLE_ROLE) for r in range(4)] == [
        "test",
        "test",
        "train",
        None,
    ]
    gallery.set_filter(GalleryFilter(GalleryView.TEST))
    assert gallery.model.rowCount() == 2
    gallery.set_filter(GalleryFilter(GalleryView.ALL))
    select_rows(project_window, [0, 2])  # mixed: all go to test
    qtbot.keyClick(gallery.view, Qt.Key.Key_T)
    assert stored_roles(folder) == dict.fromkeys(ids[:3], "test")
    qtbot.keyClick(gallery.view, Qt.Key.Key_T)  # all test: back to train
    assert stored_roles(folder) == {ids[0]: "train", ids[1]: "test", ids[2]: "train"}
    project_window.undo_action.trigger()
    assert stored_roles(folder) == dict.fromkeys(ids[:3], "test")


def test_multi_label_drops_add_keys_toggle_and_unlabelled_clears(
    qtbot: QtBot, multi_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    assert multi_window.windowTitle() == "EPT Studio - project (multi-label)"
    import_by_drop(qtbot, multi_window, samples)
    session, gallery = multi_window.session, multi_window.gallery
    effusion, nodule = session.add_class("effusion"), session.add_class("nodule")
    viewport = multi_window.bins.bins.viewport()
    ids = [gallery.model.image_id(row) for row in range(3)]
    assert send_drop(
        viewport, gallery_drag(multi_window, [0, 1]), bin_point(multi_window, effusion.id)
    )
    assert send_drop(
        viewport, gallery_drag(multi_window, [1, 2]), bin_point(multi_window, nodule.id)
    )
    folder = tmp_path / "project"
    both = {effusion.id, nodule.id}
    assert stored_label_sets(folder) == {ids[0]: {effusion.id}, ids[1]: both, ids[2]: {nodule.id}}
    caption = gallery.model.data(gallery.model.index(1, 0), Qt.ItemDataRole.DisplayRole)
    assert " · effusion, nodule" in str(caption)
    colours = gallery.model.data(gallery.model.index(1, 0), CLASS_COLOURS_ROLE)
    assert colours == [QColor(effusion.colour), QColor(nodule.colour)]
    assert bin_texts(multi_window)[1:] == [
        "[1] effusion: 2 (train 2, test 0)",
        "[2] nodule: 2 (train 2, test 0)",
    ]
    select_rows(multi_window, [1, 2])
    gallery.view.setFocus()
    qtbot.keyClick(gallery.view, Qt.Key.Key_2)  # both have nodule: taken off
    assert stored_label_sets(folder) == {ids[0]: {effusion.id}, ids[1]: {effusion.id}}
    qtbot.keyClick(gallery.view, Qt.Key.Key_1)  # one lacks effusion: added to it
    assert stored_label_sets(folder) == {i: {effusion.id} for i in ids}
    qtbot.keyClick(gallery.view, Qt.Key.Key_2)
    menu = gallery.selection_menu()
    remove = [a for a in menu.actions() if a.text() == "Take off label “effusion”"]
    remove[0].trigger()
    assert stored_label_sets(folder) == {
        ids[0]: {effusion.id},
        ids[1]: {nodule.id},
        ids[2]: {nodule.id},
    }
    assert send_drop(
        viewport, gallery_drag(multi_window, [0, 1]), bin_point(multi_window, UNLABELLED)
    )
    assert stored_label_sets(folder) == {ids[2]: {nodule.id}}


def test_import_folders_as_classes_from_the_menu(
    qtbot: QtBot, project_window: MainWindow, samples: Path, tmp_path: Path
) -> None:
    with qtbot.waitSignal(project_window.session.import_finished, timeout=20_000) as blocker:
        assert project_window.file_menu.import_class_folders_at(samples / "photos")
    assert blocker.args[0].labelled == {"fundus": 3, "histology": 3}
    assert bin_texts(project_window) == [
        "Unlabelled (0)",
        "[1] fundus: 3 (train 3, test 0)",
        "[2] histology: 3 (train 3, test 0)",
    ]
    filters = project_window.gallery.filter
    assert [filters.itemText(i) for i in range(2, 4)] == ["Class: fundus", "Class: histology"]
    with open_project(tmp_path / "project") as project:
        assert len(project.labels.all()) == 6


def test_review_filters_list_what_the_latest_run_got_wrong(
    qtbot: QtBot, project_window: MainWindow, samples: Path
) -> None:
    with qtbot.waitSignal(project_window.session.import_finished, timeout=20_000):
        assert project_window.file_menu.import_class_folders_at(samples / "photos")
    gallery, project = project_window.gallery, project_window.session.project
    assert project is not None
    gallery.set_filter(GalleryFilter(GalleryView.MISCLASSIFIED))
    assert gallery.summary.text() == "No inference run with predictions yet"
    run_id = project.record_run(
        config={"kind": "inference"}, seed=0, versions={}, backbone="t", backbone_sha256="ab" * 32
    )
    ids = [image.id for image in project.images()]  # fundus 0-2, histology 3-5
    fundus_scores = [0.9, 0.2, 0.6, 0.1, 0.55, 0.3]  # ids[1] and ids[4] are wrong
    rows = [
        PredictionRow(
            i,
            "fundus" if s >= 0.5 else "histology",
            {"fundus": s, "histology": round(1 - s, 2)},
            np.zeros((1, 4), np.float32),
        )
        for i, s in zip(ids, fundus_scores, strict=True)
    ]
    project.record_predictions(run_id, rows)
    project.finish_run(run_id, "finished")
    gallery.refresh()
    assert [gallery.model.image_id(r) for r in range(gallery.model.rowCount())] == [ids[1], ids[4]]
    assert gallery.summary.text() == "2 shown of 6 images"
    gallery.set_filter(GalleryFilter(GalleryView.UNCERTAIN))
    # margins: ids[4] .1, ids[2] .2, ids[5] .4, ids[1] .6, then ids[0] / ids[3] .8 (oldest first)
    shown = [gallery.model.image_id(r) for r in range(gallery.model.rowCount())]
    assert shown == [ids[4], ids[2], ids[5], ids[1], ids[0]]
