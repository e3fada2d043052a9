"""A file dropped on the viewer: shown at once, tried on the project's model in the background,
with its model score and model attention, and neither imported nor changed."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gui_support import file_mime, send_drop
from labelled_projects import tiny_trained_project
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot
from support import tiny_backbone

from ept_studio.gui.jobs import ProjectJobs
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.viewer import ViewerPanel
from ept_studio.gui.viewer_drop import VIEWER_PREVIEW
from ept_studio.services.project import Project
from ept_studio.services.project.viewer import render_view
from ept_studio.services.project.viewer_caption import DROPPED

pytestmark = pytest.mark.gui


def _viewer(qtbot: QtBot, folder: Path) -> tuple[ViewerPanel, ProjectJobs]:
    session = ProjectSession()
    jobs = ProjectJobs(session)
    jobs.backbone = tiny_backbone()
    panel = ViewerPanel(session)
    panel.set_preview_jobs(jobs)
    qtbot.addWidget(panel)
    session.open_project(folder)
    panel.resize(780, 600)
    panel.show()
    qtbot.waitExposed(panel)
    return panel, jobs


@pytest.fixture
def trained(qtbot: QtBot, tmp_path: Path, class_folders: Path) -> Iterator[ViewerPanel]:
    """The viewer over a project of 12 images with one tiny EPT model."""
    folder = tmp_path / "project"
    tiny_trained_project(folder, class_folders, [5, 11])
    panel, jobs = _viewer(qtbot, folder)
    yield panel
    jobs.stop()
    panel.session.close()


def _dropped_copy(class_folders: Path, tmp_path: Path) -> Path:
    dropped = tmp_path / "new" / "scan.png"
    dropped.parent.mkdir()
    shutil.copy(class_folders / "fundus" / "img02.png", dropped)
    return dropped


def test_a_dropped_png_gets_the_models_score_and_attention_and_is_not_imported(
    qtbot: QtBot, trained: ViewerPanel, class_folders: Path, tmp_path: Path
) -> None:
    panel = trained
    project = panel.session.project
    assert project is not None
    images, labels = len(project.images()), len(project.labels.all())
    dropped = _dropped_copy(class_folders, tmp_path)
    before = dropped.read_bytes()
    assert panel.file_preview is not None
    jobs = panel.file_preview.jobs
    with qtbot.waitSignal(jobs.finished, timeout=60_000) as blocker:
        assert send_drop(panel.canvas.viewport(), file_mime(dropped))
    assert blocker.args[0] == VIEWER_PREVIEW
    assert panel.view is not None
    assert (panel.view.path, panel.image_id) == (dropped, None)
    caption = panel.image_caption
    assert caption.labels.text() == DROPPED
    assert re.fullmatch(
        r"Model: (fundus|histology) \d{1,3} % \(model score\)", caption.model.text()
    )
    assert caption.summary.text() == "PNG · 160 × 160 px"
    QApplication.processEvents()
    assert panel.overlay_shown
    assert panel.colour_bar.isVisible()
    assert panel.caption.text().startswith("model attention (mean of 4 heads) · predicted class: ")
    plain = render_view(panel.view)
    assert panel.shown is not None
    assert not np.array_equal(panel.shown, plain)
    panel.set_opacity(0)
    np.testing.assert_array_equal(panel.shown, plain)
    # labelling keys have no image of the project to label
    panel.activateWindow()
    qtbot.waitUntil(panel.isActiveWindow, timeout=5_000)
    qtbot.keyClick(panel.canvas, Qt.Key.Key_1)
    assert (len(project.images()), len(project.labels.all())) == (images, labels)
    assert dropped.read_bytes() == before
    assert sorted(path.name for path in dropped.parent.iterdir()) == ["scan.png"]


def test_without_a_model_the_dropped_file_is_shown_and_the_caption_says_why(
    qtbot: QtBot, tmp_path: Path, class_folders: Path
) -> None:
    folder = tmp_path / "project"
    Project.create(folder).close()
    panel, jobs = _viewer(qtbot, folder)
    try:
        dropped = _dropped_copy(class_folders, tmp_path)
        assert send_drop(panel.canvas.viewport(), file_mime(dropped))
        assert panel.view is not None
        assert panel.view.path == dropped
        assert (
            panel.image_caption.model.text() == "Train a model to see its model score for this file"
        )
        assert not jobs.busy
        assert not send_drop(panel.canvas.viewport(), file_mime(dropped.parent))  # a folder
    finally:
        panel.session.close()
