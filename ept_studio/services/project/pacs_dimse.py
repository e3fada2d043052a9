"""A PACS without DICOMweb, over DIMSE: search it (C-FIND) and import studies from it (C-GET or
C-MOVE).

The same shape as :mod:`~ept_studio.services.project.pacs`: the same :class:`PacsStudy` results,
the same events, the same cache and import. The instances of the studies asked for are listed
first (C-FIND at image level), then each is retrieved by its own C-GET or C-MOVE on one
association, so ``cancel`` is asked between instances and an instance deleted meanwhile is noticed
as such. All are retrieved before any is imported: a PACS that fails half way leaves the project as
it was.

C-GET needs no setting on the PACS for this computer. C-MOVE (for a PACS that does not offer
C-GET) needs this computer registered there as a destination (an AE title, address and port): for
the time of the retrieve, a storage server listens on that port, on the address this computer
reaches the PACS from, and keeps only the instance asked for. pynetdicom's own log lists each
query's values, which can identify a patient: it is kept to warnings, and nothing here logs a UID
or a query value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ept_studio.data.store import Project
from ept_studio.services.project.importing import (
    ImportFinished,
    ImportReport,
    iter_import,
    pacs_cache_dir,
)
from ept_studio.services.project.pacs import (
    DEFAULT_TIMEOUT_S,
    PacsError,
    PacsImportEvent,
    PacsRetrieved,
    PacsSeries,
    PacsStudy,
    keep_instance,
    only_series,
    remove_copies,
    sort_series,
)

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pynetdicom.association import Association
    from pynetdicom.events import Event
    from pynetdicom.transport import ThreadedAssociationServer

logger = logging.getLogger(__name__)

Retrieve = Literal["get", "move"]
DEFAULT_CALLING_AET = "EPTSTUDIO"
DEFAULT_MOVE_AET = "EPTSTUDIO"
DEFAULT_MOVE_PORT = 11113
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # printable ASCII but the backslash
_ADDRESS = re.compile(r"^(?P<aet>[^@]+)@(?P<host>\[[^\]]+\]|[^:]+):(?P<port>\d+)$")
_PENDING = (0xFF00, 0xFF01)
_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_NOT_ASKED_FOR = 0xA900  # an instance the retrieve did not ask for is refused
_MOVE_DESTINATION_UNKNOWN = 0xA801
_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # Study Root Query/Retrieve Information Model - FIND
_GET = "1.2.840.10008.5.1.4.1.2.2.3"  # Study Root Query/Retrieve Information Model - GET
_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"  # Study Root Query/Retrieve Information Model - MOVE
_Instance = tuple[str, str, str]  # study, series and instance UIDs
_SERIES_KEYWORDS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
)


@dataclasses.dataclass(frozen=True)
class DimseServer:
    """Where a DIMSE PACS listens and the AE titles to talk to it with.

    ``ae_title``: the PACS's own (the *called* AE title); ``calling_ae_title``: this computer's,
    as the PACS knows it. DIMSE has no password: a PACS admits callers by AE title and address.
    ``tls``: every association is encrypted (DICOM TLS), the PACS's certificate checked against
    ``ca_file`` (a PEM file of certificate authorities) or, without one, this computer's trusted
    authorities, and its name against ``host``.
    ``retrieve``: how an import asks for the images, ``get`` (C-GET, on the same connection) or
    ``move`` (C-MOVE: the PACS connects back to ``move_ae_title`` at this computer's
    ``move_port``, which it must know; not with TLS).
    """

    ae_title: str
    host: str
    port: int
    calling_ae_title: str = DEFAULT_CALLING_AET
    timeout_s: float = DEFAULT_TIMEOUT_S
    tls: bool = False
    ca_file: str | None = None
    retrieve: Retrieve = "get"
    move_ae_title: str = DEFAULT_MOVE_AET
    move_port: int = DEFAULT_MOVE_PORT

    def __post_init__(self) -> None:
        titles = [("PACS", self.ae_title), ("calling", self.calling_ae_title)]
        if self.retrieve == "move":
            titles.append(("receiving", self.move_ae_title))
        for name, title in titles:
            if not _AE_TITLE.match(title) or not title.strip():
                raise PacsError(
                    f"the {name} AE title {title!r} is not valid: 1 to 16 letters, digits or "
                    "other printable characters, no backslash"
                )
        if not self.host.strip():
            raise PacsError("the PACS's host name is empty")
        if not 0 < self.port < 65536:
            raise PacsError(f"the PACS's port {self.port} is not between 1 and 65535")
        if self.timeout_s <= 0:
            raise PacsError("the time to wait for the PACS must be more than 0 s")
        if self.ca_file is not None and not self.tls:
            raise PacsError("a certificate authority file is only used with TLS: turn TLS on")
        self._check_retrieve()

    def _check_retrieve(self) -> None:
        if self.retrieve not in ("get", "move"):
            raise PacsError(f"unknown way to retrieve {self.retrieve!r} (get or move)")
        if self.retrieve != "move":
            return
        if not 0 < self.move_port < 65536:
            raise PacsError(
                f"the port to receive images on, {self.move_port}, is not between 1 and 65535"
            )
        if self.tls:
            raise PacsError(
                "Move cannot be encrypted (TLS) here: the PACS would connect back to this "
                "computer, which has no certificate; use Get with TLS, or Move without TLS"
            )

    @classmethod
    def parse(
        cls,
        address: str,
        calling_ae_title: str = DEFAULT_CALLING_AET,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        tls: bool = False,
        ca_file: str | None = None,
        retrieve: Retrieve = "get",
        move_ae_title: str = DEFAULT_MOVE_AET,
        move_port: int = DEFAULT_MOVE_PORT,
    ) -> DimseServer:
        """A server from ``AET@host:port`` (an IPv6 host in brackets)."""
        match = _ADDRESS.match(address.strip())
        if match is None:
            raise PacsError(
                f"{address!r} is not a DIMSE address: write it as AE_TITLE@host:port, e.g. "
                "ORTHANC@pacs.example.org:4242"
            )
        host = match["host"].strip("[]")
        port = int(match["port"])
        return cls(
            match["aet"],
            host,
            port,
            calling_ae_title,
            timeout_s,
            tls,
            ca_file,
            retrieve,
            move_ae_title,
            move_port,
        )

    @property
    def where(self) -> str:
        """What a message shows of the server: ``AET@host:port``."""
        return f"{self.ae_title}@{self.host}:{self.port}"


def search_dimse_studies(
    server: DimseServer,
    *,
    patient: str | None = None,
    patient_id: str | None = None,
    date_range: str | None = None,
    modality: str | None = None,
    description: str | None = None,
) -> list[PacsStudy]:
    """The studies matching every given filter (C-FIND at study level), by date then UID.

    The filters mean what they mean for :func:`~ept_studio.services.project.pacs.search_studies`.
    """
    query = _study_query(patient, patient_id, date_range, modality, description)
    with _association(server) as assoc:
        found = _find(server, assoc, query)
    studies = [_study(item) for item in found]
    studies = [study for study in studies if study.study_uid]
    logger.info("PACS search (DIMSE): %d studies", len(studies))
    return sorted(studies, key=lambda study: (study.date, study.study_uid))


def search_dimse_series(server: DimseServer, study_uid: str) -> list[PacsSeries]:
    """The series of a study (C-FIND at series level), by series number then UID."""
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    for keyword in _SERIES_KEYWORDS:
        setattr(query, keyword, "")
    with _association(server) as assoc:
        found = _find(server, assoc, query)
    return sort_series([_series(study_uid, item) for item in found])


def iter_dimse_import(
    project: Project,
    server: DimseServer,
    study_uids: Sequence[str],
    *,
    series_uids: Collection[str] | None = None,
    thumbnails: bool = True,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[PacsImportEvent]:
    """Retrieve the studies' instances into the project's cache (C-GET or C-MOVE as the server's
    ``retrieve`` says), then import them.

    ``series_uids``: only these series of the studies (all of them when None). The events and the
    cancel behaviour are those of
    :func:`~ept_studio.services.project.pacs.iter_pacs_import`. Raises :class:`PacsError` when
    the PACS fails; the project is then unchanged.
    """
    cache = pacs_cache_dir(project)
    receiver = _Receiver(cache)
    try:
        with (
            _association(server, receiver=receiver) as assoc,
            _retriever(server, assoc, receiver) as retrieve,
        ):
            instances = [
                item for uid in dict.fromkeys(study_uids) for item in _instances(server, assoc, uid)
            ]
            instances = only_series(instances, series_uids, server.where)
            cache.mkdir(mode=0o700, parents=True, exist_ok=True)  # full headers: owner only
            for done, instance in enumerate(instances, start=1):
                if cancel is not None and cancel():
                    logger.info("PACS import cancelled after %d of %d", done - 1, len(instances))
                    remove_copies(receiver.new_files)
                    yield ImportFinished(ImportReport())
                    return
                retrieve(instance)
                yield PacsRetrieved(done, len(instances))
    except BaseException:
        remove_copies(receiver.new_files)
        raise
    logger.info(
        "PACS import (DIMSE): %d instances retrieved (%d new)",
        len(receiver.files),
        len(receiver.new_files),
    )
    yield from iter_import(project, receiver.files, thumbnails=thumbnails, cancel=cancel)


class _Receiver:
    """Keeps what the PACS sends (C-STORE sub-operations, on the association's own thread, or on
    the storage server's for C-MOVE). ``only_expected``: only the instance ``expected`` is kept
    (none between two requests); the storage server admits anyone who connects."""

    def __init__(self, cache: Path) -> None:
        self.cache = cache
        self.files: list[Path] = []
        self.new_files: list[Path] = []
        self.failure: str | None = None
        self.only_expected = False
        self.expected: str | None = None
        self.connections = 0

    def on_connect(self, _event: Event) -> None:
        self.connections += 1

    def on_store(self, event: Event) -> int:
        sent = getattr(event.request, "AffectedSOPInstanceUID", None)
        if self.only_expected and (sent is None or sent != self.expected):
            return _NOT_ASKED_FOR
        try:
            path, is_new = keep_instance(self.cache, event.encoded_dataset())
        except OSError as err:
            self.failure = f"cannot keep a retrieved image in {self.cache}: {err.strerror or err}"
            return _OUT_OF_RESOURCES
        self.files.append(path)
        if is_new:
            self.new_files.append(path)
        return _SUCCESS


@contextlib.contextmanager
def _association(server: DimseServer, receiver: _Receiver | None = None) -> Iterator[Association]:
    """An association for C-FIND, and for the server's retrieve when ``receiver`` is given;
    released at the end."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, build_role, evt

    logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # its INFO lines list query values
    _check_reachable(server)
    ae = AE(ae_title=server.calling_ae_title)
    for name in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
        setattr(ae, name, server.timeout_s)
    ae.add_requested_context(_FIND)
    roles: list[Any] = []
    handlers: list[Any] = []
    if receiver is not None and server.retrieve == "move":
        ae.add_requested_context(_MOVE)  # the images come on the storage server's associations
    elif receiver is not None:
        ae.add_requested_context(_GET)
        for context in StoragePresentationContexts:  # 120: with the two above, within 128
            storage = str(context.abstract_syntax)
            ae.add_requested_context(storage, ALL_TRANSFER_SYNTAXES)
            roles.append(build_role(storage, scp_role=True))
        handlers.append((evt.EVT_C_STORE, receiver.on_store))
    assoc = ae.associate(
        server.host,
        server.port,
        ae_title=server.ae_title,
        ext_neg=roles,
        evt_handlers=handlers,
        tls_args=tls_args(server),
    )
    if not assoc.is_established:
        raise PacsError(_not_established(server, assoc))
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def tls_args(server: DimseServer) -> tuple[ssl.SSLContext, str] | None:
    """pynetdicom's TLS setting for the server: a client context and the name to check."""
    if not server.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=server.ca_file)
    except (OSError, ssl.SSLError) as err:
        raise PacsError(
            f"cannot use the certificate authority file {server.ca_file} for the PACS at "
            f"{server.where}: {getattr(err, 'strerror', None) or err}"
        ) from None
    return context, server.host


