"""The image viewer panel: one image, as large as the pane allows, with what a clinician needs on it.

Embeddable or dockable (it is a plain QWidget). One row of controls above the image (previous /
next through the gallery's filter, window presets, reset, invert, fit, and the header toggle), a
caption line (label, role, the latest run's model score, kind and size), the image with the model
attention legend beside it, and the window readout with the attention controls below. The DICOM
header is collapsed until asked for, then shown beside the image. Keys, while the focus is in the
viewer: Left / Right (or Page Up / Down) previous / next, Up / Down the previous / next slice of the
shown image's series (in slice order, also when the gallery shows one tile per series), 1-9 / 0 / T
label the shown image. An
image file dropped on it is shown (read only, not imported) and tried on the model
(:mod:`ept_studio.gui.viewer_drop`).

Everything shown comes from :mod:`ept_studio.services.project.viewer`; the panel keeps the opened
:class:`ImageView` (decoded pixels cached), so a window / level drag only re-renders. Mouse use is
described in :mod:`ept_studio.gui.viewer_canvas`. Identifying header fields stay hidden until the
user ticks "Show identifying fields"; nothing shown here is logged.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QLabel,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError, ImageDecodeError
from ept_studio.gui.jobs import ProjectJobs
from ept_studio.gui.session import ProjectSession
from ept_studio.gui.viewer_attention import AttentionControls
from ept_studio.gui.viewer_canvas import ImageCanvas
from ept_studio.gui.viewer_drop import DroppedFilePreview, ModelRunSource
from ept_studio.gui.viewer_header import HeaderTable
from ept_studio.gui.viewer_labels import SCOPE, ImageCaptionBar, LabelKeys
from ept_studio.gui.viewer_layout import image_column, row, tool_row
from ept_studio.gui.viewer_nav import SequenceNavigator, SequenceSource, SliceStepper
from ept_studio.gui.viewer_window import WindowControls
from ept_studio.services.project import (
    ImageCaption,
    ImagePreview,
    ImageView,
    WindowLevel,
    image_caption,
    open_view,
    open_view_file,
    preview_caption,
    preview_heatmap,
    render_view,
    series_slices,
    view_summary,
)

HEADER_WIDTH = 320
"""The header's share of the pane when shown, in pixels: enough for its value column."""
PLACEHOLDER = "Double-click a thumbnail in the Gallery to see it here."
DROP_PLACEHOLDER = "Or drop an image file here to try the model on it (it is not imported)."
VIEWER_KEYS = (
    ("Left / Right, Page Up / Down", "Viewer: previous / next image of the gallery's filter"),
    ("Up / Down", "Viewer: previous / next slice of the shown image's series"),
    ("1 – 9, 0, T", "Viewer: label the shown image with class N, clear it, train / test"),
)
"""The viewer's keys (while the focus is in it), for a list of shortcuts."""


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
        self._base: np.ndarray | None = None
        self._file_caption = ImageCaption(in_project=False)
        """What the caption says of a file outside the project (a dropped one)."""
        self.file_preview: DroppedFilePreview | None = None
        self.canvas = ImageCanvas()
        self.canvas.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.canvas.set_placeholder(PLACEHOLDER)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.hide()
        self._build_parts()
        self._lay_out()
        self._add_keys()
        session.project_changed.connect(self.clear)
        session.labels_changed.connect(self._on_labels_changed)
        session.classes_changed.connect(self._on_labels_changed)
        session.images_changed.connect(self._on_images_changed)
        self.clear()

    # -- building -----------------------------------------------------------------------------

    def _build_parts(self) -> None:
        window = self.window_controls = WindowControls(self.canvas, self)
        window.changed.connect(self._on_window_changed)
        window.window_changed.connect(self.window_changed)
        window.frame_changed.connect(self.frame_changed)
        self.presets, self.reset_button = window.presets, window.reset_button
        self.invert_box, self.left_windows_box = window.invert_box, window.left_windows_box
        self.readout, self.frame_row = window.readout, window.frame_row
        self.frame_label, self.frame_slider = window.frame_label, window.frame_slider
        self.fit_button = QToolButton()
        self.fit_button.setText("Fit")
        self.fit_button.setToolTip("Fit the whole image in view (or double-click it)")
        self.fit_button.clicked.connect(self.canvas.fit)
        self.navigator = SequenceNavigator()
        self.navigator.image_requested.connect(self.show_image)
        self.slice_stepper = SliceStepper()
        self.slice_stepper.image_requested.connect(self.show_image)
        self.image_caption = ImageCaptionBar()
        self.attention = AttentionControls(self.session)
        self.attention.changed.connect(self._on_attention_changed)
        self.attention.failed.connect(self._on_attention_failed)
        self.overlay_box, self.caption = self.attention.overlay_box, self.attention.caption
        self.opacity_slider = self.attention.opacity_slider
        self.head_combo, self.colour_bar = self.attention.head_combo, self.attention.colour_bar
        self.header = HeaderTable()
        self.phi_box, self.metadata = self.header.phi_box, self.header.table
        self.header_button = self.header.toggle_button
        self.header_button.toggled.connect(self.set_header_shown)

    def _lay_out(self) -> None:
        tools = (
            self.navigator,
            self.slice_stepper,
            self.presets,
            self.reset_button,
            self.invert_box,
            self.fit_button,
            self.left_windows_box,
        )
        top = tool_row(tools, self.header_button)
        above = (top, self.image_caption, self.message, self.frame_row)
        below = (self.caption, row((self.readout, 1), (self.attention, 0)))
        image_side = image_column(above, (self.canvas, self.colour_bar), below)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(image_side)
        self.splitter.addWidget(self.header)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setChildrenCollapsible(False)
        self.header.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.splitter)

    def _add_keys(self) -> None:
        for action in (*self.navigator.actions_for_keys, *self.slice_stepper.actions_for_keys):
            action.setShortcutContext(SCOPE)
            self.addAction(action)
        self.label_keys = LabelKeys(self)
        self.label_keys.digit_pressed.connect(self.label_by_position)
        self.label_keys.role_pressed.connect(self.toggle_role)

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
        self._file_caption = ImageCaption(in_project=False)
        self.message.hide()
        self.window_controls.show_view(view)
        self.header.show_view(view)
        self._set_position(view.image_id)
        self.attention.show_image(view.image_id)
        self._update_image_caption()
        self._render(fit=True)
        if self.isVisible():
            self.canvas.setFocus(Qt.FocusReason.OtherFocusReason)
        if view.image_id is not None:
            self.image_shown.emit(view.image_id)

    @Slot()
    def clear(self) -> None:
        self.view = None
        self.shown = self._base = None
        self.window_controls.show_view(None)
        self.attention.clear()
        self.canvas.clear()
        self.header.show_view(None)
        self.image_caption.clear()
        self._set_position(None)
        self.attention.refresh(has_image=False)
        self._set_enabled(False)

    def _show_failure(self, image_id: int, err: EptStudioError) -> None:
        # an ImageDecodeError's message starts with the path, which may carry a patient name
        reason = err.reason if isinstance(err, ImageDecodeError) else str(err)
        self.clear()
        self._set_position(image_id)  # previous / next still lead on from here
        self.message.setText(f"Image #{image_id} cannot be shown: {reason}")
        self.message.show()

    def _set_position(self, image_id: int | None) -> None:
        """Where the image stands in the gallery's list and among its series' slices."""
        project = self.session.project
        slices = series_slices(project, image_id) if project and image_id is not None else ()
        self.navigator.set_current(image_id, slices)
        self.slice_stepper.set_slices(slices, image_id)

    @Slot()
    def _on_images_changed(self) -> None:
        """Images came or went: the shown one's series may have more slices, or fewer."""
        if self.image_id is not None:
            self._set_position(self.image_id)
        else:
            self.navigator.refresh()

    def _set_enabled(self, enabled: bool) -> None:
        self.window_controls.set_enabled(enabled)
        self.fit_button.setEnabled(enabled)
        self.phi_box.setEnabled(enabled)

    def _update_image_caption(self) -> None:
        """Labels, role and model score of the shown image (read again after each label change)."""
        project, view = self.session.project, self.view
        if view is None:
            self.image_caption.clear()
            return
        caption = self._file_caption
        if project is not None and view.image_id is not None:
            caption = image_caption(project, view.image_id, self.session.prediction_run())
        self.image_caption.show_caption(caption, view_summary(view))

    def showEvent(self, event: QShowEvent) -> None:
        """Back on screen: the gallery's filter may have changed, and the keys need focus."""
        super().showEvent(event)
        self.navigator.refresh()
        focused = self.focusWidget()
        if focused is None or not self.isAncestorOf(focused):
            self.canvas.setFocus(Qt.FocusReason.OtherFocusReason)

    # -- previous / next and labelling --------------------------------------------------------

    def set_sequence_source(self, source: SequenceSource) -> None:
        """Where previous / next step: a function giving the gallery's ids in its current order."""
        self.navigator.set_source(source)

    @Slot()
    def show_next(self) -> None:
        self.navigator.show_next()

    @Slot()
    def show_previous(self) -> None:
        self.navigator.show_previous()

    @property
    def image_id(self) -> int | None:
        """The project image shown (None: nothing, or a file outside the project)."""
        return self.view.image_id if self.view is not None else None

    @Slot(int)
    def label_by_position(self, digit: int) -> None:
        """Key N: the shown image gets the N-th class (0 clears), as in the gallery."""
        if self.image_id is not None:
            self.session.label_by_position([self.image_id], digit)

    @Slot()
    def toggle_role(self) -> None:
        """Key T: the shown image to test, or back to train (unlabelled images have no role)."""
        if self.image_id is not None:
            self.session.toggle_role([self.image_id])

    @Slot()
    def _on_labels_changed(self) -> None:
        self._update_image_caption()
        self.navigator.refresh()

    # -- header -------------------------------------------------------------------------------

    @property
    def header_shown(self) -> bool:
        return not self.header.isHidden()

    @Slot(bool)
    def set_header_shown(self, shown: bool) -> None:
        """The DICOM header beside the image (collapsed by default: the image comes first)."""
        self.header.set_shown(shown)
        if shown:
            total = max(self.splitter.width(), 2 * HEADER_WIDTH)
            self.splitter.setSizes([total - HEADER_WIDTH, HEADER_WIDTH])

    # -- a dropped file -----------------------------------------------------------------------

    def set_preview_jobs(self, jobs: ProjectJobs, model_run: ModelRunSource | None = None) -> None:
        """Take image files dropped on the viewer and try the model on them in ``jobs``.

        ``model_run`` gives the model to try (e.g. the Results tab's choice); when it gives None,
        the newest trained model is used.
        """
        self.canvas.set_placeholder(f"{PLACEHOLDER}\n\n{DROP_PLACEHOLDER}")
        self.file_preview = DroppedFilePreview(self, jobs, model_run)
        self.file_preview.dropped.connect(self.preview_file)
        self.file_preview.ready.connect(self._on_preview_ready)
        self.file_preview.status.connect(self._on_preview_status)

    @Slot(Path)
    def preview_file(self, path: Path) -> bool:
        """Show the file at ``path`` (read only, not imported) and try the model on it."""
        try:
            view = open_view_file(path)
        except EptStudioError as err:
            self.clear()
            reason = err.reason if isinstance(err, ImageDecodeError) else str(err)
            self.message.setText(f"This file cannot be shown: {reason}")
            self.message.show()
            return False
        self.show_view(view)
        return self.file_preview.start(path) if self.file_preview is not None else False

    @Slot(object)
    def _on_preview_ready(self, preview: ImagePreview) -> None:
        view, tried = self.view, self.file_preview.path if self.file_preview else None
        if view is None or view.image_id is not None or view.path != tried:
            return  # another image is shown by now
        if view.spec != preview.spec:  # "Reset" then gives the pixels the model saw
            # read a moment ago; if it cannot be read again, it stays shown as it is
            with contextlib.suppress(EptStudioError):
                self.show_view(open_view_file(view.path, preview.spec))
        self._file_caption = preview_caption(preview)
        self._update_image_caption()
        caption = f"{preview.overlay_caption} · predicted class: {preview.predicted_class}"
        self.attention.set_preview(preview_heatmap(preview), caption)

    @Slot(str)
    def _on_preview_status(self, text: str) -> None:
        if self.view is not None and self.view.image_id is None:
            self.image_caption.show_model_text(text)

    # -- window / level and frames ------------------------------------------------------------

    @property
    def window_level(self) -> WindowLevel | None:
        """The current window in numbers (the stored one until changed); None without W/L."""
        return self.window_controls.window_level

    @property
    def frame(self) -> int:
        """The frame shown, from 0."""
        return self.window_controls.frame

    @property
    def invert(self) -> bool:
        return self.window_controls.invert

    @property
    def zoom(self) -> float:
        return self.canvas.zoom

    def set_window(self, centre: float, width: float) -> None:
        """Window the image (modality units; a width below 1 is taken as 1)."""
        self.window_controls.set_window(centre, width)

    @Slot()
    def reset(self) -> None:
        """The stored window, not inverted (zoom is left alone: Fit resets it)."""
        self.window_controls.reset()

    def set_invert(self, invert: bool) -> None:
        self.invert_box.setChecked(invert)

    def set_frame(self, frame: int) -> None:
        """Show frame ``frame`` (from 0) of a multi-frame image."""
        self.frame_slider.setValue(frame + 1)

    @Slot()
    def _on_window_changed(self) -> None:
        self._render()

    def _render(self, *, fit: bool = False) -> None:
        if self.view is None:
            return
        window = self.window_controls.chosen
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
        self.window_controls.update_readout()
        self._compose(fit=fit)

    def _compose(self, *, fit: bool = False) -> None:
        """The rendered image, with the overlay blended at the current opacity when shown."""
        if self._base is None:
            return
        self.shown = self.attention.blend(self._base)
        aspect = self.view.pixel_aspect if self.view is not None else 1.0
        self.canvas.set_pixels(self.shown, aspect, fit=fit)
        self.attention.refresh(has_image=True)

    # -- model attention ----------------------------------------------------------------------

    @property
    def opacity(self) -> float:
        """The overlay's opacity, 0..1."""
        return self.attention.opacity

    @property
    def head(self) -> int | None:
        """The attention head shown (from 0), None for the mean over heads."""
        return self.attention.head

    @property
    def overlay_shown(self) -> bool:
        return self.attention.shown

    def set_opacity(self, percent: int) -> None:
        self.opacity_slider.setValue(percent)

    def set_head(self, head: int | None) -> None:
        """Show one head's attention (from 0), or None for the mean over heads."""
        self.attention.set_head(head)

    def set_overlay(self, run_id: int | None) -> None:
        """Show run ``run_id``'s stored attention over the image; None hides the overlay."""
        self.attention.set_run(run_id)

    @Slot()
    def _on_attention_changed(self) -> None:
        self._compose()

    @Slot(str)
    def _on_attention_failed(self, message: str) -> None:
        self.message.setText(message)
        self.message.show()
