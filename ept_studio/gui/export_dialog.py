"""The ONNX export's choice of model size, and what the app says when a smaller model is kept or
refused.

The three choices are in plain words; the number format (fp32, int8, fp16) and how each is made are
in the tooltips. A smaller model is kept only if it agrees with the standard one on the check
images (:func:`~ept_studio.services.project.export_run_onnx`); when it does not, the figures are
shown and the standard model is offered instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ept_studio.services.project import OnnxExportResult, SmallerModelRefused

STANDARD = "fp32"


@dataclasses.dataclass(frozen=True)
class PrecisionChoice:
    """One way to export: its key (the CLI's ``--precision``), words, and the ML terms."""

    key: str
    label: str
    tooltip: str


PRECISION_CHOICES = (
    PrecisionChoice(
        STANDARD,
        "Standard (most exact)",
        "fp32: 32-bit floating point, the model exactly as checked against PyTorch. Runs "
        "everywhere ONNX Runtime runs.",
    ),
    PrecisionChoice(
        "int8",
        "Smaller and faster on CPU (int8)",
        "int8: dynamic quantization. The weights of the linear layers are stored as 8-bit "
        "integers (about a quarter of the size); attention and normalisation stay fp32. Kept "
        "only if it agrees with the standard model on the check images: top-1 agreement "
        ">= 99 %, attention-map correlation >= 0.95.",
    ),
    PrecisionChoice(
        "fp16",
        "For NVIDIA GPUs (fp16)",
        "fp16: half-precision floating point, half the size, for CUDA GPUs. Checked against the "
        "standard model like int8; without a GPU here the check runs on the CPU.",
    ),
)


def choice_of(key: str) -> PrecisionChoice:
    """The choice whose key is ``key`` (fp32, int8 or fp16); anything else is a ValueError."""
    for choice in PRECISION_CHOICES:
        if choice.key == key:
            return choice
    raise ValueError(f"no export precision {key!r}")


class OnnxExportDialog(QDialog):
    """Asks which model to export before the file dialog asks where."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("EPT Studio: export the model")
        intro = QLabel("Which model should be saved?")
        self.group = QButtonGroup(self)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        self.buttons: dict[str, QRadioButton] = {}
        for index, choice in enumerate(PRECISION_CHOICES):
            button = QRadioButton(choice.label)
            button.setToolTip(choice.tooltip)
            self.group.addButton(button, index)
            self.buttons[choice.key] = button
            layout.addWidget(button)
        self.buttons[STANDARD].setChecked(True)
        note = QLabel(
            "A smaller model is saved only if it gives the same results as the standard one "
            "on the check images."
        )
        note.setWordWrap(True)
        layout.addWidget(note)
        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.next_button = box.addButton(
            "Choose where to save…", QDialogButtonBox.ButtonRole.AcceptRole
        )
        box.accepted.connect(self.accept)
        box.rejected.connect(self.reject)
        layout.addWidget(box)

    @property
    def precision(self) -> str:
        """The key of the chosen model (fp32, int8 or fp16)."""
        return PRECISION_CHOICES[max(self.group.checkedId(), 0)].key

    def choose(self, key: str) -> None:
        self.buttons[choice_of(key).key].setChecked(True)


def standard_destination(path: Path, precision: str) -> Path:
    """Where the standard model goes after a refused smaller one: the same name without the
    ``-int8`` / ``-fp16`` the app suggested (``model-int8.onnx`` -> ``model.onnx``)."""
    stem = path.stem.removesuffix(f"-{precision}")
    return path.with_name(f"{stem or path.stem}{path.suffix}")


def _in_a_sentence(key: str) -> str:
    label = choice_of(key).label
    return label[:1].lower() + label[1:]


def size_text(size_bytes: int) -> str:
    if size_bytes >= 2**20:
        return f"{size_bytes / 2**20:.1f} MiB"
    return f"{size_bytes / 2**10:.0f} KiB"


def exported_text(result: OnnxExportResult) -> str:
    """What the status line says after an export: the file, its size and its checks."""
    parity = result.parity
    head = f"Exported {result.onnx_path.name} ({size_text(result.size_bytes)}"
    check = result.precision_check
    if check is None:
        return (
            f"{head}). Parity with PyTorch on {parity.images} {result.check_source}: logits "
            f"within {parity.logits_error:.1e}, attention within {parity.attention_error:.1e}."
        )
    label = _in_a_sentence(result.precision)
    notes = "".join(f" {note[:1].upper()}{note[1:]}." for note in result.notes)
    return (
        f"{head}, {label}). Checked against the standard model on the {check.images} check "
        f"images ({result.check_source}): the same top class on {check.top1_agreement:.0%}; "
        f"attention maps correlate {check.attention_correlation:.4f}, rollout "
        f"{check.rollout_correlation:.4f} (lowest image).{notes}"
    )


def refused_text(refused: SmallerModelRefused) -> str:
    """Why the smaller model was not kept, with its figures and what each needed."""
    record = refused.record
    label = _in_a_sentence(refused.precision)
    return (
        f"The {label} model was not saved: it differs too much from the standard model. On "
        f"the {record.images} check images ({refused.check_source}): the same top class on "
        f"{record.top1_agreement:.0%} (needs {record.min_agreement:.0%}); attention maps "
        f"correlate {record.attention_correlation:.4f}, rollout "
        f"{record.rollout_correlation:.4f} (lowest image; each needs {record.min_correlation:g})."
    )


def refusal_box(parent: QWidget, refused: SmallerModelRefused) -> tuple[QMessageBox, QPushButton]:
    """A message box with the figures, and its button that exports the standard model."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Warning)
    box.setWindowTitle("EPT Studio: the smaller model was not saved")
    box.setText(refused_text(refused))
    box.setInformativeText(
        "The standard model gives the results you saw in the app. Export it instead?"
    )
    standard = box.addButton("Export the standard model", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    return box, standard
