"""The File menu: new / open / recent projects and import, each also callable with a path.

A new project is given a name and a place and gets a new folder of its own (never the user's image
folder). A multi-label project (an image may carry several classes) is chosen when it is created;
the label mode of a project never changes. "Import folders as classes" takes a folder whose
sub-folders are named after the classes. The patient key actions carry a project's patient key
(kept on this machine, never in the project folder) to another machine as a separate file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QFileDialog, QMainWindow, QMenu, QMessageBox

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.new_project_dialog import NewProjectDialog
from ept_studio.gui.pacs_dialog import PacsDialog
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.settings import AppSettings
from ept_studio.services.project import (
    LabelMode,
    create_demo_project,
    default_demo_folder,
    default_projects_parent,
    export_project_key,
    import_project_key,
)

IMAGE_FILTER = "Images (*.dcm *.dicom *.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)"
KEY_FILTER = "Patient key (*.key);;All files (*)"


class FileMenu(QMenu):
    """Project and import actions; dialogs only pick a path, the work is in the ``*_at`` methods."""

    def __init__(self, window: QMainWindow, session: ProjectSession, settings: AppSettings) -> None:
        super().__init__("&File", window)
        self.window_ = window
        self.session = session
        self.settings = settings
        self._action("&New project…", QKeySequence.StandardKey.New, self.ask_new)
        self._action("New &multi-label project…", "Ctrl+Shift+N", self.ask_new_multi)
        self._action("&Open project…", QKeySequence.StandardKey.Open, self.ask_open)
        self._action("Open the &demo project", "Ctrl+Shift+D", self.open_demo)
        self.recent = self.addMenu("Open &recent")
        self.recent.aboutToShow.connect(self.refresh_recent)
        self.projects_end = self.addSeparator()
        self._action("&Import files…", "Ctrl+I", self.ask_import_files)
        self._action("Import &folder…", "Ctrl+Shift+I", self.ask_import_folder)
        self._action("Import folders as &classes…", "Ctrl+Alt+I", self.ask_import_class_folders)
        self._action("Import from a &PACS…", "Ctrl+Alt+P", self.ask_import_pacs)
        self.pacs_dialog: PacsDialog | None = None
        self.addSeparator()
        self._action("E&xport patient key…", "", self.ask_export_key)
        self._action("Import patient &key…", "", self.ask_import_key)
        self.addSeparator()
        self._action("&Quit", QKeySequence.StandardKey.Quit, window.close)
        self.refresh_recent()

    def _action(
        self, text: str, keys: QKeySequence.StandardKey | str, slot: Callable[[], object]
    ) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(keys))
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def add_project_action(self, action: QAction) -> None:
        """Put ``action`` with the project actions (before the import ones)."""
        self.insertAction(self.projects_end, action)

    def new_project_at(self, folder: Path, label_mode: LabelMode | str = LabelMode.SINGLE) -> bool:
        """A new project in ``folder`` (created; an existing one must be empty, else refused).

        ``multi``: images may carry several classes. The status bar then says where it is.
        """
        if not self._guarded(lambda chosen: self.session.new_project(chosen, label_mode), folder):
            return False
        self.window_.statusBar().showMessage(
            f"New project “{folder.name}” created in {folder.absolute()}. "
            "Drop images on it, or File > Import…"
        )
        return True

    def open_project_at(self, folder: Path) -> bool:
        return self._guarded(self.session.open_project, folder)

    def try_open_project(self, folder: Path) -> str | None:
        """Open ``folder`` without a dialog: None when it opened, else the reason it did not."""
        try:
            self.session.open_project(folder)
        except EptStudioError as err:
            return str(err)
        self._remember(folder)
        return None

    @Slot()
    def open_demo(self, folder: Path | None = None) -> bool:
        """Build the demo project (real DICOM samples from installed packages) once, then open it."""
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            summary = create_demo_project(folder or default_demo_folder(), exist_ok=True)
        except EptStudioError as err:
            QMessageBox.warning(self.window_, "EPT Studio", str(err))
            return False
        finally:
            QApplication.restoreOverrideCursor()
        return self.open_project_at(summary.project_folder)

    def _guarded(self, opener: Callable[[Path], None], folder: Path) -> bool:
        try:
            opener(folder)
        except EptStudioError as err:
            QMessageBox.warning(self.window_, "EPT Studio", str(err))
            return False
        self._remember(folder)
        return True

    def _remember(self, folder: Path) -> None:
        self.settings.add_recent_project(folder)
        self.settings.set_last_project(folder)
        self.refresh_recent()

    @Slot()
    def refresh_recent(self) -> None:
        self.recent.clear()
        folders = self.settings.recent_projects()
        for folder in folders:
            action = self.recent.addAction(str(folder))
            action.setData(str(folder))
            action.triggered.connect(self._on_recent)
        self.recent.setEnabled(bool(folders))

    @Slot()
    def _on_recent(self) -> None:
        action = self.sender()
        if isinstance(action, QAction):
            self.open_project_at(Path(str(action.data())))

    @Slot()
    def ask_new(self) -> bool:
        return self._ask_new(multi_label=False)

    @Slot()
    def ask_new_multi(self) -> bool:
        return self._ask_new(multi_label=True)

    def _ask_new(self, *, multi_label: bool) -> bool:
        """Ask for the new project's name and place, then create its folder there."""
        location = self.settings.new_project_parent or default_projects_parent()
        dialog = NewProjectDialog(location, multi_label=multi_label, parent=self.window_)
        if dialog.exec() != NewProjectDialog.DialogCode.Accepted:
            return False
        folder = dialog.folder()
        self.settings.set_new_project_parent(folder.parent)
        return self.new_project_at(folder, dialog.label_mode())

    @Slot()
    def ask_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window_, "Open project folder")
        if folder:
            self.open_project_at(Path(folder))

    @Slot()
    def ask_import_files(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self.window_, "Import images", "", IMAGE_FILTER)
        if names:
            self.import_at([Path(name) for name in names])

    @Slot()
    def ask_import_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window_, "Import a folder (recursively)")
        if folder:
            self.import_at([Path(folder)])

    @Slot()
    def ask_import_class_folders(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self.window_,
            "Import folders as classes: choose the folder holding one folder per class",
        )
        if folder:
            self.import_class_folders_at(Path(folder))

    @Slot()
    def ask_import_pacs(self) -> PacsDialog | None:
        """The PACS dialog (one per window: it keeps this run's passwords), for the open project."""
        if self.session.project is None:
            QMessageBox.information(self.window_, "EPT Studio", "Create or open a project first.")
            return None
        if self.pacs_dialog is None:
            self.pacs_dialog = PacsDialog(self.session, parent=self.window_)
        self.pacs_dialog.show()
        self.pacs_dialog.raise_()
        return self.pacs_dialog

    def import_at(self, paths: list[Path]) -> bool:
        """File > Import with the paths chosen: runs in the worker thread, like a drop."""
        if self.session.project is None:
            QMessageBox.information(self.window_, "EPT Studio", "Create or open a project first.")
            return False
        return self.session.start_import(paths)

    def import_class_folders_at(self, folder: Path) -> bool:
        """Each sub-folder of ``folder`` is a class (created if new) labelling the images in it."""
        if self.session.project is None:
            QMessageBox.information(self.window_, "EPT Studio", "Create or open a project first.")
            return False
        return self.session.start_import([folder], folders_as_classes=True)

    @Slot()
    def ask_export_key(self) -> None:
        name, _ = QFileDialog.getSaveFileName(
            self.window_, "Export patient key (save it outside the project folder)", "", KEY_FILTER
        )
        if name:
            self.export_key_at(Path(name))

    @Slot()
    def ask_import_key(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self.window_, "Import patient key", "", KEY_FILTER)
        if name:
            self.import_key_at(Path(name))

    def export_key_at(self, destination: Path) -> bool:
        """Write the open project's patient key to ``destination``, to carry it elsewhere."""
        project = self.session.project
        if project is None:
            QMessageBox.information(self.window_, "EPT Studio", "Open a project first.")
            return False
        try:
            export_project_key(project, destination)
        except EptStudioError as err:
            QMessageBox.warning(self.window_, "EPT Studio", str(err))
            return False
        self.window_.statusBar().showMessage(
            f"Patient key saved to {destination}. Keep it apart from the project; import it on "
            "the other machine, then delete it."
        )
        return True

    def import_key_at(self, source: Path) -> bool:
        """Keep the open project's patient key (an exported key file) on this machine."""
        project = self.session.project
        if project is None:
            QMessageBox.information(self.window_, "EPT Studio", "Open a project first.")
            return False
        try:
            import_project_key(project, source)
        except EptStudioError as err:
            QMessageBox.warning(self.window_, "EPT Studio", str(err))
            return False
        self.session.images_changed.emit()  # the checklist drops its missing-key warning
        self.window_.statusBar().showMessage(
            "Patient key imported: new images of a patient already in the project join that "
            "patient. You may delete the key file."
        )
        return True
