"""The image viewer panel: one image with window / level, inversion, frames, header, model attention.

Embeddable or dockable (it is a plain QWidget). Everything it shows comes from
:mod:`ept_studio.services.viewer`; the panel keeps the opened :class:`ImageView` (decoded pixels
cached), so a window / level drag only re-renders. Mouse use is described in
:mod:`ept_studio.gui.viewer_canvas`: wheel zooms around the cursor, left or middle drag pans, right
drag (or left drag with "Window with left drag" on) changes the window: horizontal = width,
vertical = level (up = higher). Identifying header fields stay hidden until the user ticks
"Show identifying fields"; nothing shown here is logged.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ept_studio.errors import EptStudioError, ImageDecodeError
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.viewer_canvas import ImageCanvas
from ept_studio.gui.viewer_header import HeaderTable
from ept_studio.services.viewer import (
    CAPTION,
    AttentionLayer,
    ImageView,
    WindowLevel,
    attention_layer,
    open_view,
    overlay_caption,
    overlay_pixels,
    prediction_runs,
    render_view,
)

DEFAULT_OPACITY = 50


class ViewerPanel(QWidget):
    """One image at a time: :meth:`show_image` by project image id (or :meth:`show_view`)."""

    image_shown = Signal(int)
    window_changed = Signal(float, float)
    frame_changed = Signal(int)

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.view: ImageView | None = None
        self.shown: np.ndarray | None = None
        """The pixels on screen (after window, inversion and overlay), for tests and export."""
        self._window: WindowLevel | None = None  # None: the stored rendering, exactly
        self._base: np.ndarray | None = None
        self._layer: AttentionLayer | None = None
        self._run_id: int | None = None
        self.canvas = ImageCanvas()
        self.canvas.window_dragged.connect(self._on_window_dragged)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.hide()
        self._build_controls()
        self._build_overlay_controls()
        self.header = HeaderTable()
        self.phi_box, self.metadata = self.header.phi_box, self.header.table
        self._lay_out()
        session.project_changed.connect(self.clear)
        self.clear()

    # -- building -----------------------------------------------------------------------------

    def _build_controls(self) -> None:
        self.presets = QComboBox()
        self.presets.setPlaceholderText("Window presets")
        self.presets.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.presets.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.presets.setToolTip("Window presets: the file's own windows, and standard CT windows")
        self.presets.activated.connect(self._on_preset)
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Back to the stored window, not inverted")
        self.reset_button.clicked.connect(self.reset)
        self.invert_box = QCheckBox("Invert")
        self.invert_box.toggled.connect(self._on_invert)
        self.left_windows_box = QCheckBox("Window with left drag")
        self.left_windows_box.setToolTip("Left drag changes the window instead of panning")
        self.left_windows_box.toggled.connect(self._on_left_windows)
        self.fit_button = QPushButton("Fit")
        self.fit_button.setToolTip("Fit the whole image in view (or double-click it)")
        self.fit_button.clicked.connect(self.canvas.fit)
        self.readout = QLabel()
        self.frame_label = QLabel()
        self.frame_slider = QSlider(Qt.Orientation.Horizontal)
        self.frame_slider.setMinimum(1)
        self.frame_slider.valueChanged.connect(self._on_frame_slider)

    def _build_overlay_controls(self) -> None:
        self.overlay_box = QCheckBox("Show model attention")
        self.overlay_box.toggled.connect(self._on_overlay_toggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(DEFAULT_OPACITY)
        self.opacity_slider.setToolTip("Opacity of the model attention overlay")
        self.opacity_slider.valueChanged.connect(self._on_opacity)
        self.head_combo = QComboBox()
        self.head_combo.addItem("mean over heads", None)
        self.head_combo.currentIndexChanged.connect(self._on_head)
        self.caption = QLabel(CAPTION)
        self.caption.setStyleSheet("color: palette(placeholder-text); font-style: italic;")

    def _lay_out(self) -> None:
        window_bar = QHBoxLayout()
        for widget in (self.presets, self.reset_button, self.invert_box, self.fit_button):
            window_bar.addWidget(widget)
        window_bar.addStretch(1)
        readout_bar = QHBoxLayout()
        readout_bar.addWidget(self.left_windows_box)
        readout_bar.addStretch(1)
        readout_bar.addWidget(self.readout)
        frame_bar = QHBoxLayout()
        frame_bar.addWidget(self.frame_label)
        frame_bar.addWidget(self.frame_slider, 1)
        self.frame_row = QWidget()
        self.frame_row.setLayout(frame_bar)
        frame_bar.setContentsMargins(0, 0, 0, 0)
        overlay_bar = QHBoxLayout()
        overlay_bar.addWidget(self.overlay_box)
        overlay_bar.addWidget(QLabel("Opacity"))
        overlay_bar.addWidget(self.opacity_slider, 1)
        overlay_bar.addWidget(self.head_combo)
        image_column = QVBoxLayout()
        image_column.addLayout(window_bar)
        image_column.addLayout(readout_bar)
        image_column.addWidget(self.frame_row)
        image_column.addWidget(self.message)
        image_column.addWidget(self.canvas, 1)
        image_column.addWidget(self.caption)
        image_column.addLayout(overlay_bar)
        image_side = QWidget()
        image_side.setLayout(image_column)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(image_side)
        splitter.addWidget(self.header)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([700, 300])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(splitter)

    # -- what is shown ------------------------------------------------------------------------

    @Slot(int)
    def show_image(self, image_id: int) -> bool:
        """Open the project's image ``image_id``; False (and a message) when it cannot be shown."""
        if self.session.project is None:
            return False
        try:
            view = open_view(self.session.project, image_id)
        except EptStudioError as err:
            self._show_failure(image_id, err)
            return False
        self.show_view(view)
        return True

    def show_view(self, view: ImageView) -> None:
        """Show an opened image with its stored window, not inverted, fitted to the view."""
        self.view = view
        self._window = None
        self.message.hide()
        self.invert_box.blockSignals(True)
        self.invert_box.setChecked(False)
        self.invert_box.blockSignals(False)
        self._fill_presets()
        self._fill_frames()
        self.header.show_view(view)
        self._layer = None
        if self.overlay_box.isChecked():
            self._load_layer()
        self._render(fit=True)
        if view.image_id is not None:
            self.image_shown.emit(view.image_id)

    @Slot()
    def clear(self) -> None:
        self.view = None
        self.shown = self._base = self._layer = None
        self._window = None
        self._run_id = None
        self.canvas.clear()
        self.presets.clear()
        self.header.show_view(None)
        self.readout.setText("")
        self.frame_row.hide()
        self._update_caption()
        self._set_enabled(False)

    def _show_failure(self, image_id: int, err: EptStudioError) -> None:
        # an ImageDecodeError's message starts with the path, which may carry a patient name
        reason = err.reason if isinstance(err, ImageDecodeError) else str(err)
        self.clear()
        self.message.setText(f"Image #{image_id} cannot be shown: {reason}")
        self.message.show()

    def _set_enabled(self, enabled: bool) -> None:
        windowable = enabled and self.view is not None and self.view.windowable
        self.presets.setEnabled(windowable and self.presets.count() > 0)
        self.left_windows_box.setEnabled(windowable)
        for widget in (self.reset_button, self.invert_box, self.fit_button, self.overlay_box):
            widget.setEnabled(enabled)
        self.phi_box.setEnabled(enabled)

    # -- public controls ----------------------------------------------------------------------

    @property
    def window_level(self) -> WindowLevel | None:
        """The current window in numbers (the stored one until changed); None without W/L."""
        if self.view is None or not self.view.windowable:
            return None
        return self._window if self._window is not None else self.view.stored_window

    @property
    def frame(self) -> int:
        """The frame shown, from 0."""
        return self.frame_slider.value() - 1

    @property
    def invert(self) -> bool:
        return self.invert_box.isChecked()

    @property
    def opacity(self) -> float:
        """The overlay's opacity, 0..1."""
        return self.opacity_slider.value() / 100.0

    @property
    def head(self) -> int | None:
        """The attention head shown (from 0), None for the mean over heads."""
        head = self.head_combo.currentData()
        return head if isinstance(head, int) else None

    @property
    def overlay_shown(self) -> bool:
        return self.overlay_box.isChecked() and self._layer is not None

    @property
    def zoom(self) -> float:
        return self.canvas.zoom

    def set_window(self, centre: float, width: float) -> None:
        """Window the image (modality units; a width below 1 is taken as 1)."""
        if self.view is None or not self.view.windowable:
            return
        self._window = WindowLevel(centre, width)
        self.presets.setCurrentIndex(self._preset_index(self._window))
        self._render()
        self.window_changed.emit(self._window.centre, self._window.width)

    @Slot()
    def reset(self) -> None:
        """The stored window, not inverted (zoom is left alone: Fit resets it)."""
        if self.view is None:
            return
        self._window = None
        self.presets.setCurrentIndex(-1)
        self.invert_box.blockSignals(True)
        self.invert_box.setChecked(False)
        self.invert_box.blockSignals(False)
        self._render()

    def set_invert(self, invert: bool) -> None:
        self.invert_box.setChecked(invert)

    def set_frame(self, frame: int) -> None:
        """Show frame ``frame`` (from 0) of a multi-frame image."""
        self.frame_slider.setValue(frame + 1)

    def set_opacity(self, percent: int) -> None:
        self.opacity_slider.setValue(percent)

    def set_head(self, head: int | None) -> None:
        """Show one head's attention (from 0), or None for the mean over heads."""
        index = self.head_combo.findData(head) if head is not None else 0
        if index >= 0:
            self.head_combo.setCurrentIndex(index)

    def set_overlay(self, run_id: int | None) -> None:
        """Show run ``run_id``'s stored attention over the image; None hides the overlay."""
        self._run_id = run_id
        self.overlay_box.blockSignals(True)
        self.overlay_box.setChecked(run_id is not None)
        self.overlay_box.blockSignals(False)
        self._load_layer()
        self._compose()

    # -- rendering ----------------------------------------------------------------------------

    def _render(self, *, fit: bool = False) -> None:
        if self.view is None:
            return
        window = self._window
        try:
            self._base = render_view(
                self.view,
                window.centre if window else None,
                window.width if window else None,
                self.invert,
                self.frame,
            )
        except EptStudioError as err:
            self._show_failure(self.view.image_id or 0, err)
            return
        self._set_enabled(True)
        self._update_readout()
        self._compose(fit=fit)

    def _compose(self, *, fit: bool = False) -> None:
        """The rendered image, with the overlay blended at the current opacity when shown."""
        if self._base is None:
            return
        shown = self._base
        if self.overlay_shown and self._layer is not None:
            shown = overlay_pixels(shown, self._layer, head=self.head, opacity=self.opacity)
        self.shown = shown
        aspect = self.view.pixel_aspect if self.view is not None else 1.0
        self.canvas.set_pixels(shown, aspect, fit=fit)
        self._update_caption()

    def _update_readout(self) -> None:
        window = self.window_level
        if self.view is None or window is None:
            self.readout.setText("shown as stored (no window / level)" if self.view else "")
            return
        source = f" ({self.view.stored_voi})" if self._window is None else ""
        self.readout.setText(f"{window.text()}{source}")

    # -- presets and frames -------------------------------------------------------------------

    def _fill_presets(self) -> None:
        self.presets.clear()
        if self.view is None:
            return
        for preset in self.view.presets:
            self.presets.addItem(preset.label, preset.window)
        self.presets.setCurrentIndex(-1)

    def _preset_index(self, window: WindowLevel) -> int:
        for index in range(self.presets.count()):
            if self.presets.itemData(index) == window:
                return index
        return -1

    @Slot(int)
    def _on_preset(self, index: int) -> None:
        window = self.presets.itemData(index)
        if isinstance(window, WindowLevel):
            self.set_window(window.centre, window.width)

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
    def _on_frame_slider(self, _value: int) -> None:
        self._update_frame_label()
        self._render()
        self.frame_changed.emit(self.frame)

    @Slot(bool)
    def _on_invert(self, _checked: bool) -> None:
        self._render()

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

    # -- model attention ----------------------------------------------------------------------

    @Slot(bool)
    def _on_overlay_toggled(self, checked: bool) -> None:
        if checked and self._layer is None:
            self._load_layer()
        self._compose()

    @Slot(int)
    def _on_head(self, _index: int) -> None:
        self._compose()

    @Slot(int)
    def _on_opacity(self, _percent: int) -> None:
        self._compose()

    def _load_layer(self) -> None:
        """The chosen run's attention for this image (the newest run with one if none chosen)."""
        self._layer = None
        project, view = self.session.project, self.view
        if project is None or view is None or view.image_id is None:
            self._fill_heads()
            return
        run_id = self._run_id
        if run_id is None:
            runs = prediction_runs(project, view.image_id)
            run_id = runs[0] if runs else None
        if run_id is not None:
            try:
                self._layer = attention_layer(project, view.image_id, run_id)
            except EptStudioError as err:
                self.message.setText(f"The model attention cannot be shown: {err}")
                self.message.show()
        self._fill_heads()

    def _fill_heads(self) -> None:
        current = self.head
        heads = self._layer.heads if self._layer is not None else 0
        self.head_combo.blockSignals(True)
        self.head_combo.clear()
        self.head_combo.addItem("mean over heads", None)
        for head in range(heads):
            self.head_combo.addItem(f"head {head + 1}", head)
        self.head_combo.setCurrentIndex(max(0, self.head_combo.findData(current)))
        self.head_combo.blockSignals(False)

    def _update_caption(self) -> None:
        checked = self.overlay_box.isChecked() and self.view is not None
        shown = self.overlay_shown and self._layer is not None
        self.opacity_slider.setEnabled(shown)
        self.head_combo.setEnabled(shown and self.head_combo.count() > 1)
        if shown and self._layer is not None:
            text = overlay_caption(self._layer, self.head)
            self.caption.setText(f"{text} · predicted class: {self._layer.predicted_class}")
        elif checked:
            self.caption.setText(f"no stored {CAPTION} for this image (run a prediction first)")
        self.caption.setVisible(checked)
