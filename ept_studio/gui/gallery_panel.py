"""The gallery panel: a filter bar above the thumbnails, refreshed whenever the project changes.

Besides the fixed filters, the bar can show chosen images (a confusion-matrix cell or a
reliability bar in the Results tab): the filter list then names them, and "All images" goes back.

It also owns what acts on the selected thumbnails besides the bins: keys 0-9, the train / test
toggle (key T) and the right-click menu (take one label off, clear, toggle the role, take the
images out of the project: also the Delete key, after a confirmation).

"One tile per series" (remembered between sessions) shows a DICOM series as one tile, its middle
slice: keys, bins, T and the menu then act on every slice of the selected series at once.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QPoint, Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.gallery import GalleryModel, GalleryView
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.settings import AppSettings
from ept_studio.services.project import (
    REVIEW_VIEWS,
    GalleryFilter,
    GalleryItem,
    pacs_copies_among,
)
from ept_studio.services.project import GalleryView as Show
from ept_studio.services.project import series_gallery_items as series_items

IMPORT_HINT = "Drop DICOM, PNG or JPEG files or folders here, or File > Import…"
NO_MATCH_HINT = "No image matches this filter"
PREDICT_FIRST_HINT = "Predict images in the Results tab first"
NO_PROJECT_HINT = "Create or open a project first (File > New project…)"
SERIES_TILES_TIP = (
    "Show the slices of each CT or MR series as one tile (its middle slice). A label, a class "
    "bin or the train / test role given to the tile goes to every slice of the series. Images "
    "that are not part of a series keep their own tile."
)
REMOVE_TITLE = "Remove from project"
REMOVE_TIP = (
    "Take the selected images out of this project, with their labels. The files on your disk "
    "stay where they are."
)


class GalleryPanel(QWidget):
    """Filter (all / unlabelled / per class / train / test / review) and what it lets through."""

    images_removed = Signal(list)
    """Images were taken out of the project (their ids): results that scored them are stale, a
    viewer showing one of them must let it go."""

    def __init__(
        self,
        session: ProjectSession,
        parent: QWidget | None = None,
        settings: AppSettings | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.settings = settings or AppSettings()
        self.model = GalleryModel(self)
        self.view = GalleryView()
        self.view.setModel(self.model)
        self.view.digit_pressed.connect(self._on_digit)
        self.view.customContextMenuRequested.connect(self._on_context_menu)
        self.toggle_role_action = QAction("Toggle &train / test", self)
        self.toggle_role_action.setShortcut(QKeySequence("T"))
        self.toggle_role_action.setToolTip("Hold the selected images out for testing, or back")
        self.toggle_role_action.triggered.connect(self.toggle_role)
        self.addAction(self.toggle_role_action)
        self.remove_action = QAction("Remove from project…", self)
        self.remove_action.setShortcuts(QKeySequence.StandardKey.Delete)
        self.remove_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.remove_action.setToolTip(REMOVE_TIP)
        self.remove_action.triggered.connect(self.ask_remove)
        self.view.addAction(self.remove_action)  # the Delete key while the gallery has focus
        self.running_task: Callable[[], str | None] = lambda: None
        """The name of a task that is running (training, predicting), which images must not be
        taken out under; the main window tells it."""
        self.filter = QComboBox()
        self.filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.filter.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.filter.setMinimumContentsLength(16)
        self.filter.currentIndexChanged.connect(self._on_filter_changed)
        self.show_all = QPushButton("All images")
        self.show_all.setToolTip("Back to every image of the project")
        self.show_all.clicked.connect(self.show_all_images)
        self.show_all.hide()
        self.series_tiles_action = QAction("One tile per series", self)
        self.series_tiles_action.setCheckable(True)
        self.series_tiles_action.setChecked(self.settings.gallery_series_tiles)
        self.series_tiles_action.setToolTip(SERIES_TILES_TIP)
        self.series_tiles_action.toggled.connect(self._on_series_tiles)
        self.series_tiles = QToolButton()
        self.series_tiles.setDefaultAction(self.series_tiles_action)
        self.summary = QLabel()
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show:"))
        bar.addWidget(self.filter, 1)
        bar.addWidget(self.show_all)
        bar.addWidget(self.series_tiles)
        bar.addStretch(0)
        bar.addWidget(self.summary)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.view)
        session.project_changed.connect(self.refresh_filters)
        session.classes_changed.connect(self.refresh_filters)
        session.images_changed.connect(self.refresh)
        session.labels_changed.connect(self.refresh)
        self.refresh_filters()

    def current_filter(self) -> GalleryFilter:
        data = self.filter.currentData()
        return data if isinstance(data, GalleryFilter) else GalleryFilter()

    def set_filter(self, selection: GalleryFilter) -> None:
        """Show ``selection``; chosen images get their own entry, named by their label."""
        if selection.view is Show.IMAGES:
            self._set_chosen(selection)
        for index in range(self.filter.count()):
            if self.filter.itemData(index) == selection:
                self.filter.setCurrentIndex(index)
                return

    def _set_chosen(self, selection: GalleryFilter) -> None:
        """The one chosen-images entry, first in the list (replacing an earlier one)."""
        self.filter.blockSignals(True)
        if self._chosen_index() is not None:
            self.filter.removeItem(0)
        self.filter.insertItem(0, selection.label, selection)
        tip = f"{selection.label} ({len(selection.image_ids)} images, from the Results tab)"
        self.filter.setItemData(0, tip, Qt.ItemDataRole.ToolTipRole)
        self.filter.setCurrentIndex(-1)
        self.filter.blockSignals(False)

    def _chosen_index(self) -> int | None:
        data = self.filter.itemData(0) if self.filter.count() else None
        return 0 if isinstance(data, GalleryFilter) and data.view is Show.IMAGES else None

    @Slot()
    def show_all_images(self) -> None:
        """Back from chosen images (or any filter) to every image; the chosen entry goes."""
        self.filter.blockSignals(True)
        if self._chosen_index() is not None:
            self.filter.removeItem(0)
        self.filter.blockSignals(False)
        self.set_filter(GalleryFilter(Show.ALL))
        self.refresh()

    @Slot()
    def refresh_filters(self) -> None:
        """Rebuild the filter list (classes may have changed), keeping the current choice."""
        current = self.current_filter()
        self.filter.blockSignals(True)
        self.filter.clear()
        if current.view is Show.IMAGES:
            self.filter.addItem(current.label, current)
        self.filter.addItem("All images", GalleryFilter(Show.ALL))
        self.filter.addItem("Unlabelled", GalleryFilter(Show.UNLABELLED))
        for info in self.session.classes():
            self.filter.addItem(f"Class: {info.name}", GalleryFilter(Show.CLASS, info.id))
        self.filter.addItem("Train", GalleryFilter(Show.TRAIN))
        self.filter.addItem("Test", GalleryFilter(Show.TEST))
        self.filter.addItem("Misclassified (latest run)", GalleryFilter(Show.MISCLASSIFIED))
        self.filter.addItem("Most uncertain (latest run)", GalleryFilter(Show.UNCERTAIN))
        for index in (self.filter.count() - 2, self.filter.count() - 1):
            tip = "Needs predictions: " + PREDICT_FIRST_HINT[0].lower() + PREDICT_FIRST_HINT[1:]
            self.filter.setItemData(index, tip, Qt.ItemDataRole.ToolTipRole)
        self.filter.blockSignals(False)
        self.set_filter(current)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Reload the items of the current filter; the selected images stay selected."""
        selected = set(self.view.selected_image_ids())
        colours = {info.id: info.colour for info in self.session.classes()}
        items = self._items()
        self.model.set_items(items, colours)
        self._select(selected)
        total = self.session.image_count()
        chosen = self.current_filter().view is Show.IMAGES
        self.show_all.setVisible(chosen)
        text = f"{len(items)} shown of {total} images"
        if self.series_tiles_action.isChecked():
            images = sum(item.slice_count for item in items)
            text = f"{len(items)} tiles ({images} images) shown of {total} images"
        no_run = (
            self.current_filter().view in REVIEW_VIEWS and self.session.prediction_run() is None
        )
        if no_run:
            text = "No inference run with predictions yet"
        self.summary.setText(text)
        self.view.set_empty_hint(self.empty_hint(total, no_run))

    def _items(self) -> list[GalleryItem]:
        """The tiles of the current filter: one per image, or one per series."""
        project = self.session.project
        if project is not None and self.series_tiles_action.isChecked():
            return series_items(project, self.current_filter())
        return self.session.items(self.current_filter())

    @Slot(bool)
    def _on_series_tiles(self, on: bool) -> None:
        self.settings.set_gallery_series_tiles(on)
        self.refresh()

    def empty_hint(self, total: int, no_run: bool) -> str:
        """What the empty gallery says: import, predict first, or that the filter matches none.

        ``no_run``: a review filter is chosen but no inference run has predictions yet.
        """
        if self.session.project is None:
            return NO_PROJECT_HINT
        if total == 0:
            return IMPORT_HINT
        if no_run:
            return PREDICT_FIRST_HINT
        return NO_MATCH_HINT

    def _select(self, image_ids: set[int]) -> None:
        selection = QItemSelection()
        for row in range(self.model.rowCount()):
            if self.model.image_id(row) in image_ids:
                index = self.model.index(row, 0)
                selection.select(index, index)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect
        self.view.selectionModel().select(selection, flags)

    @Slot(int)
    def _on_filter_changed(self, _index: int) -> None:
        self.refresh()

    @Slot(int)
    def _on_digit(self, digit: int) -> None:
        self.session.label_by_position(self.view.selected_image_ids(), digit)

    @Slot()
    def toggle_role(self) -> None:
        """Key T: the selected images to test, or back to train (unlabelled ones have no role)."""
        if self.session.project is not None:
            self.session.toggle_role(self.view.selected_image_ids())

    def selection_menu(self) -> QMenu:
        """The right-click menu for the selected thumbnails."""
        menu = QMenu(self)
        ids, carried = self.view.selected_image_ids(), self.view.selected_class_ids()
        for info in self.session.classes():
            if info.id in carried:
                action = menu.addAction(f"Take off label “{info.name}”")
                action.setData(info.id)
                action.triggered.connect(_call(self.session.remove_label, ids, info.id))
        clear = menu.addAction("Clear all labels")
        clear.setEnabled(bool(carried))
        clear.triggered.connect(_call(self.session.label, ids, None))
        menu.addSeparator()
        menu.addAction(self.toggle_role_action)
        menu.addSeparator()
        menu.addAction(self.remove_action)
        return menu

    @Slot()
    def ask_remove(self) -> bool:
        """Take the selected images (every slice of a selected series tile) out of the project,
        once the user has said yes; False when nothing was taken out."""
        project, ids = self.session.project, self.view.selected_image_ids()
        if project is None or not ids:
            return False
        running = "An import" if self.session.importing else self.running_task()
        if running:
            QMessageBox.information(
                self, REMOVE_TITLE, f"{running} is running: let it finish, then take images out."
            )
            return False
        question = removal_question(len(ids), pacs_copies_among(project, ids))
        if QMessageBox.question(self, REMOVE_TITLE, question) != QMessageBox.StandardButton.Yes:
            return False
        try:
            count = self.session.remove_images(ids)
        except EptStudioError as err:
            QMessageBox.warning(self, "EPT Studio", str(err))
            return False
        self.images_removed.emit(ids)
        window = self.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(
                f"{_images(count).capitalize()} taken out of the project. The files on your disk "
                "stay where they are."
            )
        return True

    @Slot(QPoint)
    def _on_context_menu(self, point: QPoint) -> None:
        if self.session.project is not None and self.view.selected_image_ids():
            self.selection_menu().exec(self.view.viewport().mapToGlobal(point))


def removal_question(count: int, pacs_copies: int = 0) -> str:
    """What the user is asked before ``count`` images leave the project (``pacs_copies`` of them
    fetched from a PACS, whose copies on this computer go too)."""
    one = count == 1
    text = f"Take {_images(count)} out of this project? " + (
        "Its labels go too. The file on your disk stays where it is."
        if one
        else "Their labels go too. The files on your disk stay where they are."
    )
    if pacs_copies:
        which = "It" if one else "They" if pacs_copies == count else f"{pacs_copies} of them"
        copies = "the copy" if pacs_copies == 1 else "the copies"
        go = "goes" if pacs_copies == 1 else "go"
        text += (
            f"\n\n{which} came from a PACS: {copies} kept on this computer {go} too (the PACS "
            "keeps its own)."
        )
    back = "it" if one else "them"
    return f"{text}\n\nThis cannot be undone: import {back} again to bring {back} back."


def _images(count: int) -> str:
    return "1 image" if count == 1 else f"{count} images"


def _call(action: Callable[..., None], *args: object) -> Callable[[], None]:
    """A slot taking no arguments (``triggered`` would pass ``checked`` on)."""

    def slot() -> None:
        action(*args)

    return slot
