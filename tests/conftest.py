"""Shared fixtures. Helpers live in ``support.py`` (``from support import ...``)."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable
from pathlib import Path

import pytest
from support import make_tiny_vit, write_class_folders
from torch import nn


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
