"""The PACS servers a user added, remembered between runs without their passwords or tokens.

A :class:`PacsEntry` says where a PACS is and how to log in to it; :meth:`PacsEntry.server` adds the
password or token (from :mod:`~ept_studio.services.project.pacs_credentials`) for one search or
import. The entries are kept in ``pacs-servers.json`` in the user's settings folder (the format is
in formats.md). :func:`search_pacs` and :func:`iter_import_from_pacs` take either kind of server.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Literal

from ept_studio.common.appdata import app_dirs
from ept_studio.common.config import to_json_dict
from ept_studio.common.files import atomic_write_text
from ept_studio.data.store import Project
from ept_studio.services.project.pacs import (
    DEFAULT_TIMEOUT_S,
    AuthKind,
    PacsError,
    PacsImportEvent,
    PacsSeries,
    PacsServer,
    PacsStudy,
    iter_pacs_import,
    search_series,
    search_studies,
)
from ept_studio.services.project.pacs_dimse import (
    DEFAULT_CALLING_AET,
    DEFAULT_MOVE_AET,
    DEFAULT_MOVE_PORT,
    DimseServer,
    Retrieve,
    iter_dimse_import,
    search_dimse_series,
    search_dimse_studies,
)
from ept_studio.services.project.pacs_store import check_ca_file

Protocol = Literal["dicomweb", "dimse"]
SERVERS_FILE = "pacs-servers.json"
FORMAT_VERSION = 1
_PLACEHOLDER = "placeholder"  # checks an entry's fields without its secret


@dataclasses.dataclass(frozen=True)
class PacsEntry:
    """A PACS as the user added it: a name to show, and where and how to reach it.

    ``protocol`` ``dicomweb`` uses ``url``, ``auth``, ``user`` and ``verify_tls``; ``dimse`` uses
    ``ae_title``, ``host``, ``port``, ``calling_ae_title``, ``tls`` (DICOM TLS) and ``retrieve``
    (``get``, or ``move`` to ``move_ae_title`` at this computer's ``move_port``). ``ca_file``
    (both; empty: this computer's trusted authorities) checks the server's certificate with a
    hospital's own certificate authority. It never holds a secret.
    """

    name: str
    protocol: Protocol = "dicomweb"
    url: str = ""
    auth: AuthKind = "none"
    user: str = ""
    verify_tls: bool = True
    ae_title: str = ""
    host: str = ""
    port: int = 0
    calling_ae_title: str = DEFAULT_CALLING_AET
    timeout_s: float = DEFAULT_TIMEOUT_S
    tls: bool = False
    ca_file: str = ""
    retrieve: Retrieve = "get"
    move_ae_title: str = DEFAULT_MOVE_AET
    move_port: int = DEFAULT_MOVE_PORT

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise PacsError("give the PACS a name")
        if self.protocol not in ("dicomweb", "dimse"):
            raise PacsError(f"unknown PACS protocol {self.protocol!r} (dicomweb or dimse)")
        if self.auth not in ("none", "basic", "bearer"):
            raise PacsError(f"unknown log-in kind {self.auth!r} (none, basic or bearer)")
        self.server(_PLACEHOLDER if self.needs_secret else None)

    @property
    def needs_secret(self) -> bool:
        """Whether a search or import needs a password or token (asked for, or from the keyring)."""
        return self.protocol == "dicomweb" and self.auth != "none"

    @property
    def secret_key(self) -> str:
        """What names this entry's secret in a credential store (its address and user)."""
        return f"{self.url} {self.auth} {self.user}"

    @property
    def where(self) -> str:
        """The address to show: the URL, or ``AET@host:port``."""
        if self.protocol == "dimse":
            return f"{self.ae_title}@{self.host}:{self.port}"
        return self.url

    def server(self, secret: str | None = None) -> PacsServer | DimseServer:
        """The server to search or import from, with the password or token when it needs one."""
        if self.protocol == "dimse":
            return DimseServer(
                self.ae_title,
                self.host,
                self.port,
                self.calling_ae_title,
                self.timeout_s,
                tls=self.tls,
                ca_file=self.ca_file or None,
                retrieve=self.retrieve,
                move_ae_title=self.move_ae_title,
                move_port=self.move_port,
            )
        return PacsServer(
            self.url,
            self.auth,
            self.user or None,
            secret if self.needs_secret else None,
            self.ca_file if self.verify_tls and self.ca_file else self.verify_tls,
            self.timeout_s,
        )


def servers_file() -> Path:
    """Where the entries are kept: the user's settings folder."""
    return app_dirs().config / SERVERS_FILE


def load_pacs_entries(path: Path | None = None) -> list[PacsEntry]:
    """The entries saved (none when the file is not there yet)."""
    path = path or servers_file()
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not version {FORMAT_VERSION} of the PACS list")
        fields = {field.name for field in dataclasses.fields(PacsEntry)}
        return [
            PacsEntry(**{k: v for k, v in item.items() if k in fields}) for item in data["servers"]
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, PacsError) as err:
        raise PacsError(f"cannot read the list of PACS servers {path}: {err}") from None


def save_pacs_entries(entries: Sequence[PacsEntry], path: Path | None = None) -> Path:
    """Keep the entries (whole or not at all); their secrets are never part of them."""
    path = path or servers_file()
    data = {"version": FORMAT_VERSION, "servers": [to_json_dict(entry) for entry in entries]}
    return atomic_write_text(
        path, json.dumps(data, indent=2, sort_keys=True), "list of PACS servers"
    )


def search_pacs(
    server: PacsServer | DimseServer,
    *,
    patient: str | None = None,
    patient_id: str | None = None,
    date_range: str | None = None,
    modality: str | None = None,
    description: str | None = None,
) -> list[PacsStudy]:
    """The studies matching every given filter, by DICOMweb or DIMSE as the server speaks."""
    check_ca_file(server)
    if isinstance(server, DimseServer):
        return search_dimse_studies(
            server,
            patient=patient,
            patient_id=patient_id,
            date_range=date_range,
            modality=modality,
            description=description,
        )
    return search_studies(
        server,
        patient=patient,
        patient_id=patient_id,
        date_range=date_range,
        modality=modality,
        description=description,
    )


def search_pacs_series(server: PacsServer | DimseServer, study_uid: str) -> list[PacsSeries]:
    """The series of a study, by DICOMweb or DIMSE as the server speaks."""
    check_ca_file(server)
    if isinstance(server, DimseServer):
        return search_dimse_series(server, study_uid)
    return search_series(server, study_uid)


def iter_import_from_pacs(
    project: Project,
    server: PacsServer | DimseServer,
    study_uids: Sequence[str],
    *,
    series_uids: Collection[str] | None = None,
    thumbnails: bool = True,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[PacsImportEvent]:
    """Retrieve and import the studies (only ``series_uids`` of them when given), by DICOMweb or
    DIMSE as the server speaks."""
    check_ca_file(server)
    if isinstance(server, DimseServer):
        return iter_dimse_import(
            project,
            server,
            study_uids,
            series_uids=series_uids,
            thumbnails=thumbnails,
            cancel=cancel,
        )
    return iter_pacs_import(
        project, server, study_uids, series_uids=series_uids, thumbnails=thumbnails, cancel=cancel
    )
