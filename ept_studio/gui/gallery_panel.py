"""The gallery panel: a filter bar above the thumbnails, refreshed whenever the project changes."""

from __future__ import annotations

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Slot
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ept_studio.gui.gallery import GalleryModel, GalleryView
from ept_studio.gui.session import ProjectSession
from ept_studio.services.gallery import GalleryFilter
from ept_studio.services.gallery import GalleryView as Show


class GalleryPanel(QWidget):
    """Filter (all / unlabelled / per class / train / test) and the thumbnails it lets through."""

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.model = GalleryModel(self)
        self.view = GalleryView()
        self.view.setModel(self.model)
        self.view.digit_pressed.connect(self._on_digit)
        self.filter = QComboBox()
        self.filter.currentIndexChanged.connect(self._on_filter_changed)
        self.summary = QLabel()
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Show:"))
        bar.addWidget(self.filter)
        bar.addStretch(1)
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
        for index in range(self.filter.count()):
            if self.filter.itemData(index) == selection:
                self.filter.setCurrentIndex(index)
                return

    @Slot()
    def refresh_filters(self) -> None:
        """Rebuild the filter list (classes may have changed), keeping the current choice."""
        current = self.current_filter()
        self.filter.blockSignals(True)
        self.filter.clear()
        self.filter.addItem("All images", GalleryFilter(Show.ALL))
        self.filter.addItem("Unlabelled", GalleryFilter(Show.UNLABELLED))
        for info in self.session.classes():
            self.filter.addItem(f"Class: {info.name}", GalleryFilter(Show.CLASS, info.id))
        self.filter.addItem("Train", GalleryFilter(Show.TRAIN))
        self.filter.addItem("Test", GalleryFilter(Show.TEST))
        self.filter.blockSignals(False)
        self.set_filter(current)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Reload the items of the current filter; the selected images stay selected."""
        selected = set(self.view.selected_image_ids())
        classes = self.session.classes()
        names = {info.id: info.name for info in classes}
        colours = {info.id: info.colour for info in classes}
        self.model.set_items(self.session.items(self.current_filter()), names, colours)
        self._select(selected)
        total = self.session.image_count()
        self.summary.setText(f"{self.model.rowCount()} shown of {total} images")

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
