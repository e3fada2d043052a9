"""The first-run research-use notice (a dialog) and the import report (a docked panel)."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDockWidget,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
    QWidget,
)

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.services.project import ImportReport


class NoticeDialog(QDialog):
    """Shown on first run: the user must accept the research-use notice to go on."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("EPT Studio: research use only")
        text = QLabel(RESEARCH_USE_NOTICE)
        text.setWordWrap(True)
        text.setMinimumWidth(420)
        buttons = QDialogButtonBox()
        buttons.addButton("I understand", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.addButton("Quit", QDialogButtonBox.ButtonRole.RejectRole)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)


def report_text(report: ImportReport) -> str:
    """The import report as plain text: counts, then each skipped file with its reason."""
    lines = [
        f"Added: {len(report.added)}",
        f"Already in the project: {len(report.duplicates)}",
        f"Found again (moved): {len(report.relinked)}",
        f"Changed since last import: {len(report.changed)}",
        f"Skipped: {len(report.skipped)}",
    ]
    if report.labelled:
        counts = ", ".join(f"{name} {count}" for name, count in sorted(report.labelled.items()))
        lines.append(f"Labelled from their folders: {counts}")
    if report.text_in_pixels:
        lines.append(
            f"May show text in their pixels (check for burned-in names): {len(report.text_in_pixels)}"
        )
    if report.skipped:
        lines.append("")
        lines.append("Skipped files:")
        lines.extend(f"  {path}: {reason}" for path, reason in report.skipped)
    return "\n".join(lines)


class ImportReportPanel(QDockWidget):
    """What the last import did, docked in the window; lists each skipped file and why.

    A panel rather than a dialog: it takes no focus, so labelling keys keep working beside it.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Import report", parent)
        self.setObjectName("import-report")
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMinimumHeight(90)
        self.text.setMaximumHeight(120)  # the gallery keeps most of a 720-pixel screen
        self.setWidget(self.text)
        self.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetClosable
            | QDockWidget.DockWidgetFeature.DockWidgetMovable
        )

    def show_report(self, report: ImportReport) -> None:
        self.text.setPlainText(report_text(report))
        self.show()