def _check_reachable(server: DimseServer) -> None:
    """Tell a server that is down from one that does not answer (pynetdicom aborts on both), and
    one whose encryption fails (TLS) from both."""
    context = tls_args(server)
    try:
        with socket.create_connection((server.host, server.port), timeout=server.timeout_s) as sock:
            if context is not None:
                _handshake(server, context[0], sock)
    except TimeoutError:
        raise PacsError(_timeout_message(server)) from None
    except OSError:
        raise PacsError(
            f"cannot reach the PACS at {server.where}: is the server running, and the host and "
            "port right?"
        ) from None


def _handshake(server: DimseServer, context: ssl.SSLContext, sock: socket.socket) -> None:
    """Open the encrypted connection once, so that a failure is told in words."""
    try:
        with context.wrap_socket(sock, server_hostname=server.host):
            pass
    except ssl.SSLCertVerificationError:
        raise PacsError(
            f"the PACS at {server.where} is not the server it claims to be, or this computer does "
            "not trust its certificate: give the certificate authority file of your hospital "
            f"(TLS certificate check: {_verify_reason(server)})"
        ) from None
    except (ssl.SSLError, ConnectionError):
        raise PacsError(
            f"the PACS at {server.where} did not accept an encrypted connection (TLS): is TLS "
            "on at this port, or is it a port without encryption? Ask its administrator"
        ) from None


