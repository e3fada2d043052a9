"""Render the README's screenshots offscreen: ``.venv/bin/python packaging/screenshot.py``.

It builds the demo project (de-identified CT, MR and ultrasound DICOM files that ship with pydicom
and pydicom-data), tunes EPT (L = 100, the default recipe) on the offline default backbone, predicts every
image, and saves the main views to ``resources/screenshots/``: the gallery with class bins, the
Train tab with its curves, the Results tab, and the viewer with the attention overlay.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "screenshots"


def main() -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from ept_studio.gui.main_window import MainWindow
    from ept_studio.gui.settings import AppSettings
    from ept_studio.services.demo import create_demo_project

    work = Path(tempfile.mkdtemp(prefix="ept-shot-"))
    os.environ["EPT_STUDIO_DATA"] = str(work / "app-data")
    demo = create_demo_project(work / "demo")
    app = QApplication.instance() or QApplication(sys.argv)
    settings = AppSettings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings)
    window.resize(1280, 800)
    window.session.open_project(demo.project_folder)
    window.show()
    OUT.mkdir(parents=True, exist_ok=True)
    shots = [_shot(app, window, "main-window.png")]

    window.side.setCurrentWidget(window.training)
    panel = window.training
    panel.set_method("ept")  # everything else as a new user finds it: the default recipe
    if not panel.start():
        raise SystemExit(f"training did not start: {panel.state.text()}")
    _wait(app, window)
    shots.append(_shot(app, window, "train.png"))

    window.side.setCurrentWidget(window.results)
    if not window.results.predict(None):
        raise SystemExit(f"prediction did not start: {window.results.state.text()}")
    _wait(app, window)
    shots.append(_shot(app, window, "results.png"))

    project = window.session.project
    assert project is not None
    ct = next(i.id for i in project.images() if i.modality == "CT")
    window.open_image(ct)
    window.viewer.overlay_box.setChecked(True)
    window.viewer.set_opacity(45)
    shots.append(_shot(app, window, "viewer.png"))
    window.session.close()
    shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write("".join(f"{path}\n" for path in shots))
    return 0


def _wait(app: object, window: object, timeout_s: float = 600.0) -> None:
    """Let the background task finish (and its last signals arrive)."""
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    deadline = time.monotonic() + timeout_s
    while window.jobs.busy:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise SystemExit("the background task took too long")
        app.processEvents()
        time.sleep(0.02)
    for _ in range(5):
        app.processEvents()


def _shot(app: object, window: object, name: str) -> Path:
    from PySide6.QtWidgets import QApplication, QMainWindow

    assert isinstance(app, QApplication)
    assert isinstance(window, QMainWindow)
    for _ in range(3):
        app.processEvents()
    path = OUT / name
    window.grab().save(str(path))
    return path


if __name__ == "__main__":
    raise SystemExit(main())
