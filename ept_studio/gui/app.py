"""Starting the desktop app: the QApplication, the first-run notice, then the main window.

The project open when the app last closed is opened again; if it is gone, the welcome page says so.
Nothing here (or in the modules it imports) loads torch: the window is up before any model is.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QSettings, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QIcon
from PySide6.QtWidgets import QApplication, QDialog, QMessageBox, QWidget

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common import crash
from ept_studio.common.appdata import DATA_ENV, app_dirs, app_icon_file
from ept_studio.gui.dialogs import NoticeDialog
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.settings import APPLICATION, ORGANISATION, AppSettings
from ept_studio.services.project import is_project_folder


def application(argv: Sequence[str] | None = None) -> QApplication:
    """The running QApplication, created (with the app's names) if there is none yet."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    app = QApplication(list(argv if argv is not None else sys.argv[:1]))
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    icon = app_icon_file()
    if icon is not None:
        app.setWindowIcon(QIcon(str(icon)))
    return app


def platform_settings() -> QSettings | None:
    """The settings file in the platform's config folder (see :mod:`ept_studio.common.appdata`).

    None under ``$EPT_STUDIO_DATA``: then QSettings' own location is kept, which tests point at a
    temporary folder with ``QSettings.setPath``. A first start copies the settings Qt's default
    location held, so an update keeps the accepted notice and the recent projects.
    """
    if os.environ.get(DATA_ENV):
        return None
    path = app_dirs().settings_file
    settings = QSettings(str(path), QSettings.Format.IniFormat)
    if not path.exists():
        earlier = QSettings(
            QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION
        )
        for key in earlier.allKeys():
            settings.setValue(key, earlier.value(key))
        settings.sync()
    return settings


def offer_crash_report(parent: QWidget | None = None) -> Path | None:
    """After a crash: name the newest report not offered yet and offer to open it (marked seen)."""
    report = crash.pending_report()
    if report is None:
        return None
    crash.mark_seen(report)
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("EPT Studio")
    box.setText("EPT Studio stopped unexpectedly last time.")
    box.setInformativeText(
        f"A crash report was written: {report.name}. It holds no patient data, file names or "
        "folder names. Open it?"
    )
    box.setStandardButtons(QMessageBox.StandardButton.Open | QMessageBox.StandardButton.Close)
    if box.exec() == QMessageBox.StandardButton.Open:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(report)))
    return report


def accept_notice(settings: AppSettings) -> bool:
    """True once the user has accepted the research-use notice (asked only the first time)."""
    if settings.notice_accepted:
        return True
    if NoticeDialog().exec() != QDialog.DialogCode.Accepted:
        return False
    settings.accept_notice()
    return True


def reopen_last_project(window: MainWindow) -> bool:
    """Open the project that was open last; if it cannot be, the welcome page says why."""
    folder = window.settings.last_project
    if folder is None:
        return False
    if not is_project_folder(folder):
        window.welcome.set_note(
            f"The last project, “{folder.name}”, is no longer in {folder.parent}. "
            "If it was moved, open it where it is now."
        )
        return False
    reason = window.file_menu.try_open_project(folder)
    if reason is not None:
        window.welcome.set_note(f"The last project could not be opened: {reason}")
        return False
    window.status.showMessage(f"Reopened your last project, “{folder.name}”, from {folder.parent}")
    return True


def run_smoke(window: MainWindow, app: QApplication) -> int:
    """``--smoke``: the window is up on the project; print what it shows and quit (0 = good)."""
    app.processEvents()
    shown = window.isVisible() and window.session.project is not None
    images = window.gallery.model.rowCount()
    sys.stdout.write(f"smoke: window shown={shown}, project images={images}\n")
    sys.stdout.write(f"{RESEARCH_USE_NOTICE}\n")
    sys.stdout.flush()
    window.close()
    return 0 if shown else 1


def run_app(
    argv: Sequence[str] | None = None, *, open_folder: Path | None = None, smoke: bool = False
) -> int:
    """Run the desktop app until its window is closed; the process exit status.

    ``open_folder``: a project to open at start (``ept-studio --demo`` passes the demo's).
    ``smoke``: open it, report and quit at once (the bundle's smoke test; no dialogs asked).
    """
    crash.install_reporting()
    app = application(argv)
    crash.raise_if_crash_test()
    settings = AppSettings(platform_settings())
    if not smoke and not accept_notice(settings):
        return 0
    window = MainWindow(settings)
    if smoke and open_folder is not None:
        window.session.open_project(open_folder)  # an error ends the smoke run, asks nothing
    elif open_folder is not None:
        window.file_menu.open_project_at(open_folder)
    elif not smoke:
        reopen_last_project(window)
    window.show()
    if smoke:
        return run_smoke(window, app)
    QTimer.singleShot(0, window, lambda: offer_crash_report(window))
    return app.exec()
