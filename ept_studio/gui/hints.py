"""Plain-words guidance: empty-state hints, a grey sentence drawn in an empty view saying what to
do next (in the view's own viewport, not a widget over it, so drops and clicks still reach the
view), and the demo's notes, which say what the demo shows and why its score means little.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QLabel, QWidget

from ept_studio.services.project import DemoInfo

HINT_MARGIN = 24
NOTE_STYLE = (
    "QLabel { background: #eef4fb; color: #1d3557; border: 1px solid #b8cce4; "
    "border-radius: 4px; padding: 6px; }"
)
REAL_EFFECT = "To see a real effect, label more images of your own."


def draw_hint(viewport: QWidget, text: str, area: QRect | None = None) -> None:
    """Draw ``text`` centred and word-wrapped in ``area`` of ``viewport`` (all of it by default).

    Call from the view's ``paintEvent`` after the items are painted.
    """
    if not text:
        return
    rect = (area or viewport.rect()).adjusted(HINT_MARGIN, HINT_MARGIN, -HINT_MARGIN, -HINT_MARGIN)
    if rect.width() <= 0 or rect.height() <= 0:
        return
    painter = QPainter(viewport)
    colour = viewport.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
    painter.setPen(colour)
    font = painter.font()
    font.setPointSizeF(font.pointSizeF() * 1.15)
    painter.setFont(font)
    flags = Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap
    painter.drawText(rect, int(flags), text)
    painter.end()


def note_label() -> QLabel:
    """A boxed, word-wrapped note, hidden until it has something to say (:func:`show_note`)."""
    label = QLabel("")
    label.setWordWrap(True)
    label.setStyleSheet(NOTE_STYLE)
    label.hide()
    return label


def show_note(label: QLabel, text: str, tooltip: str = "") -> None:
    """Show ``text`` in ``label`` (hide it when ``text`` is empty)."""
    label.setText(text)
    label.setToolTip(tooltip)
    label.setVisible(bool(text))


def _images(count: int) -> str:
    return f"{count} image" if count == 1 else f"{count} images"


def demo_train_note(info: DemoInfo) -> str:
    """What the demo asks of the model, and how little it learns from (Train tab)."""
    names = list(info.classes)
    kinds = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
    each = info.train_per_class
    train = (
        f"only {each} training {'image' if each == 1 else 'images'} a class"
        if each is not None
        else f"only {_images(sum(info.train_counts.values()))} to train on"
    )
    return (
        f"This is the demo: it sorts scans by the kind of machine that took them ({kinds}). "
        f"It has {train} and {_images(info.test_images)} to test on, so it shows the steps, "
        f"not what the method can do. {REAL_EFFECT}"
    )


def demo_results_note(info: DemoInfo) -> str:
    """Why the demo's score means little (Results tab, beside the score)."""
    points = info.points_per_test_image
    if points is None:
        return f"This is the demo: it has no test images, so there is no score. {REAL_EFFECT}"
    return (
        f"This is the demo: with {_images(info.test_images)} to test on, one image moves the "
        f"score by about {points:.0f} points. The number shows the steps working, not what the "
        f"method does on your data. {REAL_EFFECT}"
    )


DEMO_TOOLTIP = (
    "A few-shot task on real DICOM test files from pydicom and pydicom-data; the label is the "
    "Modality tag. On this tiny test set the nearest-centroid prototype (the mean of each "
    "class's features on the frozen backbone) and EPT both got 5 of 12 test images right when "
    "the demo was put together, and modality shows in trivial cues (ultrasound is mostly "
    "colour): a pipeline demonstration, not a benchmark."
)
