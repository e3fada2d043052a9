"""The Results tab on a real trained project: results views that never score a training image
as a test, the model card from the model's training run, and a dropped image tried on the model."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from gui_support import file_mime, send_drop
from labelled_projects import tiny_trained_project
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from support import tiny_backbone

from ept_studio.gui.jobs import ProjectJobs
from ept_studio.gui.results_panel import PREDICTION, ResultsPanel
from ept_studio.gui.results_preview import PREVIEW
from ept_studio.gui.session import ProjectSession
from ept_studio.services.project import Project
from ept_studio.services.project.reports import readme_path
from ept_studio.services.project.results import TRAINING_VIEW_NAME, ResultsScope

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot: QtBot, tmp_path: Path, class_folders: Path) -> Iterator[ResultsPanel]:
    """The tab over a project of 12 images (1 test image a class) with one tiny EPT model."""
    folder = tmp_path / "project"
    tiny_trained_project(folder, class_folders, [5, 11])
    session = ProjectSession()
    jobs = ProjectJobs(session)
    jobs.backbone = tiny_backbone()
    tab = ResultsPanel(jobs, list)
    qtbot.addWidget(tab)
    session.open_project(folder)
    tab.show()
    qtbot.waitExposed(tab)
    yield tab
    session.close()


def test_dropping_a_png_shows_the_models_scores_and_attention(
    qtbot: QtBot, panel: ResultsPanel, class_folders: Path, tmp_path: Path
) -> None:
    dropped = tmp_path / "new" / "scan.png"
    dropped.parent.mkdir()
    shutil.copy(class_folders / "fundus" / "img02.png", dropped)
    before = dropped.read_bytes()
    with qtbot.waitSignal(panel.jobs.finished, timeout=60_000) as blocker:
        assert send_drop(panel, file_mime(dropped))
    assert blocker.args[0] == PREVIEW
    preview = panel.preview.preview
    assert preview is not None
    assert preview.predicted_class in ("fundus", "histology")
    text = panel.preview.scores.text()
    shown = {
        line.strip().split(": ")[0]: float(line.strip().split(": ")[1])
        for line in text.splitlines()
        if line.startswith("  ")
    }
    assert set(shown) == {"fundus", "histology"}
    assert sum(shown.values()) == pytest.approx(1.0, abs=0.011)  # two decimals each
    assert f"Predicted class: {preview.predicted_class}" in text
    assert "Model score:" in text
    assert "model attention" in text
    assert "finding" not in text.lower()
    assert "scan.png (not added to the project)" in panel.preview.title.text()
    assert panel.preview.overlay.pixmap().width() == 160
    assert dropped.read_bytes() == before
    folder = panel.jobs.session.folder
    assert folder is not None
    with Project.open(folder) as project:
        assert len(project.images()) == 12


def test_predict_all_never_scores_a_training_image_as_a_test(
    qtbot: QtBot, panel: ResultsPanel, tmp_path: Path
) -> None:
    model_run = panel.model_run
    assert model_run is not None
    tooltip = str(panel.model.itemData(0, Qt.ItemDataRole.ToolTipRole))
    assert "(key: accuracy)" in tooltip
    with qtbot.waitSignal(panel.jobs.finished, timeout=60_000) as blocker:
        assert panel.predict(None)
    assert blocker.args[0] == PREDICTION
    labels = [choice.label for choice in panel.result_choices]
    assert labels[1].endswith(TRAINING_VIEW_NAME)
    assert panel.shown_scope is ResultsScope.TEST
    results = panel.view.results
    assert results is not None
    assert (results.evaluated, results.not_scored) == (2, 10)
    headline = panel.view.headline.text()
    assert results.scores is not None
    accuracy = results.scores.accuracy
    assert headline.startswith(
        f"Accuracy {accuracy.value:.2f} ({accuracy.low:.2f}-{accuracy.high:.2f}) on 2 test "
        "images (not trained on); 10 training images not scored. 95 % bootstrap interval"
    )
    header = panel.view.per_class.horizontalHeaderItem(3)
    assert header.text() == "Recall"
    assert header.toolTip().startswith("Recall (sensitivity): ")
    assert "(key: recall)" in header.toolTip()

    panel.shown.setCurrentIndex(1)
    assert panel.shown_scope is ResultsScope.TRAINING
    training = panel.view.results
    assert training is not None
    assert training.evaluated == 10
    assert panel.view.headline.text().startswith(TRAINING_VIEW_NAME)

    panel.refresh()  # what every finished task does: the chosen view stays
    assert panel.shown_scope is ResultsScope.TRAINING

    card = tmp_path / "out" / "card.md"
    assert panel.model_card_to(card)
    text = card.read_text(encoding="utf-8")
    assert text.startswith(f"# Model card: run {model_run} ")
    assert "Scored on 2 test images (not trained on);" in text
    table = tmp_path / "out" / "predictions.csv"
    assert panel.export_csv_to(table, relative_paths=True)
    header_row = table.read_text(encoding="utf-8").splitlines()[0]
    assert header_row.startswith("image_id,sha256,role,label,trained_on,predicted_class")
    assert header_row.endswith(",relative_path")
    assert readme_path(table).is_file()
