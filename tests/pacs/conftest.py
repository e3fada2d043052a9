"""A real PACS for the tests (:mod:`orthanc_support`): a session-wide Orthanc per pytest-xdist
worker (its own ports, its own folder) filled with pydicom's and pydicom-data's CT / MR / US files
and the PHI-marked studies of ``phi_support``; and more, empty ones for a test that needs them."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from orthanc_support import Orthanc, start_orthanc, upload_files
from phi_support import write_phi_folder

from ept_studio.common import applog
from ept_studio.common.applog import setup_logging
from ept_studio.services.project import Project


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A filled Orthanc for this worker's session."""
    folder = tmp_path_factory.mktemp("orthanc")
    server = start_orthanc(folder)
    try:
        phi = sorted(write_phi_folder(folder / "phi").rglob("*.dcm"))
        for path in [*upload_files(), *phi]:
            server.rest("POST", "/instances", data=path.read_bytes())
        yield server
    finally:
        server.stop()


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[[], Orthanc]]:
    """Start more (empty) Orthancs in a test; each is stopped at the end."""
    started: list[Orthanc] = []

    def start() -> Orthanc:
        server = start_orthanc(tmp_path / f"orthanc-{len(started)}")
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def own_orthanc(orthanc_factory: Callable[[], Orthanc], tmp_path: Path) -> Orthanc:
    """An Orthanc of this test's own (studies get deleted), with two real and two marked studies."""
    server = orthanc_factory()
    marked = sorted(write_phi_folder(tmp_path / "phi").rglob("*.dcm"))
    for path in [*upload_files()[:2], *marked]:
        server.rest("POST", "/instances", data=path.read_bytes())
    return server


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    """A new, empty project (its user data in the test's folder)."""
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    with Project.create(tmp_path / "project", "single") as opened:
        yield opened


@pytest.fixture
def app_log(tmp_path: Path) -> Iterator[Path]:
    """The app's log file at DEBUG level for the test, its handler removed afterwards."""
    path = setup_logging(tmp_path / "logs", level=logging.DEBUG)
    yield path
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, applog._AppLogHandler)]:
        root.removeHandler(handler)
        handler.close()
