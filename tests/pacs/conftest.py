"""A real PACS for the tests (:mod:`orthanc_support`): a session-wide Orthanc per pytest-xdist
worker (its own ports, its own folder) filled with pydicom's and pydicom-data's CT / MR / US files
and the PHI-marked studies of ``phi_support``; and more, empty ones for a test that needs them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from orthanc_support import Orthanc, start_orthanc, upload_files
from phi_support import write_phi_folder


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
