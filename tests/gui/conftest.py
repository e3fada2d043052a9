"""GUI fixtures: settings and the location index in a temporary folder, real sample images."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from PySide6.QtCore import QSettings
from pytestqt.qtbot import QtBot

from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.settings import AppSettings

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's settings or location index."""
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "app-data"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(tmp_path / "settings"))


@pytest.fixture
def app_settings(tmp_path: Path) -> AppSettings:
    return AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))


@pytest.fixture
def window(qtbot: QtBot, app_settings: AppSettings) -> Iterator[MainWindow]:
    main = MainWindow(app_settings)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitExposed(main)
    main.activateWindow()
    qtbot.waitUntil(main.isActiveWindow, timeout=5_000)  # shortcuts need the active window
    yield main
    main.session.close()


REG4 = "dinov2-vits14-reg4"


@pytest.fixture
def one_backbone_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Only dinov2-vits14-reg4 is here (a file that is not safetensors); the checkout's manifest."""
    models = tmp_path / "models"
    models.mkdir()
    weights = models / f"{REG4}.safetensors"
    weights.write_bytes(b"not weights")
    monkeypatch.setenv("EPT_STUDIO_MODELS", str(models))
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "cache"))
    return weights
