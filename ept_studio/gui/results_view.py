"""A run's results: headline accuracy with its interval, per-class table, confusion matrix,
reliability diagram and the warnings a reader must see before trusting any number.

The headline says what the numbers are computed on (test images, and how many training images
were left out), and a view of training images says it is not a test. Metric names are the plain
ones of :mod:`~ept_studio.services.model.metric_names`, with the technical key in the tooltip.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ept_studio.services.model import metric_tooltip, plain_metric_name
from ept_studio.services.project import (
    TRAINING_VIEW_NAME,
    Interval,
    ReliabilityBin,
    ResultsScope,
    RunResults,
    scope_summary,
)

PER_CLASS_COLUMNS = ("class", "n", "precision", "recall", "f1")


def format_interval(interval: Interval) -> str:
    """``0.83 (0.61-0.95)``; ``n/a`` when undefined on these images."""
    if not interval.defined:
        return "n/a"
    return f"{interval.value:.2f} ({interval.low:.2f}-{interval.high:.2f})"


def format_cell(interval: Interval) -> str:
    """Two lines for a narrow table cell: the value, then its interval."""
    if not interval.defined:
        return "n/a"
    return f"{interval.value:.2f}\n{interval.low:.2f}-{interval.high:.2f}"


def headline_text(results: RunResults) -> str:
    """``Accuracy 0.83 (0.61-0.95) on 6 test images (not trained on); 16 training images not
    scored (...)``; a training-images view starts by saying it is not a test."""
    scores = results.scores
    if scores is None:
        return empty_text(results)
    level = round(scores.confidence * 100)
    text = (
        f"{plain_metric_name('accuracy')} {format_interval(scores.accuracy)} "
        f"{scope_summary(results)}. {level} % bootstrap interval ({scores.resamples} "
        f"resamples); {plain_metric_name('ece').lower()} {scores.ece:.3f}."
    )
    if results.scope is ResultsScope.TRAINING:
        return f"{TRAINING_VIEW_NAME}. {text}"
    return text


def empty_text(results: RunResults) -> str:
    """What to say when a view has nothing to score, and how many images it left out."""
    if results.scope is ResultsScope.TRAINING:
        return f"{TRAINING_VIEW_NAME}: no training image has a prediction and a label here."
    text = "No labelled image the model was not trained on has a prediction in this run"
    if results.not_scored:
        text += f" ({results.not_scored} training images not scored)"
    return text + ": label new images and predict them, or give some images the test role."


class ReliabilityPlot(QWidget):
    """Bars of accuracy per confidence bin against the diagonal of perfect calibration."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bins: tuple[ReliabilityBin, ...] = ()
        self.setMinimumSize(160, 140)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)

    def sizeHint(self) -> QSize:
        return QSize(220, 180)

    def set_bins(self, bins: tuple[ReliabilityBin, ...]) -> None:
        self.bins = bins
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        frame = QRectF(self.rect()).adjusted(34, 8, -8, -24)
        text = self.palette().text().color()
        painter.setPen(QPen(self.palette().mid().color()))
        painter.drawRect(frame)
        painter.setPen(QPen(QColor("#888888"), 1, Qt.PenStyle.DashLine))
        painter.drawLine(frame.bottomLeft(), frame.topRight())
        for b in self.bins:
            if b.count == 0:
                continue
            left = frame.left() + b.low * frame.width()
            width = (b.high - b.low) * frame.width()
            height = b.accuracy * frame.height()
            bar = QRectF(left + 1, frame.bottom() - height, width - 2, height)
            painter.fillRect(bar, QColor(31, 119, 180, 170))
        painter.setPen(text)
        painter.drawText(QPointF(4, frame.top() + 10), "1.0")
        painter.drawText(QPointF(4, frame.bottom()), "0")
        painter.drawText(
            QRectF(frame.left(), frame.bottom() + 4, frame.width(), 18),
            Qt.AlignmentFlag.AlignCenter,
            "confidence (bars: accuracy)",
        )