def _verify_reason(server: DimseServer) -> str:
    return f"not signed by {server.ca_file}" if server.ca_file else "not signed by a trusted one"


def _not_established(server: DimseServer, assoc: Association) -> str:
    if assoc.is_rejected:
        return (
            f"the PACS at {server.where} refused the connection: check its AE title, and that it "
            f"admits this computer's AE title ({server.calling_ae_title})"
        )
    if not server.tls and _speaks_tls(server):
        return (
            f"the PACS at {server.where} only takes encrypted connections: turn on TLS for it "
            "(with the certificate authority file of your hospital if it has its own)"
        )
    return _timeout_message(server)


def _speaks_tls(server: DimseServer) -> bool:
    """Whether the port answers a TLS handshake (the certificate is not checked: only asked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((server.host, server.port), timeout=server.timeout_s) as sock,
            context.wrap_socket(sock),
        ):
            return True
    except OSError:
        return False


def _timeout_message(server: DimseServer) -> str:
    return (
        f"the PACS at {server.where} did not answer within {server.timeout_s:g} s: try again "
        "later, or allow it more time"
    )


def _find(server: DimseServer, assoc: Association, query: Dataset) -> list[Dataset]:
    _require(server, assoc, _FIND, "search (C-FIND)")
    found = []
    for status, identifier in assoc.send_c_find(query, _FIND):
        code = _status(server, status)
        if code in _PENDING and identifier is not None:
            found.append(identifier)
        elif code != _SUCCESS:
            raise PacsError(f"the PACS at {server.where} refused the search (status 0x{code:04X})")
    return found


def _instances(server: DimseServer, assoc: Association, study_uid: str) -> list[_Instance]:
    """The study's (study, series, instance) UIDs, sorted; a study that is gone is told."""
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.SOPInstanceUID = ""
    found = {
        (study_uid, str(item.get("SeriesInstanceUID", "")), str(item.get("SOPInstanceUID", "")))
        for item in _find(server, assoc, query)
    }
    instances = sorted(item for item in found if all(item))
    if not instances:
        raise PacsError(_deleted_message(server, "a study"))
    return instances


