"""The side tabs (classes, train, results), each page scrolling vertically when it is taller than
the window allows.

On a 720-pixel-high laptop screen, with the import report docked below, the Train and Results pages
are taller than the room left; without scrolling they would set the window's minimum height above
the screen. Widths are kept: a page is never narrower than its own minimum, so no control is cut.
The tab widget's methods take and return the pages themselves, not their scroll areas.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QSize, Qt
from PySide6.QtWidgets import QFrame, QScrollArea, QStyle, QTabWidget, QWidget

MINIMUM_PAGE_HEIGHT = 160


class PageScroller(QScrollArea):
    """Scrolls one page up and down; as wide as the page needs, plus the scroll bar."""

    def __init__(self, page: QWidget) -> None:
        super().__init__()
        self._page = page
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(page)
        page.installEventFilter(self)

    def page(self) -> QWidget:
        return self._page

    def _bar_width(self) -> int:
        return self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent) + 2

    def minimumSizeHint(self) -> QSize:
        return QSize(self.page().minimumSizeHint().width() + self._bar_width(), MINIMUM_PAGE_HEIGHT)

    def sizeHint(self) -> QSize:
        hint = self.page().sizeHint()
        return QSize(hint.width() + self._bar_width(), hint.height())

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._page and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()  # the page's minimum width may have changed
        return super().eventFilter(watched, event)


class SideTabs(QTabWidget):
    """A QTabWidget whose pages scroll; ``addTab`` / ``setCurrentWidget`` / ``currentWidget``
    / ``indexOf`` / ``widget`` speak of the pages."""

    def addTab(self, page: QWidget, label: str) -> int:  # type: ignore[override]
        return super().addTab(PageScroller(page), label)

    def widget(self, index: int) -> QWidget | None:
        scroller = super().widget(index)
        return scroller.page() if isinstance(scroller, PageScroller) else scroller

    def indexOf(self, page: QWidget) -> int:
        for index in range(self.count()):
            if self.widget(index) is page:
                return index
        return -1

    def currentWidget(self) -> QWidget:
        page = self.widget(self.currentIndex())
        return page if page is not None else super().currentWidget()

    def setCurrentWidget(self, page: QWidget) -> None:
        index = self.indexOf(page)
        if index >= 0:
            self.setCurrentIndex(index)
