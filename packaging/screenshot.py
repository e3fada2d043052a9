"""Render the README's screenshot of the main window (offscreen): ``python packaging/screenshot.py``.

It builds a small project from real sample images that ship with the dev dependencies (pydicom's CT
and MR, crops of scikit-image's fundus photograph and immunohistochemistry slide), labels the crops
by their folder, and saves ``resources/screenshots/main-window.png``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    import pydicom
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication
    from support import write_class_folders

    from ept_studio.gui.main_window import MainWindow
    from ept_studio.gui.settings import AppSettings
    from ept_studio.services.project import create_project, import_paths

    work = Path(tempfile.mkdtemp(prefix="ept-shot-"))
    os.environ["EPT_STUDIO_DATA"] = str(work / "app-data")
    studies = write_class_folders(work / "studies", per_class=5, size=192)
    dicom = Path(pydicom.data.__file__).parent / "test_files"
    (work / "dicom").mkdir()
    shutil.copy(dicom / "CT_small.dcm", work / "dicom" / "ct.dcm")
    shutil.copy(dicom / "MR_small.dcm", work / "dicom" / "mr.dcm")
    project = work / "project"
    with create_project(project) as store:
        import_paths(store, [studies], folders_as_classes=True)
        import_paths(store, [work / "dicom"])
    app = QApplication.instance() or QApplication(sys.argv)
    settings = AppSettings(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(settings)
    window.resize(1100, 700)
    window.session.open_project(project)
    window.show()
    app.processEvents()
    out = ROOT / "resources" / "screenshots" / "main-window.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out))
    window.session.close()
    shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(f"{out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
