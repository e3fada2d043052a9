"""Starting the desktop app: the QApplication, the first-run notice, then the main window.

Nothing here (or in the modules it imports) loads torch: the window is up before any model is.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtWidgets import QApplication, QDialog

from ept_studio import __version__
from ept_studio.gui.dialogs import NoticeDialog
from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.settings import APPLICATION, ORGANISATION, AppSettings


def application(argv: Sequence[str] | None = None) -> QApplication:
    """The running QApplication, created (with the app's names) if there is none yet."""
    existing = QApplication.instance()
    if isinstance(existing, QApplication):
        return existing
    app = QApplication(list(argv if argv is not None else sys.argv[:1]))
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationVersion(__version__)
    return app


def accept_notice(settings: AppSettings) -> bool:
    """True once the user has accepted the research-use notice (asked only the first time)."""
    if settings.notice_accepted:
        return True
    if NoticeDialog().exec() != QDialog.DialogCode.Accepted:
        return False
    settings.accept_notice()
    return True


def run_app(argv: Sequence[str] | None = None, *, open_folder: Path | None = None) -> int:
    """Run the desktop app until its window is closed; the process exit status.

    ``open_folder``: a project to open at start (``ept-studio --demo`` passes the demo's).
    """
    app = application(argv)
    settings = AppSettings()
    if not accept_notice(settings):
        return 0
    window = MainWindow(settings)
    if open_folder is not None:
        window.file_menu.open_project_at(open_folder)
    window.show()
    return app.exec()