@contextlib.contextmanager
def _retriever(
    server: DimseServer, assoc: Association, receiver: _Receiver
) -> Iterator[Callable[[_Instance], None]]:
    """What retrieves one instance into the receiver's cache: C-GET, or C-MOVE with this
    computer's storage server listening meanwhile (stopped at the end)."""
    if server.retrieve != "move":
        yield functools.partial(_get, server, assoc, receiver)
        return
    address = assoc.requestor.address  # where this computer reaches the PACS from
    receiver.only_expected = True
    storage = _storage_server(server, address, receiver)
    try:
        yield functools.partial(_move, server, assoc, receiver, address)
    finally:
        storage.shutdown()


def _storage_server(
    server: DimseServer, address: str, receiver: _Receiver
) -> ThreadedAssociationServer:
    """This computer's storage server (C-STORE SCP) for C-MOVE, on ``address`` and the server's
    ``move_port``; a port in use is told."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt

    ae = AE(ae_title=server.move_ae_title)
    for name in ("acse_timeout", "dimse_timeout", "network_timeout"):
        setattr(ae, name, server.timeout_s)
    for context in StoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    handlers: list[Any] = [
        (evt.EVT_C_STORE, receiver.on_store),
        (evt.EVT_CONN_OPEN, receiver.on_connect),
    ]
    try:
        storage = ae.start_server((address, server.move_port), block=False, evt_handlers=handlers)
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise PacsError(
                f"port {server.move_port} of this computer is already in use by another program: "
                "choose another port to receive images on (and tell the PACS's administrator)"
            ) from None
        raise PacsError(
            f"cannot receive images on port {server.move_port} of this computer: "
            f"{err.strerror or err}"
        ) from None
    assert storage is not None  # not blocking: the server is returned
    return storage


def _get(server: DimseServer, assoc: Association, receiver: _Receiver, instance: _Instance) -> None:
    """One instance by C-GET into the receiver's cache."""
    _require(server, assoc, _GET, "retrieval (C-GET)")
    kept = len(receiver.files)
    final = None
    for status, _identifier in assoc.send_c_get(_instance_query(instance), _GET):
        code = _status(server, status)
        if code not in _PENDING:
            final = code
    if _received(receiver, kept):
        return
    if final is None or final == _SUCCESS or final & 0xF000 == 0xC000:  # 0xCxxx: cannot process
        raise PacsError(_deleted_message(server, "an image"))
    raise PacsError(f"the PACS at {server.where} did not send an image (status 0x{final:04X})")


