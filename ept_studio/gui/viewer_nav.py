"""Previous / next in the viewer: steps through the image ids the gallery's current filter lists.

The list is asked for on every step (the gallery's filter and order change under the viewer), so
the navigator holds a *source* of ids, never a copy. When the shown image has left the list (it
was labelled while the gallery shows "Unlabelled"), next shows the image that took its place.
When the gallery shows one tile per series, the list holds one slice of each series: a shown slice
stands in its series' place there, and :class:`SliceStepper` steps through every slice of it.
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
        self._slices: tuple[int, ...] = ()
        self._hint = 0
        self.previous_action = _action(self, "Previous image", "◀", ("Left", "PgUp"))
        self.next_action = _action(self, "Next image", "▶", ("Right", "PgDown"))
        self.previous_action.triggered.connect(self.show_previous)
        self.next_action.triggered.connect(self.show_next)
        self.position = _stepper_row(
            self, self.previous_action, self.next_action, "Position in the gallery's current filter"
        )
        self.refresh()

    @property
    def actions_for_keys(self) -> tuple[QAction, QAction]:
        """The two actions, for the panel to scope their keys to itself."""
        return self.previous_action, self.next_action

    def set_source(self, source: SequenceSource) -> None:
        self._source = source
        self.refresh()

    def set_current(self, image_id: int | None, slices: Sequence[int] = ()) -> None:
        """The image now shown (None: none, or one that is not in the project) and the slices of
        its series, any of which may stand for it in the list (one tile per series)."""
        self._current = image_id
        self._slices = tuple(slices)
        self._hint = 0
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        """Read the list again: position, and which of the two steps lead anywhere."""
        ids = self._source()
        listed = self._listed(ids)
        if listed in ids:
            self._hint = ids.index(listed)
        self.position.setText(position_text(ids, listed))
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
        return sequence_step(ids, self._listed(ids), step, self._hint)

    def _listed(self, ids: Sequence[int]) -> int | None:
        """The shown image as the list has it: itself, or the slice its series' tile shows."""
        return listed_as(ids, self._current, self._slices)


def listed_as(ids: Sequence[int], current: int | None, slices: Sequence[int]) -> int | None:
    """``current`` when ``ids`` lists it, else the first of ``slices`` (its series) listed, else
    ``current``."""
    if current is None or current in ids:
        return current
    present = set(ids)
    return next((i for i in slices if i in present), current)


def slice_text(slices: Sequence[int], current: int | None) -> str:
    """``Slice 2 of 4``; empty when the image is not a slice of a series of two or more."""
    if len(slices) < 2 or current not in slices:
        return ""
    return f"Slice {slices.index(current) + 1} of {len(slices)}"


class SliceStepper(QWidget):
    """▲ Slice 2 of 4 ▼ in the viewer's tool row, for an image that is a slice of a series:
    emits ``image_requested`` with the slice before or after it in slice order. Hidden for an
    image that is not one of several slices."""

    image_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._slices: tuple[int, ...] = ()
        self._current: int | None = None
        self.previous_action = _slice_action(self, "Previous slice", "▲", "Up")
        self.next_action = _slice_action(self, "Next slice", "▼", "Down")
        self.previous_action.triggered.connect(self.show_previous)
        self.next_action.triggered.connect(self.show_next)
        self.position = _stepper_row(
            self,
            self.previous_action,
            self.next_action,
            "This image's place in its series (scan), in slice order",
        )
        self.set_slices((), None)

    @property
    def actions_for_keys(self) -> tuple[QAction, QAction]:
        return self.previous_action, self.next_action

    def set_slices(self, slices: Sequence[int], current: int | None) -> None:
        """The shown image and its series' slices in slice order (empty: not in a series)."""
        self._slices, self._current = tuple(slices), current
        text = slice_text(self._slices, current)
        self.position.setText(text)
        self.setVisible(bool(text))
        self.previous_action.setEnabled(self._target(-1) is not None)
        self.next_action.setEnabled(self._target(+1) is not None)

    @Slot()
    def show_next(self) -> None:
        self._step(+1)

    @Slot()
    def show_previous(self) -> None:
        self._step(-1)

    def _step(self, step: int) -> None:
        target = self._target(step)
        if target is not None:
            self.image_requested.emit(target)

    def _target(self, step: int) -> int | None:
        if len(self._slices) < 2 or self._current not in self._slices:
            return None
        return sequence_step(self._slices, self._current, step)


def _action(parent: QWidget, text: str, icon_text: str, keys: tuple[str, ...]) -> QAction:
    action = QAction(icon_text, parent)
    action.setShortcuts([QKeySequence(key) for key in keys])
    shown_keys = " or ".join(QKeySequence(key).toString() for key in keys)
    action.setToolTip(f"{text} in the gallery's filter ({shown_keys})")
    return action


def _slice_action(parent: QWidget, text: str, icon_text: str, key: str) -> QAction:
    action = QAction(icon_text, parent)
    action.setShortcut(QKeySequence(key))
    action.setToolTip(f"{text} of this series, in slice order ({QKeySequence(key).toString()})")
    return action


def _stepper_row(
    owner: QWidget, previous: QAction, following: QAction, position_tip: str
) -> QLabel:
    """◀ position ▶ across ``owner``; returns the position label."""
    position = QLabel()
    position.setToolTip(position_tip)
    layout = QHBoxLayout(owner)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(_button(previous))
    layout.addWidget(position)
    layout.addWidget(_button(following))
    return position


def _button(action: QAction) -> QToolButton:
    button = QToolButton()
    button.setDefaultAction(action)
    button.setAutoRaise(True)
    return button
