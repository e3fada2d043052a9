"""The viewer's image area: zoom with the wheel (around the cursor), pan, and window / level drags.

Mouse, as in most DICOM viewers:
- wheel: zoom in / out around the point under the cursor;
- left drag or middle drag: pan; double click: fit the image to the view again;
- right drag (or left drag while :attr:`ImageCanvas.left_drag_windows` is on): window / level,
  reported as :attr:`ImageCanvas.window_dragged` (dx, dy) in screen pixels; the panel turns
  horizontal motion into width (right = wider) and vertical motion into level (up = higher).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QMouseEvent,
    QPainter,
    QPixmap,
    QResizeEvent,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import QFrame, QGraphicsPixmapItem, QGraphicsScene, QGraphicsView, QWidget

ZOOM_STEP = 1.25
"""Zoom factor of one wheel notch (120 eighths of a degree)."""
ZOOM_LIMITS = (0.05, 64.0)
SCENE_MARGIN = 2.0
"""Room around the image for panning, in image sizes."""


def to_qimage(rgb: np.ndarray) -> QImage:
    """An ``H x W x 3`` uint8 array as a QImage that owns its own copy of the pixels."""
    pixels = np.ascontiguousarray(rgb, dtype=np.uint8)
    height, width = pixels.shape[:2]
    image = QImage(pixels.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return image.copy()


class ImageCanvas(QGraphicsView):
    """Shows one RGB image; zoom and pan are its own, window / level drags go to the panel."""

    window_dragged = Signal(int, int)
    zoom_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem()
        self.item.setTransformationMode(Qt.TransformationMode.FastTransformation)
        self.scene().addItem(self.item)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        self.setBackgroundBrush(Qt.GlobalColor.black)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.PreventContextMenu)
        # files dropped on the image go to the panel holding it (a scene would swallow them)
        self.setAcceptDrops(False)
        self.viewport().setAcceptDrops(False)
        self.left_drag_windows = False
        self.placeholder = ""
        """Said in the middle of the empty view (what to do to see an image here)."""
        self._fitted = True
        self._drag: Qt.MouseButton | None = None
        self._windowing = False
        self._last = QPoint()

    # -- content ------------------------------------------------------------------------------

    def set_pixels(self, rgb: np.ndarray, pixel_aspect: float = 1.0, *, fit: bool = False) -> None:
        """Show ``rgb``; pixels ``pixel_aspect`` times as tall as wide (Pixel Spacing)."""
        self.item.setPixmap(QPixmap.fromImage(to_qimage(rgb)))
        self.item.setTransform(QTransform.fromScale(1.0, pixel_aspect))
        bounds = self.item.sceneBoundingRect()
        # room around the image, so that zooming keeps any point under the cursor and panning
        # can bring any corner to the middle
        margin_x, margin_y = SCENE_MARGIN * bounds.width(), SCENE_MARGIN * bounds.height()
        self.scene().setSceneRect(bounds.adjusted(-margin_x, -margin_y, margin_x, margin_y))
        if fit or self._fitted:
            self.fit()

    def clear(self) -> None:
        self.item.setPixmap(QPixmap())
        self._fitted = True

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        self.viewport().update()

    def drawForeground(self, painter: QPainter, rect: QRectF | QRect) -> None:
        """The placeholder, in screen coordinates, while there is no image."""
        super().drawForeground(painter, rect)
        if not self.item.pixmap().isNull() or not self.placeholder:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(170, 170, 170))
        flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
        painter.drawText(self.viewport().rect().adjusted(24, 24, -24, -24), flags, self.placeholder)
        painter.restore()

    @property
    def zoom(self) -> float:
        """Screen pixels per image pixel (horizontally)."""
        return float(self.transform().m11())

    def fit(self) -> None:
        """The whole image in view; it stays fitted as the view is resized, until zoomed."""
        if not self.item.pixmap().isNull():
            self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)
        self._fitted = True
        self.zoom_changed.emit(self.zoom)

    def zoom_by(self, factor: float, anchor: QPoint | None = None) -> None:
        """Zoom by ``factor`` (within ZOOM_LIMITS), keeping the image point under ``anchor`` (a
        viewport position; the view's centre when None) where it is on the screen."""
        low, high = ZOOM_LIMITS
        target = min(high, max(low, self.zoom * factor))
        if target == self.zoom:
            return
        anchor = anchor if anchor is not None else self.viewport().rect().center()
        before = self.mapToScene(anchor)
        self.scale(target / self.zoom, target / self.zoom)
        moved = self.mapFromScene(before) - anchor
        bars = (self.horizontalScrollBar(), self.verticalScrollBar())
        bars[0].setValue(bars[0].value() + moved.x())
        bars[1].setValue(bars[1].value() + moved.y())
        self._fitted = False
        self.zoom_changed.emit(self.zoom)

    # -- mouse --------------------------------------------------------------------------------

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.zoom_by(ZOOM_STEP**notches, event.position().toPoint())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if self._drag is None and button in _DRAG_BUTTONS:
            self._drag = button
            self._windowing = button == Qt.MouseButton.RightButton or (
                button == Qt.MouseButton.LeftButton and self.left_drag_windows
            )
            self._last = event.position().toPoint()
            cursor = (
                Qt.CursorShape.SizeAllCursor if self._windowing else Qt.CursorShape.ClosedHandCursor
            )
            self.viewport().setCursor(cursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag is None:
            super().mouseMoveEvent(event)
            return
        position = event.position().toPoint()
        delta = position - self._last
        self._last = position
        if self._windowing:
            if delta.x() or delta.y():
                self.window_dragged.emit(delta.x(), delta.y())
        else:
            bars = (self.horizontalScrollBar(), self.verticalScrollBar())
            bars[0].setValue(bars[0].value() - delta.x())
            bars[1].setValue(bars[1].value() - delta.y())
        event.accept()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if event.button() == self._drag:
            self._drag = None
            self._windowing = False
            self.viewport().unsetCursor()
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.fit()
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self._fitted:
            self.fit()


_DRAG_BUTTONS = (Qt.MouseButton.LeftButton, Qt.MouseButton.MiddleButton, Qt.MouseButton.RightButton)
