"""The Results tab's ONNX export with a choice of model size, in a real offscreen window on a tiny
trained project: an int8 model kept with its size and check figures, and one refused (a threshold
only an identical model meets) with the figures shown, nothing written, and the standard model
exported from the message's button."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from labelled_projects import tiny_trained_project
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot
from support import tiny_backbone

from ept_studio.gui.export_dialog import PRECISION_CHOICES, OnnxExportDialog
from ept_studio.gui.jobs import ProjectJobs
from ept_studio.gui.results_panel import ONNX_EXPORT, ResultsPanel
from ept_studio.gui.session import ProjectSession
from ept_studio.services.model import open_onnx_model
from ept_studio.services.project import OnnxExportResult, SmallerModelRefused

pytestmark = pytest.mark.gui


@pytest.fixture
def panel(qtbot: QtBot, tmp_path: Path, class_folders: Path) -> Iterator[ResultsPanel]:
    """The tab over a project of 12 images with one tiny EPT model."""
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


def export(qtbot: QtBot, panel: ResultsPanel, started: bool) -> object:
    with qtbot.waitSignal(panel.jobs.finished, timeout=60_000) as blocker:
        assert started
    assert blocker.args[0] == ONNX_EXPORT
    return blocker.args[1]


def test_the_dialog_names_each_model_in_plain_words_with_the_term_in_its_tooltip(
    qtbot: QtBot,
) -> None:
    dialog = OnnxExportDialog()
    qtbot.addWidget(dialog)
    assert dialog.precision == "fp32"
    labels = [dialog.buttons[c.key].text() for c in PRECISION_CHOICES]
    assert labels == [
        "Standard (most exact)",
        "Smaller and faster on CPU (int8)",
        "For NVIDIA GPUs (fp16)",
    ]
    assert dialog.buttons["int8"].toolTip().startswith("int8: dynamic quantization")
    dialog.choose("fp16")
    assert dialog.precision == "fp16"
    dialog.buttons["int8"].click()
    assert dialog.precision == "int8"


def test_an_int8_export_says_its_size_and_check_and_is_read_back(
    qtbot: QtBot, panel: ResultsPanel, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "model-int8.onnx"
    result = export(qtbot, panel, panel.export_onnx_to(out, "int8"))
    assert isinstance(result, OnnxExportResult)
    assert result.precision == "int8"
    text = panel.state.text()
    size = f"{out.stat().st_size / 1024:.0f} KiB"
    assert text.startswith(f"Exported model-int8.onnx ({size}, smaller and faster on CPU (int8))")
    assert (
        "Checked against the standard model on the 2 check images (pydicom's CT and MR sample "
        "images): the same top class on 100%;"
    ) in text
    check = result.precision_check
    assert check is not None
    assert f"attention maps correlate {check.attention_correlation:.4f}" in text
    runner = open_onnx_model(out)
    assert runner.info.precision is not None
    assert runner.info.precision.precision == "int8"
    assert panel.refusal is None


def test_a_refused_smaller_model_shows_the_figures_and_offers_the_standard_one(
    qtbot: QtBot, panel: ResultsPanel, tmp_path: Path
) -> None:
    asked, out = tmp_path / "out" / "model-int8.onnx", tmp_path / "out" / "model.onnx"
    refused = export(qtbot, panel, panel.export_onnx_to(asked, "int8", min_correlation=1.0))
    assert isinstance(refused, SmallerModelRefused)
    assert not asked.parent.exists() or list(asked.parent.iterdir()) == []
    box = panel.refusal
    assert box is not None
    qtbot.waitExposed(box)
    record = refused.record
    text = box.text()
    assert text.startswith("The smaller and faster on CPU (int8) model was not saved")
    assert "the same top class on 100% (needs 99%)" in text
    assert f"attention maps correlate {record.attention_correlation:.4f}" in text
    assert "each needs 1)" in text
    assert panel.state.text() == text
    standard = next(
        b for b in box.buttons() if box.buttonRole(b) is QMessageBox.ButtonRole.AcceptRole
    )
    assert standard.text() == "Export the standard model"
    with qtbot.waitSignal(panel.jobs.finished, timeout=60_000) as blocker:
        standard.click()
    result = blocker.args[1]
    assert isinstance(result, OnnxExportResult)
    assert (result.onnx_path, result.precision) == (out, "fp32")
    assert open_onnx_model(out).info.precision is None
    assert panel.state.text().startswith("Exported model.onnx (")
    assert not asked.exists()


def test_an_fp16_export_says_where_it_was_checked(
    qtbot: QtBot, panel: ResultsPanel, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "model-fp16.onnx"
    result = export(qtbot, panel, panel.export_onnx_to(out, "fp16"))
    assert isinstance(result, OnnxExportResult)
    check = result.precision_check
    assert check is not None
    assert check.top1_agreement == 1.0
    text = panel.state.text()
    assert "For NVIDIA GPUs (fp16)".lower() in text.lower()
    on_cpu = "No CUDA GPU here: the fp16 model was checked on the CPU"
    assert (on_cpu in text) == (check.provider == "CPUExecutionProvider")
    assert open_onnx_model(out).info.precision is not None
