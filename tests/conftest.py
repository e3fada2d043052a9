"""Shared fixtures. Helpers live in ``support.py`` (``from support import ...``)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import shutil
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from support import make_tiny_vit, write_class_folders
from torch import nn

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


@pytest.fixture(autouse=True)
def _cpu_without_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """``bf16 = auto`` reads the CPU's flags and may time a check: the suite runs as on a CPU
    without AVX512-BF16 or AMX, so no result depends on the machine (tests of it fake the flags)."""
    from ept_studio.core import bf16

    monkeypatch.setattr(bf16, "CPUINFO", Path("/nonexistent/cpuinfo"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-bundle",
        action="store_true",
        default=False,
        help="build the PyInstaller bundle if dist/ has none, and smoke-test it (minutes)",
    )


@pytest.fixture
def tiny_vit() -> Callable[..., nn.Module]:
    return make_tiny_vit


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    """Two classes of real medical pixels (fundus vs immunohistochemistry crops), 6 PNGs each."""
    return write_class_folders(tmp_path / "data")


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """A folder of studies as a user drops it: 2 DICOM (CT, MR), 6 PNG crops, 1 non-image file."""
    root = tmp_path / "studies"
    write_class_folders(root / "photos", per_class=3, size=96)
    (root / "dicom" / "nested").mkdir(parents=True)
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", root / "dicom" / "ct.dcm")
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", root / "dicom" / "nested" / "mr.dcm")
    (root / "notes.txt").write_text("not an image\n", encoding="utf-8")
    return root
