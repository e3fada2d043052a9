"""The viewer's window / level, inversion and frame: presets, reset, drags, the readout.

:class:`WindowControls` owns these widgets (the panel lays them out) and the chosen window; it
says ``changed`` when the image must be rendered again. Drags on the canvas arrive as
``window_dragged`` (dx, dy): right = wider, up = higher level, in steps that follow the image's
value range.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QToolButton,
    QWidget,
)

from ept_studio.gui.viewer_canvas import ImageCanvas
from ept_studio.gui.viewer_layout import ElidedLabel
from ept_studio.services.project import ImageView, WindowLevel


class WindowControls(QObject):
    """Presets, Reset, Invert, "Left-drag W/L", the window readout and the frame slider."""

    changed = Signal()
    window_changed = Signal(float, float)
    frame_changed = Signal(int)

    def __init__(self, canvas: ImageCanvas, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.canvas = canvas
        self.view: ImageView | None = None
        self.chosen: WindowLevel | None = None
        """The user's window; None: the stored rendering, exactly."""
        canvas.window_dragged.connect(self._on_window_dragged)
        self._build_window_widgets()
        self._build_frame_widgets()

    def _build_window_widgets(self) -> None:
        self.presets = QComboBox()
        self.presets.setPlaceholderText("Window")
        self.presets.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.presets.setMinimumContentsLength(7)
        self.presets.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.presets.setToolTip("Window presets: the file's own windows, and standard CT windows")
        self.presets.activated.connect(self._on_preset)
        self.reset_button = QToolButton()
        self.reset_button.setText("Reset")
        self.reset_button.setToolTip("Back to the stored window, not inverted")
        self.reset_button.clicked.connect(self.reset)
        self.invert_box = QCheckBox("Invert")
        self.invert_box.toggled.connect(self._on_invert)
        self.left_windows_box = QCheckBox("Left-drag W/L")
        self.left_windows_box.setToolTip(
            "Left drag changes the window instead of panning (right drag always does)"
        )
        self.left_windows_box.toggled.connect(self._on_left_windows)
        self.readout = ElidedLabel()
        self.readout.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def _build_frame_widgets(self) -> None:
        self.frame_label = QLabel()
        self.frame_slider = QSlider(Qt.Orientation.Horizontal)
        self.frame_slider.setMinimum(1)
        self.frame_slider.valueChanged.connect(self._on_frame_slider)
        self.frame_row = QWidget()
        row = QHBoxLayout(self.frame_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.frame_label)
        row.addWidget(self.frame_slider, 1)

    # -- state --------------------------------------------------------------------------------

    @property
    def window_level(self) -> WindowLevel | None:
        """The current window in numbers (the stored one until changed); None without W/L."""
        if self.view is None or not self.view.windowable:
            return None
        return self.chosen if self.chosen is not None else self.view.stored_window

    @property
    def frame(self) -> int:
        """The frame shown, from 0."""
        return self.frame_slider.value() - 1

    @property
    def invert(self) -> bool:
        return self.invert_box.isChecked()

    def show_view(self, view: ImageView | None) -> None:
        """A new image (or none): its stored window, not inverted, its presets and frames."""
        self.view = view
        self.chosen = None
        self._uncheck_invert()
        self._fill_presets()
        self._fill_frames()
        self.update_readout()

    def set_enabled(self, enabled: bool) -> None:
        windowable = enabled and self.view is not None and self.view.windowable
        self.presets.setEnabled(windowable and self.presets.count() > 0)
        self.left_windows_box.setEnabled(windowable)
        self.reset_button.setEnabled(enabled)
        self.invert_box.setEnabled(enabled)

    def update_readout(self) -> None:
        self.readout.setText(self._readout_text())
        self.readout.setToolTip(self.readout.text())

    def _readout_text(self) -> str:
        window = self.window_level
        if self.view is None or window is None:
            return "shown as stored (no window / level)" if self.view else ""
        source = f" ({self.view.stored_voi})" if self.chosen is None else ""
        return f"{window.text()}{source}"

    # -- changes ------------------------------------------------------------------------------

    def set_window(self, centre: float, width: float) -> None:
        """Window the image (modality units; a width below 1 is taken as 1)."""
        if self.view is None or not self.view.windowable:
            return
        self.chosen = WindowLevel(centre, width)
        self.presets.setCurrentIndex(self._preset_index(self.chosen))
        self.changed.emit()
        self.window_changed.emit(self.chosen.centre, self.chosen.width)

    @Slot()
    def reset(self) -> None:
        """The stored window, not inverted (zoom is left alone: Fit resets it)."""
        if self.view is None:
            return
        self.chosen = None
        self.presets.setCurrentIndex(-1)
        self._uncheck_invert()
        self.changed.emit()

    def _uncheck_invert(self) -> None:
        self.invert_box.blockSignals(True)
        self.invert_box.setChecked(False)
        self.invert_box.blockSignals(False)

    def _fill_presets(self) -> None:
        self.presets.clear()
        if self.view is None:
            return
        for preset in self.view.presets:
            self.presets.addItem(preset.label, preset.window)
        self.presets.setCurrentIndex(-1)
        widest = self.presets.view().sizeHintForColumn(0)
        self.presets.view().setMinimumWidth(widest + 8)  # the popup shows whole labels

    def _preset_index(self, window: WindowLevel) -> int:
        for index in range(self.presets.count()):
            if self.presets.itemData(index) == window:
                return index
        return -1

    def _fill_frames(self) -> None:
        frames = self.view.frames if self.view is not None else 1
        self.frame_slider.blockSignals(True)
        self.frame_slider.setMaximum(frames)
        self.frame_slider.setValue((self.view.frame if self.view else 0) + 1)
        self.frame_slider.blockSignals(False)
        self.frame_row.setVisible(frames > 1)
        self._update_frame_label()

    def _update_frame_label(self) -> None:
        self.frame_label.setText(f"Frame {self.frame + 1} of {self.frame_slider.maximum()}")

    @Slot(int)
    def _on_preset(self, index: int) -> None:
        window = self.presets.itemData(index)
        if isinstance(window, WindowLevel):
            self.set_window(window.centre, window.width)

    @Slot(int)
    def _on_frame_slider(self, _value: int) -> None:
        self._update_frame_label()
        self.changed.emit()
        self.frame_changed.emit(self.frame)

    @Slot(bool)
    def _on_invert(self, _checked: bool) -> None:
        self.changed.emit()

    @Slot(bool)
    def _on_left_windows(self, checked: bool) -> None:
        self.canvas.left_drag_windows = checked

    @Slot(int, int)
    def _on_window_dragged(self, dx: int, dy: int) -> None:
        """Right = wider, up = higher level; the step follows the image's value range."""
        window = self.window_level
        if self.view is None or window is None:
            return
        step = self.view.drag_step
        self.set_window(window.centre - dy * step, window.width + dx * step)
