"""Labelling from the viewer: keys 1-9 / 0 / T on the shown image, and the caption that shows it.

The keys are the gallery's (1-9: the N-th class, 0: clear, T: train / test), but scoped to the
viewer (``Qt.WidgetWithChildrenShortcut``) so that each panel's keys act on what it shows. A
window-wide action on the same key (the Edit menu's "Toggle train / test" acts on the gallery's
selection) would make the key ambiguous, and Qt would then fire neither; so while the focus is in
the viewer, the viewer claims its keys first (:class:`LabelKeys`, on ``ShortcutOverride``).
"""

from __future__ import annotations

from collections.abc import Iterable

from PySide6.QtCore import QEvent, QObject, Qt, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeyEvent, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QSizePolicy, QWidget

from ept_studio.gui.viewer_layout import ElidedLabel
from ept_studio.services.project import ImageCaption

SCOPE = Qt.ShortcutContext.WidgetWithChildrenShortcut
LABEL_HELP = "Keys 1-9 give the image the N-th class, 0 clears it, T toggles train / test"
MODEL_HELP = (
    "The latest prediction run's top class and its model score; the set holds every class the "
    "model cannot rule out at the chosen coverage (prediction set, split conformal)"
)


class LabelKeys(QObject):
    """Keys 0-9 and T on ``owner`` and its children: ``digit_pressed`` (0-9), ``role_pressed``.

    They are actions (listed on the owner, with their keys in their text) and also claimed on
    ``ShortcutOverride`` while the focus is in the owner, so a window-wide action on the same
    key cannot make it ambiguous.
    """

    digit_pressed = Signal(int)
    role_pressed = Signal()

    def __init__(self, owner: QWidget) -> None:
        super().__init__(owner)
        self.digits = QActionGroup(self)
        self.digits.setExclusionPolicy(QActionGroup.ExclusionPolicy.None_)
        for digit in range(10):
            text = "Clear the label" if digit == 0 else f"Label with class {digit}"
            self.digits.addAction(_key_action(owner, text, str(digit))).setData(digit)
        self.digits.triggered.connect(self._on_digit)
        self.role = _key_action(owner, "Toggle train / test", "T")
        self.role.triggered.connect(self.role_pressed)
        self._claimed = (*self.digits.actions(), self.role)
        owner.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if not isinstance(event, QKeyEvent):
            return False
        action = claimed_action(self._claimed, event)
        if action is None:
            return False
        if event.type() == QEvent.Type.ShortcutOverride:
            event.accept()  # the key comes as a key press, to the focus and up to the owner
            return True
        if event.type() == QEvent.Type.KeyPress:
            action.trigger()
            return True
        return False

    @Slot(QAction)
    def _on_digit(self, action: QAction) -> None:
        digit = action.data()
        if isinstance(digit, int):
            self.digit_pressed.emit(digit)


def claimed_action(actions: Iterable[QAction], event: QKeyEvent) -> QAction | None:
    """The enabled action whose shortcut is the key pressed (the keypad's digits count too)."""
    combination = event.keyCombination()
    modifiers = combination.keyboardModifiers() & ~Qt.KeyboardModifier.KeypadModifier
    pressed = QKeySequence(combination.key() | modifiers)
    for action in actions:
        if action.isEnabled() and action.shortcut() == pressed:
            return action
    return None


def _key_action(owner: QWidget, text: str, key: str) -> QAction:
    action = QAction(text, owner)
    action.setShortcut(QKeySequence(key))
    action.setShortcutContext(SCOPE)
    owner.addAction(action)
    return action


class ImageCaptionBar(QWidget):
    """One line above the image: ``Lung · train``, ``Model: Lung 92 % (model score)``, kind, size.

    In a narrow pane the kind and size give way first, then the other two share what is left.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.labels = ElidedLabel()
        self.labels.setStyleSheet("font-weight: bold;")
        self.model = ElidedLabel()
        self.summary = ElidedLabel()
        self.summary.setStyleSheet("color: palette(placeholder-text);")
        self.summary.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.summary.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(12)
        layout.addWidget(self.labels)
        layout.addWidget(self.model)
        layout.addWidget(self.summary, 1)

    def show_caption(self, caption: ImageCaption, summary: str) -> None:
        self.labels.setText(caption.label_text)
        self.labels.setToolTip(f"{caption.label_text}\n{LABEL_HELP}")
        self.show_model_text(caption.model_text)
        self.summary.setText(summary)
        self.summary.setToolTip(summary)

    def show_model_text(self, text: str) -> None:
        """The model's part: its score, or why there is none yet."""
        self.model.setText(text)
        self.model.setToolTip(f"{text}\n{MODEL_HELP}" if text else "")

    def clear(self) -> None:
        for label in (self.labels, self.model, self.summary):
            label.setText("")
