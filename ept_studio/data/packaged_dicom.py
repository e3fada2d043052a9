"""The de-identified DICOM test files shipped inside the installed ``pydicom`` and ``pydicom-data``.

The demo project copies some of them, the offline datasets and the decoding benchmarks read them.
Only the packages' own folders are listed: ``pydicom``'s ``get_testdata_file(s)`` is never called,
because it would try the network for files that are missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def installed_dicom_files() -> list[tuple[str, Path]]:
    """Every file in pydicom's ``test_files`` and pydicom-data's ``data_store/data``, sorted.

    Each comes with a display name relative to its package (package data, not patient data).
    """
    folders: list[tuple[str, Path]] = []
    for package, sub in (("pydicom.data", "test_files"), ("data_store", "data")):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            folders.append((f"{package.split('.')[0]}/{sub}", Path(spec.origin).parent / sub))
    files: list[tuple[str, Path]] = []
    for label, folder in folders:
        if folder.is_dir():
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                files.append((f"{label}/{path.relative_to(folder).as_posix()}", path))
    return files


def pydicom_data_folder() -> Path | None:
    """The folder of the ``pydicom-data`` package's files (module ``data_store``), if installed."""
    spec = importlib.util.find_spec("data_store")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None
