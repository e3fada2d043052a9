"""Storing back on a PACS (STOW-RS, C-STORE over TLS) with a certificate authority file that is not
there is told in one line before any connection, as search and import tell it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from labelled_projects import write_series

from ept_studio.services.project import DimseServer, PacsError, PacsServer, store_to_pacs

NOT_THERE = r"the certificate authority file .*no-such-ca\.pem for the PACS is not there"


def _closed_port() -> int:
    """A loopback port nothing listens on: a connection attempt would fail differently."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_stow_rs_with_a_missing_ca_file_is_told(tmp_path: Path) -> None:
    report = write_series(tmp_path / "reports", 1)[0]
    missing = str(tmp_path / "no-such-ca.pem")
    server = PacsServer(f"https://127.0.0.1:{_closed_port()}/dicom-web", verify_tls=missing)
    with pytest.raises(PacsError, match=NOT_THERE):
        store_to_pacs(server, [report])


def test_c_store_over_tls_with_a_missing_ca_file_is_told(tmp_path: Path) -> None:
    report = write_series(tmp_path / "reports", 1)[0]
    missing = str(tmp_path / "no-such-ca.pem")
    server = DimseServer("ORTHANC", "127.0.0.1", _closed_port(), tls=True, ca_file=missing)
    with pytest.raises(PacsError, match=NOT_THERE):
        store_to_pacs(server, [report])


def test_an_existing_ca_file_goes_on_to_connect(tmp_path: Path) -> None:
    """The check lets a CA file that is there through: the failure is then the connection's."""
    report = write_series(tmp_path / "reports", 1)[0]
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("not checked before connecting\n", encoding="utf-8")
    server = PacsServer(f"https://127.0.0.1:{_closed_port()}/dicom-web", verify_tls=str(ca_file))
    with pytest.raises(PacsError) as told:
        store_to_pacs(server, [report])
    assert "not there" not in str(told.value)
