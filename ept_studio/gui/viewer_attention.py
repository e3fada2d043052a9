"""The viewer's model attention: the overlay toggle, its opacity and head, caption and colour legend.

The attention comes from a run's stored predictions (:mod:`ept_studio.services.project.viewer`), or, for a
file dropped on the viewer, from the model's preview of it (:meth:`AttentionControls.set_preview`,
colours only, mean over heads); the panel asks :meth:`AttentionControls.blend` for the image with the overlay over it and re-draws when
``changed`` fires. The words say "model attention": a description of the model, not a finding.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QSlider,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.gui.colour_bar import AttentionColourBar
from ept_studio.gui.session import ProjectSession
from ept_studio.services.project import (
    CAPTION,
    AttentionLayer,
    attention_colour_stops,
    attention_layer,
    blend_heatmap,
    overlay_caption,
    overlay_pixels,
    prediction_runs,
)

DEFAULT_OPACITY = 50


class AttentionControls(QWidget):
    """A row: "Model attention" box, opacity slider, head choice; plus a caption and a legend."""

    changed = Signal()
    failed = Signal(str)

    def __init__(self, session: ProjectSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.layer: AttentionLayer | None = None
        self.heatmap: np.ndarray | None = None
        """A dropped file's attention colours (its preview), instead of a stored layer."""
        self._heatmap_caption = CAPTION
        self._image_id: int | None = None
        self._run_id: int | None = None
        self.overlay_box = QCheckBox("Model attention")
        self.overlay_box.setToolTip("Show where the model looked (the latest run's attention)")
        self.overlay_box.toggled.connect(self._on_toggled)
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal)
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(DEFAULT_OPACITY)
        self.opacity_slider.setMaximumWidth(120)
        self.opacity_slider.setToolTip("Opacity of the model attention overlay")
        self.opacity_slider.valueChanged.connect(self._on_setting)
        self.head_combo = QComboBox()
        self.head_combo.addItem("mean over heads", None)
        self.head_combo.setToolTip("The mean over the attention heads, or one head")
        self.head_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.head_combo.setMinimumContentsLength(15)
        self.head_combo.currentIndexChanged.connect(self._on_setting)
        self.caption = QLabel(CAPTION)
        self.caption.setStyleSheet("color: palette(placeholder-text); font-style: italic;")
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.colour_bar = AttentionColourBar(attention_colour_stops())
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.overlay_box)
        layout.addWidget(self.opacity_slider, 1)
        layout.addWidget(self.head_combo)
        self.refresh()

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
    def shown(self) -> bool:
        has_attention = self.layer is not None or self.heatmap is not None
        return self.overlay_box.isChecked() and has_attention

    def show_image(self, image_id: int | None) -> None:
        """A new image: its attention is read when the overlay is on (else when turned on)."""
        self._image_id = image_id
        self.layer = self.heatmap = None
        if self.overlay_box.isChecked():
            self._load()

    def set_run(self, run_id: int | None) -> None:
        """Show run ``run_id``'s stored attention; None hides the overlay."""
        self._run_id = run_id
        self.overlay_box.blockSignals(True)
        self.overlay_box.setChecked(run_id is not None)
        self.overlay_box.blockSignals(False)
        self._load()
        self.changed.emit()

    def set_preview(self, heatmap: np.ndarray, caption: str) -> None:
        """A dropped file's attention colours (``H x W x 3``), shown at once."""
        self.layer, self.heatmap, self._heatmap_caption = None, heatmap, caption
        self._fill_heads()
        self.overlay_box.blockSignals(True)
        self.overlay_box.setChecked(True)
        self.overlay_box.blockSignals(False)
        self.changed.emit()

    def set_head(self, head: int | None) -> None:
        index = self.head_combo.findData(head) if head is not None else 0
        if index >= 0:
            self.head_combo.setCurrentIndex(index)

    def clear(self) -> None:
        self._image_id = self.layer = self._run_id = self.heatmap = None
        self._fill_heads()

    def blend(self, base: np.ndarray) -> np.ndarray:
        """``base`` with the overlay at the chosen opacity and head (``base`` when hidden)."""
        if not self.shown:
            return base
        if self.layer is not None:
            return overlay_pixels(base, self.layer, head=self.head, opacity=self.opacity)
        if self.heatmap is not None and self.heatmap.shape == base.shape:
            return blend_heatmap(base, self.heatmap, self.opacity)
        return base

    def refresh(self, has_image: bool = False) -> None:
        """Enable what applies; caption and legend only while the overlay is on."""
        self.overlay_box.setEnabled(has_image)
        checked = self.overlay_box.isChecked() and has_image
        self.opacity_slider.setEnabled(self.shown)
        self.head_combo.setEnabled(self.shown and self.head_combo.count() > 1)
        if self.shown and self.layer is not None:
            text = overlay_caption(self.layer, self.head)
            self.caption.setText(f"{text} · predicted class: {self.layer.predicted_class}")
        elif self.shown:
            self.caption.setText(self._heatmap_caption)
        elif checked:
            self.caption.setText(f"no stored {CAPTION} for this image (run a prediction first)")
        self.caption.setToolTip(self.caption.text())
        self.caption.setVisible(checked)
        self.colour_bar.setVisible(self.shown)

    def _load(self) -> None:
        """The chosen run's attention for this image (the newest run with one if none chosen)."""
        if self.heatmap is not None:
            return  # a dropped file: its preview is its only attention
        self.layer = None
        project, image_id = self.session.project, self._image_id
        if project is not None and image_id is not None:
            run_id = self._run_id
            if run_id is None:
                runs = prediction_runs(project, image_id)
                run_id = runs[0] if runs else None
            if run_id is not None:
                try:
                    self.layer = attention_layer(project, image_id, run_id)
                except EptStudioError as err:
                    self.failed.emit(f"The model attention cannot be shown: {err}")
        self._fill_heads()

    def _fill_heads(self) -> None:
        current = self.head
        heads = self.layer.heads if self.layer is not None else 0
        self.head_combo.blockSignals(True)
        self.head_combo.clear()
        self.head_combo.addItem("mean over heads", None)
        for head in range(heads):
            self.head_combo.addItem(f"head {head + 1}", head)
        self.head_combo.setCurrentIndex(max(0, self.head_combo.findData(current)))
        self.head_combo.blockSignals(False)

    @Slot(bool)
    def _on_toggled(self, checked: bool) -> None:
        if checked and self.layer is None:
            self._load()
        self.changed.emit()

    @Slot(int)
    def _on_setting(self, _value: int) -> None:
        self.changed.emit()