def _move(
    server: DimseServer,
    assoc: Association,
    receiver: _Receiver,
    address: str,
    instance: _Instance,
) -> None:
    """One instance by C-MOVE to this computer's storage server, into the receiver's cache."""
    _require(server, assoc, _MOVE, "sending images to this computer (C-MOVE)")
    kept, connections = len(receiver.files), receiver.connections
    asked = time.monotonic()
    final = None
    receiver.expected = instance[2]
    try:
        for status, _identifier in assoc.send_c_move(
            _instance_query(instance), server.move_ae_title, _MOVE
        ):
            if "Status" not in status:
                raise PacsError(_move_broken_off(server, time.monotonic() - asked))
            if int(status.Status) not in _PENDING:
                final = int(status.Status)
    finally:
        receiver.expected = None
    if _received(receiver, kept):
        return
    if final == _SUCCESS:
        raise PacsError(
            f"the PACS at {server.where} says it sent an image, but none reached this computer "
            f"({server.move_ae_title}, address {address}, port {server.move_port}): check the "
            f"address and port the PACS has for {server.move_ae_title}"
        )
    if final != _MOVE_DESTINATION_UNKNOWN and not _still_there(server, assoc, instance):
        raise PacsError(_deleted_message(server, "an image"))
    if receiver.connections > connections:
        raise PacsError(
            f"the PACS at {server.where} connected to this computer but did not send the image "
            f"(status 0x{final or 0:04X})"
        )
    raise PacsError(
        f"the PACS at {server.where} does not know this computer as {server.move_ae_title} (or "
        f"not at this address); add {server.move_ae_title} on the PACS with address {address} "
        f"and port {server.move_port} (status 0x{final or 0:04X})"
    )


