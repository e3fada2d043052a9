"""Debian's Orthanc with its DICOMweb plugin as a test PACS (:mod:`ept_studio.evidence.orthanc`).

The names the PACS tests import, from the evidence harness's module; where that module raises
:class:`~ept_studio.evidence.orthanc.OrthancUnavailable` (no Orthanc, no DICOMweb plugin, no
pydicom-data, no start), the test fails with its message, naming ``bash packaging/dev.sh setup``.
"""

from __future__ import annotations

import contextlib
import json
import shutil  # noqa: F401 (tests patch ``orthanc_support.shutil.which``)
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import pytest

from ept_studio.evidence import orthanc
from ept_studio.evidence.orthanc import (
    ORTHANC_PLACES,
    PASSWORD,
    PLUGIN_PLACES,
    PYDICOM_FILES,
    START_SECONDS,
    UPLOADS,
    USER,
    Orthanc,
    OrthancUnavailable,
)
from ept_studio.evidence.orthanc import free_ports as _free_ports
from ept_studio.services.project import (
    DimseServer,
    PacsImportEvent,
    Project,
    iter_dimse_import,
    pacs_cache_dir,
)

__all__ = [
    "ORTHANC_PLACES",
    "PASSWORD",
    "PLUGIN_PLACES",
    "PYDICOM_FILES",
    "START_SECONDS",
    "UPLOADS",
    "USER",
    "Orthanc",
    "OrthancUnavailable",
    "_executable",
    "_free_ports",
    "_plugin",
    "move_destination",
    "start_orthanc",
    "upload_files",
]

T = TypeVar("T")


def _fail(err: OrthancUnavailable) -> NoReturn:
    pytest.fail(str(err), pytrace=False)


def _or_fail(step: Callable[[], T]) -> T:
    try:
        return step()
    except OrthancUnavailable as err:
        _fail(err)


def _executable() -> str:
    return _or_fail(lambda: orthanc.find_orthanc(ORTHANC_PLACES))


def _plugin() -> Path:
    return _or_fail(lambda: orthanc.find_dicomweb_plugin(PLUGIN_PLACES))


def start_orthanc(folder: Path, *, tls: bool = False) -> Orthanc:
    """An Orthanc on free loopback ports, storing under ``folder``, answering /system; ``tls``:
    HTTPS and DICOM TLS only, its certificate authority in :attr:`Orthanc.ca_file`."""
    return _or_fail(
        lambda: orthanc.start_orthanc(
            folder, orthanc_places=ORTHANC_PLACES, plugin_places=PLUGIN_PLACES, tls=tls
        )
    )


def upload_files() -> list[Path]:
    """The real CT / MR / US files the PACS holds (pydicom's, pydicom-data's)."""
    return _or_fail(orthanc.upload_files)


@contextlib.contextmanager
def move_destination(
    server: Orthanc, ae_title: str, port: int, host: str = "127.0.0.1"
) -> Iterator[None]:
    """The Orthanc knows ``ae_title`` at ``host``:``port`` (one of its DicomModalities, set through
    its REST API) until the end: a C-MOVE destination, and a caller it lets ask for C-MOVE."""
    name = f"move-{ae_title.lower()}"
    modality = {"AET": ae_title, "Host": host, "Port": port}
    server.rest("PUT", f"/modalities/{name}", data=json.dumps(modality).encode())
    try:
        yield
    finally:
        server.rest("DELETE", f"/modalities/{name}")


def dimse_import(
    project: Project,
    server: DimseServer,
    uids: list[str],
    cancel: Callable[[], bool] | None = None,
) -> list[PacsImportEvent]:
    """Every event of a DIMSE import (C-GET or C-MOVE, as ``server`` says) of ``uids``."""
    return list(iter_dimse_import(project, server, uids, cancel=cancel))


def cached_copies(project: Project) -> list[Path]:
    """The PACS copies the project keeps on this computer, sorted."""
    folder = pacs_cache_dir(project)
    return sorted(folder.iterdir()) if folder.exists() else []
