"""The Train tab's "Advanced" section: every setting besides the method, in words a clinician
reads, with the exact ML term in each tooltip.

A number left at "recipe default" takes the recipe's value, so this form never holds a copy of
the recipe (and never imports torch to read it). Hidden until the user opens it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.services.model import (
    DEFAULT_SLICES_PER_SERIES,
    DEFAULT_TRAINED_SHARE,
    PROTOTYPE_START_RECIPES,
    RECIPE_CHOICES,
    backbone_choices,
    device_choices,
    offline_backbone_status,
)

DEFAULT = "recipe default"
ALL_SLICES = "All"


class AdvancedSettings(QWidget):
    """A checkable "Advanced" button that shows or hides the settings form."""

    changed = Signal()
    """Any setting changed: the plan beside Train is redrawn."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.toggle = QToolButton()
        self.toggle.setText("Advanced")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolTip("Recipe, prompt size, training passes, learning speed, device…")
        self.body = QWidget()
        self._build_form(QFormLayout(self.body))
        self.body.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(self.body)
        self.toggle.toggled.connect(self._on_toggled)

    @Slot(bool)
    def _on_toggled(self, shown: bool) -> None:
        self.body.setVisible(shown)
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)

    def _build_form(self, form: QFormLayout) -> None:
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.recipe = QComboBox()
        for choice in RECIPE_CHOICES:
            self.recipe.addItem(choice.label, choice.key)
            self.recipe.setItemData(self.recipe.count() - 1, choice.summary, 3)  # tooltip
        self.length = QSpinBox()
        self.length.setRange(1, 500)
        self.length.setValue(100)
        self.blocks = QLineEdit("all")
        self.epochs = _spin(0, 1000, DEFAULT)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(5)
        self.learning_rate.setRange(0.0, 1.0)
        self.learning_rate.setSingleStep(0.0001)
        self.learning_rate.setSpecialValueText(DEFAULT)
        self.batch_size = _spin(0, 256, DEFAULT)
        self.slices_per_series = _spin(0, 1000, ALL_SLICES)
        self.slices_per_series.setValue(DEFAULT_SLICES_PER_SERIES)
        self.trained_share = _spin(0, 100, "")
        self.trained_share.setValue(round(DEFAULT_TRAINED_SHARE * 100))
        self.trained_share.setSuffix(" %")
        self.detail = QCheckBox("Also check fine detail (twice the size)")
        self.detail.setChecked(True)
        self.seed = _spin(0, 2**31 - 1, "")
        self.hold_out = QCheckBox("Keep a fifth aside to pick the best pass")
        self.hold_out.setChecked(True)
        self.patience = _spin(0, 1000, "never")
        self.device = QComboBox()
        for key, label in device_choices():
            self.device.addItem(label, key)
        self.coverage = QSpinBox()
        self.coverage.setRange(50, 99)
        self.coverage.setValue(90)
        self.coverage.setSuffix(" %")
        self.calibrate_on_test = QCheckBox("Calibrate on half of the test images")
        self._set_tooltips()
        self._add_rows(form)
        self._connect_changes()

    def _add_rows(self, form: QFormLayout) -> None:
        rows: list[tuple[str, QWidget]] = [
            ("Recipe", self.recipe),
            ("Prompt size", self.length),
            ("Where prompts go", self.blocks),
            ("Training passes", self.epochs),
            ("Learning speed", self.learning_rate),
            ("Images per step", self.batch_size),
            ("Slices per series", self.slices_per_series),
            ("Keep of what training learned", self.trained_share),
            ("", self.detail),
            ("Repeatable random start", self.seed),
            ("", self.hold_out),
            ("Stop early after", self.patience),
            ("Run on", self.device),
            ("Prediction sets hold the right class", self.coverage),
            ("", self.calibrate_on_test),
        ]
        for text, widget in rows:
            if text:
                label = QLabel(text)
                label.setToolTip(widget.toolTip())
                form.addRow(label, widget)
            else:
                form.addRow(widget)

    def _set_tooltips(self) -> None:
        self.recipe.setToolTip(
            "The training recipe (optimiser, learning rate, head, steps, batch size); training "
            "passes, learning speed and images per step override it when set"
        )
        self.length.setToolTip("prompt length L: learnable prompt tokens per prompted block")
        self.blocks.setToolTip(
            "prompted blocks: all, shallow (first block only), a list like 0,1,2 or 0-5"
        )
        self.epochs.setToolTip("epochs: passes over the training images (the recipe may add more)")
        self.learning_rate.setToolTip(
            "learning rate of the method's tensors: prompts, LoRA factors, biases, or the "
            "backbone's weights under full fine-tuning"
        )
        self.batch_size.setToolTip("batch size: images per optimiser step")
        self.slices_per_series.setToolTip(
            "slices per series: training takes this many evenly spaced slices of each series, "
            "so one long CT series does not outweigh the others; All (0) takes every slice"
        )
        self.trained_share.setToolTip(
            "trained share: the model ends at the nearest-centroid (prototype) classifier it "
            "started from plus this share of what training changed (weight-space interpolation "
            "of the prompts and the head). 0 % is the prototype classifier, 100 % the fully "
            "trained model. It applies from 5 training images a class (fewer: all is kept); "
            "in the accuracy sweep 50 % there raised EPT's mean gain over the prototype. Only "
            "with the few-shot recipe, which starts from the prototypes."
        )
        self.detail.setToolTip(
            "detail view: a multi-resolution ensemble. The backbone also sees each image at twice "
            "its input size (448 px for the offline ViT-S/14), untrained, and the nearest-centroid "
            "(prototype) classifier of the training images there scores it; its class "
            "probabilities are averaged with the tuned model's. In the accuracy sweep this beat "
            "the prototype in more datasets than any tuning alone. Single-label projects only; "
            "scoring an image costs about 5 times as much."
        )
        self.seed.setToolTip("seed: the same seed and labels give the same model")
        self.hold_out.setToolTip(
            "hold-out validation: a seeded fifth of each class's training images picks the best "
            "epoch; only when every class has at least 5 training images. Test images are never "
            "used for it."
        )
        self.patience.setToolTip(
            "early-stopping patience: epochs without improvement on the held-out images"
        )
        self.device.setToolTip("device: the CPU, or a GPU when there is one")
        self.coverage.setToolTip(
            "coverage of the prediction sets (split conformal prediction): each image gets the "
            "set of classes the model cannot rule out, made so that the set holds the right class "
            "this often on new images like the calibration images. The promise holds only with "
            "n >= 1/alpha - 1 calibration images (alpha = 1 - coverage: 9 for 90 %, 19 for 95 %); "
            "with fewer the app says it cannot promise it. Higher coverage: larger sets."
        )
        self.calibrate_on_test.setToolTip(
            "calibration set from the test images: temperature scaling and the prediction sets "
            "are fitted on a seeded half of each class's test images, which are then not scored "
            "as test images. Off: they are fitted on the held-out training images, when at "
            "least 10 are kept aside."
        )

    def _connect_changes(self) -> None:
        for combo in (self.recipe, self.device):
            combo.currentIndexChanged.connect(self._on_changed)
        spins = (self.length, self.epochs, self.batch_size, self.seed, self.patience, self.coverage)
        for spin in (*spins, self.slices_per_series, self.trained_share):
            spin.valueChanged.connect(self._on_changed)
        self.learning_rate.valueChanged.connect(self._on_changed)
        self.blocks.textChanged.connect(self._on_changed)
        self.hold_out.toggled.connect(self._on_changed)
        self.detail.toggled.connect(self._on_changed)
        self.calibrate_on_test.toggled.connect(self._on_changed)

    @Slot()
    def _on_changed(self) -> None:
        self.trained_share.setEnabled(self.recipe.currentData() in PROTOTYPE_START_RECIPES)
        self.changed.emit()

    def chosen_trained_share(self) -> float | None:
        """The share box as a fraction (the options leave it out for a recipe without a
        prototype start)."""
        return self.trained_share.value() / 100


def _spin(low: int, high: int, special: str) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(low, high)
    if special:
        spin.setSpecialValueText(special)
    return spin


def choose_data(combo: QComboBox, key: str, what: str) -> None:
    """Select the entry whose data is ``key``; an unknown key is a ValueError naming ``what``."""
    index = combo.findData(key)
    if index < 0:
        raise ValueError(f"no {what} {key!r} in the list")
    combo.setCurrentIndex(index)


def backbone_present(name: str | None = None) -> bool:
    """Whether the backbone ``name``'s weights (None: the offline default's) are on this machine
    (by file name only)."""
    try:
        if name is None:
            return offline_backbone_status().present
        return any(choice.available for choice in backbone_choices() if choice.name == name)
    except EptStudioError:
        return False


def wrapped_label(text: str) -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    return label


def horizontal_rule() -> QFrame:
    line = QFrame()
    line.setFrameShape(QFrame.Shape.HLine)
    line.setFrameShadow(QFrame.Shadow.Sunken)
    return line
