"""The whole flow a user takes, in one real window: new project -> drop real DICOM / PNG files ->
label by drag-and-drop and keys -> train (cancel once, train again) -> predict -> attention overlay
-> export the prompt file and ONNX -> reopen the project and find everything."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from gui_support import bin_point, gallery_drag, import_by_drop, select_rows, send_drop
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot
from support import tiny_backbone

from ept_studio.common.training_events import StepFinished
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.results_panel import ONNX_EXPORT, PREDICTION
from ept_studio.gui.settings import AppSettings
from ept_studio.gui.training_panel import TRAINING
from ept_studio.services.project import ProjectTrainingSaved, Role, open_project
from ept_studio.services.project.inference import ProjectPredicted
from ept_studio.services.project.run_actions import OnnxExportResult
from ept_studio.services.project.tuning import TuningCancelled

pytestmark = pytest.mark.gui


def rows_of(window: MainWindow, folder_part: str) -> list[int]:
    """Gallery rows whose image comes from a source path containing ``folder_part``."""
    project = window.session.project
    assert project is not None
    wanted = {i.id for i in project.images() if folder_part in str(i.path)}
    model = window.gallery.model
    return [row for row in range(model.rowCount()) if model.image_id(row) in wanted]


def wait_task(qtbot: QtBot, window: MainWindow, start: object, timeout: int = 90_000) -> object:
    with qtbot.waitSignal(window.jobs.finished, timeout=timeout) as blocker:
        assert start
    return blocker.args


def test_new_project_to_exported_model_and_back(
    qtbot: QtBot, window: MainWindow, samples: Path, tmp_path: Path, app_settings: AppSettings
) -> None:
    folder = tmp_path / "project"
    originals = {p: p.read_bytes() for p in samples.rglob("*") if p.is_file()}
    assert window.file_menu.new_project_at(folder)
    import_by_drop(qtbot, window, samples)
    assert window.gallery.model.rowCount() == 8

    # label: fundus by dragging onto its bin, histology by key 2, DICOM left unlabelled
    fundus = window.session.add_class("fundus")
    histology = window.session.add_class("histology")
    fundus_rows, histology_rows = rows_of(window, "/fundus/"), rows_of(window, "/histology/")
    assert send_drop(
        window.bins.bins.viewport(),
        gallery_drag(window, fundus_rows),
        bin_point(window, fundus.id),
    )
    select_rows(window, histology_rows)
    qtbot.keyClick(window.gallery.view, Qt.Key.Key_2)
    select_rows(window, [fundus_rows[-1], histology_rows[-1]])
    qtbot.keyClick(window.gallery.view, Qt.Key.Key_T)  # one of each to the test role
    with open_project(folder) as project:
        labels = {(lb.image_id, lb.class_id, lb.role) for lb in project.labels.all()}
    assert sorted(class_id for _, class_id, _ in labels) == [fundus.id] * 3 + [histology.id] * 3
    assert sum(role is Role.TEST for _, _, role in labels) == 2

    # train: cancel the first run at its second step, then train for real
    window.jobs.backbone = tiny_backbone()
    panel = window.training
    panel.set_method("ept")
    panel.set_recipe("paper")
    panel.length.setValue(4)
    panel.batch_size.setValue(1)
    panel.epochs.setValue(100)

    def cancel_at_second_step(name: str, item: object) -> None:
        if name == TRAINING and isinstance(item, StepFinished) and item.step == 2:
            panel.cancel()

    window.jobs.task_event.connect(cancel_at_second_step)
    name, last = wait_task(qtbot, window, panel.start())  # type: ignore[misc]
    assert (name, type(last)) == (TRAINING, TuningCancelled)
    window.jobs.task_event.disconnect(cancel_at_second_step)
    panel.epochs.setValue(3)
    name, saved = wait_task(qtbot, window, panel.start())  # type: ignore[misc]
    assert isinstance(saved, ProjectTrainingSaved)
    assert window.results.model_run == saved.run_id

    # predict every image with the tuned torch model; thumbnails show the prediction
    window.side.setCurrentWidget(window.results)
    name, predicted = wait_task(qtbot, window, window.results.predict(None))  # type: ignore[misc]
    assert (name, type(predicted)) == (PREDICTION, ProjectPredicted)
    assert (predicted.predicted, predicted.failed) == (8, 0)
    texts = [window.gallery.model.index(r, 0).data() for r in range(8)]
    assert all("\nmodel: " in text for text in texts)
    assert window.results.view.results is not None
    # of the 6 labelled images predicted, only the 2 the model was not trained on are scored
    assert window.results.view.results.evaluated == 2
    assert window.results.view.results.not_scored == 4

    # the viewer shows the stored attention over a DICOM image
    ct_row = rows_of(window, "ct.dcm")[0]
    assert window.open_image(window.gallery.model.image_id(ct_row))
    plain = window.viewer.shown.copy()
    window.viewer.overlay_box.setChecked(True)
    assert window.viewer.overlay_shown
    assert "model attention" in window.viewer.caption.text()
    assert not np.array_equal(plain, window.viewer.shown)

    # exports
    prompt_out = tmp_path / "out" / "prompt.safetensors"
    assert window.results.export_prompt_to(prompt_out)
    assert hashlib.sha256(prompt_out.read_bytes()).hexdigest() == saved.prompt_sha256
    onnx_out = tmp_path / "out" / "model.onnx"
    name, exported = wait_task(qtbot, window, window.results.export_onnx_to(onnx_out))  # type: ignore[misc]
    assert (name, type(exported)) == (ONNX_EXPORT, OnnxExportResult)
    assert exported.parity.logits_error <= 1e-4
    assert "Parity with PyTorch" in window.results.state.text()
    assert window.results.export_csv_to(tmp_path / "out" / "predictions.csv")
    assert window.results.model_card_to(tmp_path / "out" / "model-card.md")
    assert "research use" in (tmp_path / "out" / "model-card.md").read_text().lower()

    # reopen in a fresh window: labels, runs, the exported model and the predictions are there
    window.close()
    again = MainWindow(app_settings)
    qtbot.addWidget(again)
    assert again.file_menu.open_project_at(folder)
    with open_project(folder) as project:
        assert {(lb.image_id, lb.class_id, lb.role) for lb in project.labels.all()} == labels
        statuses = [run.status for run in project.runs()]
        assert statuses == ["cancelled", "finished", "finished"]
        kinds = sorted(e.kind for e in project.exports())
        assert kinds == ["model-card", "onnx", "predictions-csv", "prompt"]
    assert [run.run_id for run in again.results.model_runs] == [saved.run_id]
    assert again.results.model_runs[0].has_onnx
    texts = [again.gallery.model.index(r, 0).data() for r in range(8)]
    assert all("\nmodel: " in text for text in texts)
    assert {p: p.read_bytes() for p in samples.rglob("*") if p.is_file()} == originals
    again.session.close()
