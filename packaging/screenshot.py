"""Render the README's screenshots offscreen at 1280 x 720: ``.venv/bin/python packaging/screenshot.py``.

It opens the app on its welcome page, builds the demo project (de-identified CT, MR and ultrasound
DICOM files that ship with pydicom and pydicom-data), shows the labelled demo with the readiness
checklist, the Train tab (simple and Advanced), tunes EPT (the default recipe) on the offline
default backbone with the status bar following it, opens the results on the test images (then
scrolled to the calibration and the prediction sets, and one confusion-matrix cell clicked: the
gallery shows those images), predicts every image and shows one in the viewer with its caption
and the model attention's colour bar.
Everything is saved to ``resources/screenshots/``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "resources" / "screenshots"
SCREEN = (1280, 720)
MID_RUN_STEP = 5
"""The training step at which the status bar's progress is photographed."""


def main() -> int:
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from ept_studio.gui.main_window import MainWindow
    from ept_studio.gui.settings import AppSettings
    from ept_studio.services.project.demo import create_demo_project

    work = Path(tempfile.mkdtemp(prefix="ept-shot-"))
    os.environ["EPT_STUDIO_DATA"] = str(work / "app-data")
    demo = create_demo_project(work / "demo")
    app = QApplication.instance() or QApplication(sys.argv)
    settings = AppSettings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings)
    window.resize(*SCREEN)
    window.show()
    OUT.mkdir(parents=True, exist_ok=True)
    shots = [_shot(app, window, "welcome.png")]

    window.file_menu.open_project_at(demo.project_folder)
    window.side.setCurrentWidget(window.training)
    shots.append(_shot(app, window, "main-window.png"))
    window.training.advanced.toggle.setChecked(True)
    shots.append(_shot(app, window, "train-advanced.png"))
    window.training.advanced.toggle.setChecked(False)

    panel = window.training
    panel.set_method("ept")  # everything else as a new user finds it: the default recipe
    if not panel.start():
        raise SystemExit(f"training did not start: {panel.state.text()}")
    window.side.setCurrentWidget(window.bins)  # the status bar follows training on every tab
    _wait(app, window, during=lambda: _mid_run_shot(app, window, shots))
    window.side.setCurrentWidget(window.training)
    shots.append(_shot(app, window, "train.png"))

    window.show_results()
    shots.append(_shot(app, window, "results.png"))
    _scroll_results(window, to_bottom=True)
    shots.append(_shot(app, window, "results-calibration.png"))
    if _click_an_error(window):
        shots.append(_shot(app, window, "results-errors.png"))
        window.gallery.show_all_images()
    _scroll_results(window, to_bottom=False)
    if not window.results.predict(None):
        raise SystemExit(f"prediction did not start: {window.results.state.text()}")
    _wait(app, window)

    project = window.session.project
    assert project is not None
    tested = {label.image_id for label in project.labels.all() if label.role.value == "test"}
    ct = next(i.id for i in project.images() if i.modality == "CT" and i.id in tested)
    window.gallery.view.setFocus()
    window.open_image(ct)
    window.viewer.overlay_box.setChecked(True)
    window.viewer.set_opacity(45)
    shots.append(_shot(app, window, "viewer.png"))
    window.session.close()
    shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write("".join(f"{path}\n" for path in shots))
    return 0


def _scroll_results(window: object, *, to_bottom: bool) -> None:
    """The Results page scrolled to its calibration and prediction sets, or back to the top."""
    from ept_studio.gui.side_tabs import PageScroller

    scroller = window.results.parentWidget()  # type: ignore[attr-defined]
    while scroller is not None and not isinstance(scroller, PageScroller):
        scroller = scroller.parentWidget()
    if scroller is not None:
        bar = scroller.verticalScrollBar()
        bar.setValue(bar.maximum() if to_bottom else 0)


def _click_an_error(window: object) -> bool:
    """Click the confusion-matrix cell with the most wrong test images: the gallery shows them."""
    view = window.results.view  # type: ignore[attr-defined]
    results = view.results
    matrix = results.scores.confusion_matrix if results and results.scores else None
    if not matrix:
        return False
    cells = [(n, i, j) for i, row in enumerate(matrix) for j, n in enumerate(row) if i != j]
    count, row, column = max(cells, default=(0, 0, 0))
    if count == 0:
        return False
    view.confusion.cellClicked.emit(row, column)
    return True


def _mid_run_shot(app: object, window: object, shots: list[Path]) -> None:
    """Once, when training has taken a few steps: the status bar's progress on the Gallery tab."""
    if any(path.name == "training-progress.png" for path in shots):
        return
    text = window.status.training.text.text()  # type: ignore[attr-defined]
    if f"step {MID_RUN_STEP} of" in text:
        shots.append(_shot(app, window, "training-progress.png"))


def _wait(
    app: object,
    window: object,
    timeout_s: float = 3600.0,
    during: Callable[[], None] | None = None,
) -> None:
    """Let the background task finish (and its last signals arrive); ``during`` runs meanwhile."""
    from PySide6.QtWidgets import QApplication

    assert isinstance(app, QApplication)
    deadline = time.monotonic() + timeout_s
    while window.jobs.busy:  # type: ignore[attr-defined]
        if time.monotonic() > deadline:
            raise SystemExit("the background task took too long")
        app.processEvents()
        if during is not None:
            during()
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