class ResultsView(QWidget):
    """Shows one :class:`RunResults`; empty (with a hint) until there is one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.results: RunResults | None = None
        self.headline = QLabel("Train a model, then predict, to see results here.")
        self.headline.setWordWrap(True)
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #9a5b00;")
        self.per_class = QTableWidget(0, len(PER_CLASS_COLUMNS))
        self._label_per_class_columns()
        self.per_class.setToolTip("each metric, then its 95 % bootstrap interval")
        self.per_class.verticalHeader().hide()
        self.per_class.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.confusion = QTableWidget(0, 0)
        self.confusion.setToolTip("rows: true class, columns: predicted class")
        self.reliability = ReliabilityPlot()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.headline)
        layout.addWidget(self.warnings)
        layout.addWidget(self.per_class, 1)
        layout.addWidget(QLabel("Confusion matrix (rows: true, columns: predicted)"))
        layout.addWidget(self.confusion, 1)
        layout.addWidget(self.reliability, 1)

    def show_results(self, results: RunResults | None) -> None:
        self.results = results
        scores = results.scores if results is not None else None
        if results is None or scores is None:
            self.headline.setText(
                empty_text(results)
                if results is not None
                else "Train a model, then predict, to see results here."
            )
            self.warnings.setText(
                "\n".join(f"⚠ {w}" for w in results.warnings) if results is not None else ""
            )
            self.per_class.setRowCount(0)
            self.confusion.setRowCount(0)
            self.confusion.setColumnCount(0)
            self.reliability.set_bins(())
            return
        self.headline.setText(headline_text(results))
        self.headline.setToolTip(
            f"{metric_tooltip('accuracy')}\n{plain_metric_name('ece')}: {metric_tooltip('ece')}"
        )
        self.warnings.setText("\n".join(f"⚠ {w}" for w in results.warnings))
        self.per_class.setRowCount(len(scores.per_class))
        for row, result in enumerate(scores.per_class):
            cells = [
                result.name,
                str(result.support),
                format_cell(result.precision),
                format_cell(result.recall),
                format_cell(result.f1),
            ]
            for column, text in enumerate(cells):
                self.per_class.setItem(row, column, QTableWidgetItem(text))
        self.per_class.resizeRowsToContents()
        self._show_confusion(results)
        self.reliability.set_bins(scores.reliability)

    def _label_per_class_columns(self) -> None:
        for column, key in enumerate(PER_CLASS_COLUMNS):
            if key == "class":
                name, tip = "Class", "the class"
            elif key == "n":
                name, tip = "Images", "scored images that carry the class"
            else:
                name, tip = plain_metric_name(key), metric_tooltip(key)
            if " (" in name:  # a narrow column: the words in brackets go to the tooltip
                name, tip = name.split(" (")[0], f"{name}: {tip}"
            item = QTableWidgetItem(name)
            item.setToolTip(tip)
            self.per_class.setHorizontalHeaderItem(column, item)

    def _show_confusion(self, results: RunResults) -> None:
        matrix = results.scores.confusion_matrix if results.scores is not None else None
        if matrix is None:
            self.confusion.setRowCount(0)
            self.confusion.setColumnCount(0)
            return
        names = list(results.classes)
        self.confusion.setRowCount(len(names))
        self.confusion.setColumnCount(len(names))
        self.confusion.setHorizontalHeaderLabels(names)
        self.confusion.setVerticalHeaderLabels(names)
        peak = max((max(row) for row in matrix), default=0) or 1
        for i, row in enumerate(matrix):
            for j, count in enumerate(row):
                item = QTableWidgetItem(str(count))
                item.setTextAlignment(Qt.AlignmentFlag.AlignCenter)
                strength = int(40 + 160 * count / peak) if count else 0
                colour = QColor(46, 160, 67, strength) if i == j else QColor(214, 39, 40, strength)
                item.setBackground(colour)
                self.confusion.setItem(i, j, item)