def _move_broken_off(server: DimseServer, waited_s: float) -> str:
    """An empty C-MOVE response: the wait ran out, or the PACS ended the connection at once."""
    if waited_s >= server.timeout_s:
        return _timeout_message(server)
    return (
        f"the PACS at {server.where} broke off when asked to send images to this computer "
        f"(C-MOVE): it may not allow Move for this computer's AE title "
        f"({server.calling_ae_title}); ask its administrator"
    )


def _still_there(server: DimseServer, assoc: Association, instance: _Instance) -> bool:
    """Whether the PACS still lists the instance (C-FIND at image level)."""
    found = _find(server, assoc, _instance_query(instance))
    return any(str(item.get("SOPInstanceUID", "")) == instance[2] for item in found)


def _instance_query(instance: _Instance) -> Dataset:
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID, query.SeriesInstanceUID, query.SOPInstanceUID = instance
    return query


def _received(receiver: _Receiver, kept: int) -> bool:
    """Whether the receiver kept an instance since it held ``kept``; its failure is raised."""
    if receiver.failure is not None:
        raise PacsError(receiver.failure)
    return len(receiver.files) > kept


def _require(server: DimseServer, assoc: Association, sop_class: str, what: str) -> None:
    accepted = {context.abstract_syntax for context in assoc.accepted_contexts}
    if sop_class not in accepted:
        raise PacsError(f"the PACS at {server.where} does not offer {what} to this computer")


def _status(server: DimseServer, status: Dataset) -> int:
    """The response's status; an empty one means the association timed out or was aborted."""
    if "Status" not in status:
        raise PacsError(_timeout_message(server))
    return int(status.Status)


def _deleted_message(server: DimseServer, what: str) -> str:
    return (
        f"{what} asked for is not on the PACS at {server.where}: it may have been deleted; "
        "search again"
    )


def _study_query(
    patient: str | None,
    patient_id: str | None,
    date_range: str | None,
    modality: str | None,
    description: str | None,
) -> Dataset:
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    query.StudyDate = date_range.replace(" ", "") if date_range else ""
    query.ModalitiesInStudy = modality.upper() if modality else ""
    query.StudyDescription = f"*{description}*" if description else ""
    query.NumberOfStudyRelatedInstances = ""
    query.PatientName = f"*{patient}*" if patient else ""
    query.PatientID = patient_id or ""
    return query


def _series(study_uid: str, item: Dataset) -> PacsSeries:
    number, count = (
        str(item.get("SeriesNumber", "")),
        str(item.get("NumberOfSeriesRelatedInstances", "")),
    )
    return PacsSeries(
        study_uid=study_uid,
        series_uid=str(item.get("SeriesInstanceUID", "")),
        modality=str(item.get("Modality", "")),
        description=str(item.get("SeriesDescription", "")),
        number=int(number) if number.lstrip("-").isdigit() else None,
        instances=int(count) if count.isdigit() else None,
    )


def _study(item: Dataset) -> PacsStudy:
    modalities = item.get("ModalitiesInStudy", "")
    if isinstance(modalities, str):
        modalities = [modalities] if modalities else []
    count = str(item.get("NumberOfStudyRelatedInstances", ""))
    return PacsStudy(
        study_uid=str(item.get("StudyInstanceUID", "")),
        date=str(item.get("StudyDate", "")),
        modalities=tuple(str(value) for value in modalities),
        description=str(item.get("StudyDescription", "")),
        instances=int(count) if count.isdigit() else None,
        patient_name=str(item.get("PatientName", "")),
        patient_id=str(item.get("PatientID", "")),
    )
