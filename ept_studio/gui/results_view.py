"""A run's results: headline accuracy with its interval, per-class table, confusion matrix,
calibration before and after temperature scaling, prediction sets, and the warnings a reader must
see before trusting any number.

The headline says what the numbers are computed on (test images, and how many training and
calibration images were left out), and a view of training images says it is not a test. Metric
names are the plain ones of :mod:`~ept_studio.services.model.metric_names`, with the technical term
in the tooltip. An uncalibrated model's scores say so wherever they are shown.

A click on a confusion-matrix cell or a reliability bar emits ``images_chosen`` with a gallery
filter of those images, named in words.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import (
    QGridLayout,
    QHeaderView,
    QLabel,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ept_studio.gui.hints import note_label
from ept_studio.services.model import metric_tooltip, plain_metric_name
from ept_studio.services.project import (
    TRAINING_VIEW_NAME,
    CalibrationCheck,
    GalleryFilter,
    Interval,
    ReliabilityBin,
    ResultsScope,
    RunResults,
    SetResults,
    confusion_selection,
    reliability_selection,
    scope_summary,
)

ECE_TOOLTIP = (
    "calibration error (ECE, expected calibration error): how far the model scores are from "
    "how often the model is right, averaged over 10 score bins (0: a score of 80 % is right "
    "80 % of the time)"
)
RELIABILITY_TOOLTIP = (
    "reliability diagram: for each band of model scores, how often the predicted class was "
    "right (bars) against the score itself (dashed diagonal). Click a bar to show its images "
    "in the gallery."
)
SETS_TOOLTIP = (
    "prediction sets (split conformal prediction): every class the model cannot rule out at "
    "the chosen coverage. With n calibration images the coverage is guaranteed only when "
    "n >= 1/alpha - 1 (alpha = 1 - coverage: 9 images for 90 %)."
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
    check = results.calibration
    uncalibrated = " (uncalibrated scores)" if check is not None and not check.calibrated else ""
    text = (
        f"{plain_metric_name('accuracy')} {format_interval(scores.accuracy)} "
        f"{scope_summary(results)}. {level} % bootstrap interval ({scores.resamples} "
        f"resamples); {plain_metric_name('ece').lower()} {scores.ece:.3f}{uncalibrated}."
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


def calibration_text(results: RunResults) -> str:
    """Calibration error before and after temperature scaling, on which images; or why the
    scores are uncalibrated."""
    check = results.calibration
    if check is None:
        return ""
    images = _scored_words(results, check.evaluated)
    if not check.calibrated:
        reason = check.reason or "scores are uncalibrated"
        return (
            f"{reason[0].upper()}{reason[1:]}. Calibration error {check.ece_after:.3f} on the "
            f"{images} (uncalibrated scores)."
        )
    fitted = f"fitted on {check.fitted_on} {check.source or 'calibration images'}"
    return (
        f"Calibration error {check.ece_before:.3f} before, {check.ece_after:.3f} after "
        f"calibration (temperature {check.temperature:.2f}, {fitted}); both on the same "
        f"{images}."
    )


def sets_text(results: RunResults) -> str:
    """``90 % sets: the right class was in the set for 37 of 40 test images; 1.3 classes per set
    on average; guaranteed because 38 calibration images ≥ 9``, or why there are no sets."""
    sets = results.sets
    if sets is None:
        reason = results.sets_reason
        return f"{reason[0].upper()}{reason[1:]}." if reason else ""
    if sets.label_mode == "multi":
        hit = f"a present class was in the set {sets.covered} of {sets.evaluated} times"
        hit += f" on {_scored_words(results, sets.images)}"
    else:
        hit = (
            f"the right class was in the set for {sets.covered} of "
            f"{_scored_words(results, sets.evaluated)}"
        )
    text = f"{_percent(sets.coverage)} sets: {hit}; {sets.mean_size:.1f} classes per set on average"
    if sets.guaranteed:
        return f"{text}; guaranteed because {_fewest(sets)} ≥ {sets.needed}."
    return f"{text}. {sets.statement}"


def _fewest(sets: SetResults) -> str:
    return f"{sets.calibration_images} calibration images"


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g} %"


def _scored_words(results: RunResults, count: int) -> str:
    kind = "training" if results.scope is ResultsScope.TRAINING else "test"
    return f"{count} {kind} images"


class ReliabilityPlot(QWidget):
    """Bars of accuracy per confidence bin against the diagonal of perfect calibration, under a
    title; a click on a bar emits ``bin_clicked`` with its index."""

    bin_clicked = Signal(int)

    def __init__(self, title: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = title
        self.bins: tuple[ReliabilityBin, ...] = ()
        self.setMinimumSize(160, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip(RELIABILITY_TOOLTIP)
        self.setCursor(Qt.CursorShape.PointingHandCursor)

    def sizeHint(self) -> QSize:
        return QSize(220, 190)

    def set_bins(self, bins: tuple[ReliabilityBin, ...], title: str | None = None) -> None:
        self.bins = bins
        if title is not None:
            self.title = title
        self.update()

    def plot_frame(self) -> QRectF:
        top = 8 + (self.fontMetrics().lineSpacing() if self.title else 0)
        return QRectF(self.rect()).adjusted(30, top, -8, -22)

    def bar_rect(self, index: int) -> QRectF:
        """Where bin ``index`` is drawn (its full height, for clicks on short bars)."""
        frame = self.plot_frame()
        b = self.bins[index]
        left = frame.left() + b.low * frame.width()
        return QRectF(left, frame.top(), (b.high - b.low) * frame.width(), frame.height())

    def bin_at(self, x: float) -> int | None:
        """The non-empty bin under ``x`` (None: none there)."""
        for index, b in enumerate(self.bins):
            bar = self.bar_rect(index)
            if b.count and bar.left() <= x < bar.right():
                return index
        return None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        index = self.bin_at(event.position().x())
        if index is not None and event.button() == Qt.MouseButton.LeftButton:
            self.bin_clicked.emit(index)
            event.accept()
            return
        super().mousePressEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        frame = self.plot_frame()
        text = self.palette().text().color()
        if self.title:
            painter.setPen(text)
            painter.drawText(
                QRectF(0, 2, self.width(), frame.top() - 2),
                Qt.AlignmentFlag.AlignCenter,
                self.title,
            )
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
            QRectF(frame.left(), frame.bottom() + 2, frame.width(), 18),
            Qt.AlignmentFlag.AlignCenter,
            "model score (bars: how often right)",
        )


def _fit_height(table: QTableWidget) -> None:
    """As tall as its rows (no empty band below them), at least a header and one row."""
    rows = sum(table.rowHeight(row) for row in range(table.rowCount()))
    header = table.horizontalHeader().height() if table.columnCount() else 0
    height = max(rows, table.verticalHeader().defaultSectionSize()) + header
    table.setFixedHeight(height + 2 * table.frameWidth() + 2)


class ResultsView(QWidget):
    """Shows one :class:`RunResults`; empty (with a hint) until there is one."""

    images_chosen = Signal(object)
    """A :class:`GalleryFilter` of the images behind a clicked cell or bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.results: RunResults | None = None
        self.headline = QLabel("Train a model, then predict, to see results here.")
        self.headline.setWordWrap(True)
        self.warnings = QLabel("")
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #9a5b00;")
        self.note = note_label()
        """What the score means for this project (the demo's note; hidden for other projects)."""
        self.per_class = QTableWidget(0, len(PER_CLASS_COLUMNS))
        self._label_per_class_columns()
        self.per_class.setToolTip("each metric, then its 95 % bootstrap interval")
        self.per_class.verticalHeader().hide()
        self.per_class.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.confusion = QTableWidget(0, 0)
        self.confusion.setToolTip(
            "rows: true class, columns: predicted class; click a cell to show its images in "
            "the gallery"
        )
        self.confusion.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.confusion.cellClicked.connect(self._on_cell)
        self.calibration = QLabel("")
        self.calibration.setWordWrap(True)
        self.calibration.setToolTip(ECE_TOOLTIP)
        self.reliability_before = ReliabilityPlot("Before calibration")
        self.reliability_after = ReliabilityPlot("After calibration")
        self.reliability = self.reliability_after
        self.reliability_before.bin_clicked.connect(lambda index: self._on_bin(index, False))
        self.reliability_after.bin_clicked.connect(lambda index: self._on_bin(index, True))
        self.sets = QLabel("")
        self.sets.setWordWrap(True)
        self.sets.setToolTip(SETS_TOOLTIP)
        plots = QGridLayout()
        plots.setContentsMargins(0, 0, 0, 0)
        plots.addWidget(self.reliability_before, 0, 0)
        plots.addWidget(self.reliability_after, 0, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.headline)
        layout.addWidget(self.note)
        layout.addWidget(self.warnings)
        layout.addWidget(self.sets)
        layout.addWidget(self.per_class)
        layout.addWidget(QLabel("Confusion matrix (rows: true, columns: predicted; click a cell)"))
        layout.addWidget(self.confusion)
        layout.addWidget(self.calibration)
        layout.addLayout(plots, 1)

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
            self.calibration.setText("")
            self.sets.setText("")
            self._show_reliability(None)
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
        for table in (self.per_class, self.confusion):
            _fit_height(table)
        self.calibration.setText(calibration_text(results))
        self.sets.setText(sets_text(results))
        self._show_reliability(results.calibration)

    def _show_reliability(self, check: CalibrationCheck | None) -> None:
        """Before and after side by side; one diagram, said to be uncalibrated, without a
        temperature."""
        if check is None:
            self.reliability_before.set_bins(())
            self.reliability_after.set_bins((), "Reliability")
            self.reliability_before.hide()
            return
        if check.calibrated:
            self.reliability_before.set_bins(check.reliability_before, "Before calibration")
            self.reliability_after.set_bins(check.reliability_after, "After calibration")
            self.reliability_before.show()
        else:
            self.reliability_before.set_bins(())
            self.reliability_after.set_bins(check.reliability_after, "Uncalibrated scores")
            self.reliability_before.hide()

    @Slot(int, int)
    def _on_cell(self, row: int, column: int) -> None:
        if self.results is None or self.results.scores is None:
            return
        chosen = confusion_selection(self.results, row, column)
        self.images_chosen.emit(GalleryFilter.chosen(chosen.image_ids, chosen.label))

    def _on_bin(self, index: int, calibrated: bool) -> None:
        if self.results is None or self.results.calibration is None:
            return
        chosen = reliability_selection(self.results, index, calibrated=calibrated)
        self.images_chosen.emit(GalleryFilter.chosen(chosen.image_ids, chosen.label))

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
                item.setToolTip(
                    f"{count} images: true {names[i]}, predicted {names[j]}; click to show "
                    "them in the gallery"
                )
                strength = int(40 + 160 * count / peak) if count else 0
                colour = QColor(46, 160, 67, strength) if i == j else QColor(214, 39, 40, strength)
                item.setBackground(colour)
                self.confusion.setItem(i, j, item)
