"""What every EPT Studio bundle holds, shared by the Linux, Windows and macOS spec files.

PyInstaller follows imports, but several of EPT Studio's dependencies are found at run time in ways
it cannot see: pydicom's pixel-data handlers find the pylibjpeg plugins (libjpeg, openjpeg, rle)
through entry points (so their distribution metadata must be in the bundle), as keyring finds its
OS backends; highdicom reads the DICOM standard's tables from JSON files; pydicom's sample CT
and MR files are the ONNX export's parity check images, services import ``core`` lazily, and
pip (for the offline backbone's wheel) runs as ``ept-studio -m pip``. The evidence harness
(``ept_studio.evidence``: the accuracy protocol, datasets and benchmarks) is left out: the app never
imports it, and there ``ept-studio bench`` says it is not installed. Imported by the spec files
only (``sys.path`` holds this folder there), never by the app.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from PyInstaller.utils.hooks import (
    collect_all,
    collect_data_files,
    collect_dynamic_libs,
    collect_submodules,
    copy_metadata,
)

ROOT = Path(__file__).resolve().parents[2]
NAME = "ept-studio"
ENTRY = str(ROOT / "packaging" / "pyinstaller" / "entry.py")

# Importable packages whose code, data and native libraries are all needed.
COLLECT_ALL = ("pylibjpeg", "libjpeg", "openjpeg", "rle", "data_store")
# Distributions whose metadata is read at run time (entry points, version checks).
METADATA = (
    "ept-studio",
    "pydicom",
    "pylibjpeg",
    "pylibjpeg-libjpeg",
    "pylibjpeg-openjpeg",
    "pylibjpeg-rle",
    "pydicom-data",
    "timm",
    "torch",
    "torchvision",
    "safetensors",
    "huggingface-hub",
    "onnx",
    "onnxruntime-gpu",
    "onnxruntime",
    "numpy",
    "pillow",
    "sqlite-utils",
    "platformdirs",
    "pip",
    "keyring",
    "highdicom",
    "pynetdicom",
    "dicomweb-client",
)
EVIDENCE = "ept_studio.evidence"
# Dev, benchmark and compiler packages the app never imports at run time (triton: torch.compile),
# and EPT Studio's own evidence harness, which the command line imports inside its bench handlers.
# scipy, scikit-learn and pandas stay in: calibration fits its temperature with scipy and its
# prediction sets with crepes, which imports scikit-learn and pandas.
EXCLUDES = [
    EVIDENCE,
    "triton",
    "matplotlib",
    "skimage",
    "conformal_clip_data",
    "tkinter",
    "IPython",
    "jupyter",
    "notebook",
    "pytest",
    "_pytest",
    "pytestqt",
    "hypothesis",
    "mypy",
    "importlinter",
    "grimp",
    "ruff",
    "PyInstaller",
]


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _in_the_app(module: str) -> bool:
    """Whether an ``ept_studio`` module belongs in the bundle (everything but the evidence)."""
    return module != EVIDENCE and not module.startswith(EVIDENCE + ".")


def collected() -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[str]]:
    """``(datas, binaries, hiddenimports)`` for the Analysis of every platform."""
    datas: list[tuple[str, str]] = [
        (str(ROOT / "models" / "manifest.json"), "models"),
        (str(ROOT / "resources" / "icons"), "resources/icons"),
    ]
    # torchvision >= 0.28 loads its operators (_C_stable.so) with torch.ops.load_library, which
    # PyInstaller cannot see: without them `import torchvision` (so timm) fails in the bundle.
    binaries: list[tuple[str, str]] = collect_dynamic_libs(
        "torchvision", search_patterns=["*.so", "*.pyd", "*.dylib"]
    )
    hidden = collect_submodules("ept_studio", filter=_in_the_app) + collect_submodules("pip")
    hidden += [*collect_submodules("pydicom.pixels"), "PySide6.QtSvg"]
    for package in COLLECT_ALL:
        if importlib.util.find_spec(package) is None:
            continue  # pydicom-data (data_store) is optional: without it the demo is smaller
        package_datas, package_binaries, package_hidden = collect_all(package)
        datas += package_datas
        binaries += package_binaries
        hidden += package_hidden
    datas += collect_data_files("pydicom")  # charsets, palettes and the sample files
    datas += collect_data_files("pip")  # its CA bundle
    # The series report: highdicom reads the standard's IOD / module tables (JSON) when it builds an SR.
    datas += collect_data_files("highdicom")
    # PACS passwords: keyring finds its OS backends through entry points (its metadata, above).
    hidden += collect_submodules("keyring.backends")
    for distribution in METADATA:
        if _installed(distribution):
            datas += copy_metadata(distribution)
    return datas, binaries, hidden
