"""Previous / next in the viewer: steps through the image ids the gallery's current filter lists.

The list is asked for on every step (the gallery's filter and order change under the viewer), so
the navigator holds a *source* of ids, never a copy. When the shown image has left the list (it
was labelled while the gallery shows "Unlabelled"), next shows the image that took its place.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

SequenceSource = Callable[[], list[int]]


def no_sequence() -> list[int]:
    """The default source: nothing to step through until the main window supplies one."""
    return []


def sequence_step(ids: Sequence[int], current: int | None, step: int, hint: int = 0) -> int | None:
    """The id ``step`` (+1 or -1) places from ``current`` in ``ids``; None past either end.

    ``hint`` is where ``current`` last stood: when it is no longer listed, the id now at that
    place counts as the next one, and the one before it as the previous one.
    """
    if not ids:
        return None
    if current in ids:
        target = ids.index(current) + step
    elif current is None:
        target = 0 if step > 0 else len(ids) - 1
    else:
        target = min(max(hint, 0), len(ids)) + (0 if step > 0 else -1)
    return ids[target] if 0 <= target < len(ids) else None


def position_text(ids: Sequence[int], current: int | None) -> str:
    """``3 of 12``; ``– of 12`` when the image is not in the list; empty without a list."""
    if not ids:
        return ""
    if current in ids:
        return f"{ids.index(current) + 1} of {len(ids)}"
    return f"– of {len(ids)}"


class SequenceNavigator(QWidget):
    """◀ 3 of 12 ▶: emits ``image_requested`` with the id to show; the panel shows it."""

    image_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._source: SequenceSource = no_sequence
        self._current: int | None = None
        self._hint = 0
        self.previous_action = _action(self, "Previous image", "◀", ("Left", "PgUp"))
        self.next_action = _action(self, "Next image", "▶", ("Right", "PgDown"))
        self.previous_action.triggered.connect(self.show_previous)
        self.next_action.triggered.connect(self.show_next)
        self.position = QLabel()
        self.position.setToolTip("Position in the gallery's current filter")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(_button(self.previous_action))
        layout.addWidget(self.position)
        layout.addWidget(_button(self.next_action))
        self.refresh()

    @property
    def actions_for_keys(self) -> tuple[QAction, QAction]:
        """The two actions, for the panel to scope their keys to itself."""
        return self.previous_action, self.next_action

    def set_source(self, source: SequenceSource) -> None:
        self._source = source
        self.refresh()

    def set_current(self, image_id: int | None) -> None:
        """The image now shown (None: none, or one that is not in the project)."""
        self._current = image_id
        self._hint = 0
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Read the list again: position, and which of the two steps lead anywhere."""
        ids = self._source()
        if self._current in ids:
            self._hint = ids.index(self._current)
        self.position.setText(position_text(ids, self._current))
        self.previous_action.setEnabled(self._target(ids, -1) is not None)
        self.next_action.setEnabled(self._target(ids, +1) is not None)

    @Slot()
    def show_next(self) -> None:
        self._step(+1)

    @Slot()
    def show_previous(self) -> None:
        self._step(-1)

    def _step(self, step: int) -> None:
        target = self._target(self._source(), step)
        if target is not None:
            self.image_requested.emit(target)

    def _target(self, ids: Sequence[int], step: int) -> int | None:
        return sequence_step(ids, self._current, step, self._hint)


def _action(parent: QWidget, text: str, icon_text: str, keys: tuple[str, ...]) -> QAction:
    action = QAction(icon_text, parent)
    action.setShortcuts([QKeySequence(key) for key in keys])
    shown_keys = " or ".join(QKeySequence(key).toString() for key in keys)
    action.setToolTip(f"{text} in the gallery's filter ({shown_keys})")
    return action


def _button(action: QAction) -> QToolButton:
    button = QToolButton()
    button.setDefaultAction(action)
    button.setAutoRaise(True)
    return button
