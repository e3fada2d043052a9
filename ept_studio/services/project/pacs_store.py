"""Store files this app wrote (structured reports) on a PACS: STOW-RS for DICOMweb, C-STORE for DIMSE.

Only done when the user asks for it, and only with files EPT Studio made: the sources are never
sent back. The connection and its failures are those of reading from the PACS
(:mod:`~ept_studio.services.project.pacs`, :mod:`~ept_studio.services.project.pacs_dimse`): the
same session, the same checks, the same one-line messages; nothing here logs a UID.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ept_studio.services.project.pacs import PacsError, PacsServer, _call, _client, _where
from ept_studio.services.project.pacs_dimse import (
    DimseServer,
    _check_reachable,
    _not_established,
    _status,
    tls_args,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

_SUCCESS = 0x0000
_WARNINGS = (0x0001, 0xB000, 0xB006, 0xB007)  # stored, with a coercion or element warning


def store_to_pacs(server: PacsServer | DimseServer, files: Sequence[Path]) -> int:
    """Send ``files`` to the PACS; how many it stored (all of them, or :class:`PacsError`)."""
    check_ca_file(server)
    datasets = [_read(path) for path in files]
    if not datasets:
        return 0
    if isinstance(server, DimseServer):
        _c_store(server, datasets)
    else:
        _stow(server, datasets)
    logger.info("stored %d files on the PACS", len(datasets))
    return len(datasets)


def check_ca_file(server: PacsServer | DimseServer) -> None:
    """A certificate authority file that is not there is told before any connection, in the
    words search and import use."""
    ca_file = server.ca_file if isinstance(server, DimseServer) else server.verify_tls
    if isinstance(ca_file, str) and not Path(ca_file).is_file():
        raise PacsError(
            f"the certificate authority file {ca_file} for the PACS is not there: choose it again"
        )


def _read(path: Path) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path)
    except (OSError, InvalidDicomError, ValueError) as err:
        raise PacsError(
            f"cannot read {path.name} to store it on the PACS ({type(err).__name__})"
        ) from None


def _stow(server: PacsServer, datasets: list[Dataset]) -> None:
    client = _client(server)
    response = _call(server, client.store_instances, datasets)
    failed = response.get("FailedSOPSequence") if response is not None else None
    if failed:
        raise PacsError(
            f"the PACS at {_where(server.url)} refused {len(failed)} of {len(datasets)} files"
        )


def _c_store(server: DimseServer, datasets: list[Dataset]) -> None:
    from pynetdicom import AE

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines list UIDs
    _check_reachable(server)
    ae = AE(ae_title=server.calling_ae_title)
    for name in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, name, server.timeout_s)
    for sop_class, syntax in sorted(
        {(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}
    ):
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(
        server.host, server.port, ae_title=server.ae_title, tls_args=tls_args(server)
    )
    if not assoc.is_established:
        raise PacsError(_not_established(server, assoc))
    try:
        accepted = {str(context.abstract_syntax) for context in assoc.accepted_contexts}
        for dataset in datasets:
            if str(dataset.SOPClassUID) not in accepted:
                raise PacsError(
                    f"the PACS at {server.where} does not accept this kind of file "
                    f"({dataset.SOPClassUID.name})"
                )
            code = _status(server, assoc.send_c_store(dataset))
            if code != _SUCCESS and code not in _WARNINGS:
                raise PacsError(
                    f"the PACS at {server.where} refused to store a file (status 0x{code:04X})"
                )
    finally:
        if assoc.is_established:
            assoc.release()
