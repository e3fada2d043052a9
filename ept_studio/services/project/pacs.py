"""A PACS as a source of images: search it (QIDO-RS) and import studies from it (WADO-RS).

The PACS is only read. The studies' instances are listed (QIDO-RS, one request per study), then
fetched with one WADO-RS request per series, streamed so that progress and cancel still work
instance by instance. Each retrieved instance is written into this machine's copies for the project
(:func:`~ept_studio.services.project.importing.pacs_cache_dir`, beside the location index, outside
the project folder; named by the sha256 of its bytes) and then goes through the same import as a
file from disk, so hashing, patient keys and duplicate checks are one code path. All instances are
retrieved before any is imported: a PACS that fails half way (down, wrong password, timeout, a
study deleted meanwhile) leaves the project as it was.

Credentials are passed in with the :class:`PacsServer` and live only as long as it does: they are
never written to the project, the settings or the log. Search results carry the patient's name and
ID to show them to the user; nothing here logs them, nor any UID or query value.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
from collections.abc import Callable, Collection, Generator, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ept_studio.common.errors import EptStudioError
from ept_studio.common.files import atomic_write_bytes
from ept_studio.data.store import Project
from ept_studio.services.project.importing import (
    ImportFinished,
    ImportProgress,
    ImportReport,
    iter_import,
    pacs_cache_dir,
)

if TYPE_CHECKING:
    import requests
    from dicomweb_client.api import DICOMwebClient

logger = logging.getLogger(__name__)

AuthKind = Literal["none", "basic", "bearer"]
DEFAULT_TIMEOUT_S = 20.0
_STUDY_FIELDS = (
    "StudyInstanceUID",
    "StudyDate",
    "ModalitiesInStudy",
    "StudyDescription",
    "NumberOfStudyRelatedInstances",
    "PatientName",
    "PatientID",
)
_SERIES_FIELDS = (
    "SeriesInstanceUID",
    "Modality",
    "SeriesDescription",
    "SeriesNumber",
    "NumberOfSeriesRelatedInstances",
)


_AS_STORED = (("application/dicom", "*"),)
"""Ask for instances in the transfer syntax they are stored in: the server need not transcode
(which it may not be able to, e.g. from JPEG 2000)."""


class PacsError(EptStudioError):
    """The PACS cannot be reached or refused a request; the message says which, in one line."""


@dataclasses.dataclass(frozen=True)
class PacsServer:
    """Where a DICOMweb PACS is and how to log in to it.

    ``url``: the DICOMweb root (e.g. ``https://pacs.example.org/dicom-web``). ``auth``: ``none``,
    ``basic`` (``user`` and ``secret`` as password) or ``bearer`` (``secret`` as token).
    ``verify_tls``: check the server's certificate (``True``), or a CA bundle file to check it with.
    """

    url: str
    auth: AuthKind = "none"
    user: str | None = None
    secret: str | None = dataclasses.field(default=None, repr=False)
    verify_tls: bool | str = True
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise PacsError("the PACS address must start with http:// or https://")
        if self.auth == "basic" and (not self.user or self.secret is None):
            raise PacsError("basic authentication needs a user name and a password")
        if self.auth == "bearer" and not self.secret:
            raise PacsError("bearer authentication needs a token")


@dataclasses.dataclass(frozen=True, repr=False)
class PacsStudy:
    """One study found on a PACS, to show the user. Its UID, date, description and patient can
    identify the patient: its ``repr`` (what a log or a traceback would show) holds none of them."""

    study_uid: str
    date: str
    modalities: tuple[str, ...]
    description: str
    instances: int | None
    patient_name: str = ""
    patient_id: str = ""

    def __repr__(self) -> str:
        return f"PacsStudy(modalities={self.modalities!r}, instances={self.instances!r})"


@dataclasses.dataclass(frozen=True, repr=False)
class PacsSeries:
    """One series of a study found on a PACS. Its UIDs and description can identify the patient:
    its ``repr`` holds none of them."""

    study_uid: str
    series_uid: str
    modality: str
    description: str
    number: int | None
    instances: int | None

    def __repr__(self) -> str:
        return f"PacsSeries(modality={self.modality!r}, instances={self.instances!r})"


@dataclasses.dataclass(frozen=True)
class PacsRetrieved:
    """One more instance retrieved into the project's cache (``done`` of ``total``)."""

    done: int
    total: int


PacsImportEvent = PacsRetrieved | ImportProgress | ImportFinished
InstanceKey = tuple[str, str, str]
"""An instance on a PACS: its study, series and SOP instance UIDs."""


def search_studies(
    server: PacsServer,
    *,
    patient: str | None = None,
    patient_id: str | None = None,
    date_range: str | None = None,
    modality: str | None = None,
    description: str | None = None,
    limit: int | None = None,
) -> list[PacsStudy]:
    """The studies matching every given filter (QIDO-RS), by date then UID.

    ``patient`` and ``description`` match anywhere in the name / description (case as the server
    treats it); ``patient_id`` matches exactly; ``date_range`` is ``YYYYMMDD`` or
    ``YYYYMMDD-YYYYMMDD`` (either end may be left open); ``modality`` is a code such as ``CT``.
    """
    filters: dict[str, Any] = {}
    if patient:
        filters["PatientName"] = f"*{patient}*"
    if patient_id:
        filters["PatientID"] = patient_id
    if date_range:
        filters["StudyDate"] = date_range.replace(" ", "")
    if modality:
        filters["ModalitiesInStudy"] = modality.upper()
    if description:
        filters["StudyDescription"] = f"*{description}*"
    client = _client(server)
    found = _call(
        server,
        lambda: client.search_for_studies(
            fields=list(_STUDY_FIELDS), search_filters=filters, limit=limit
        ),
    )
    studies = [_study(item) for item in found]
    studies = [study for study in studies if study.study_uid]
    logger.info("PACS search: %d studies", len(studies))
    return sorted(studies, key=lambda study: (study.date, study.study_uid))


def search_series(server: PacsServer, study_uid: str) -> list[PacsSeries]:
    """The series of a study (QIDO-RS), by series number then UID."""
    client = _client(server)
    found = _call(
        server,
        lambda: client.search_for_series(study_instance_uid=study_uid, fields=list(_SERIES_FIELDS)),
    )
    return sort_series([_series(study_uid, item) for item in found])


def sort_series(found: Sequence[PacsSeries]) -> list[PacsSeries]:
    """The series with a UID, by series number (unnumbered last) then UID."""
    kept = [series for series in found if series.series_uid]
    return sorted(kept, key=lambda s: (s.number is None, s.number or 0, s.series_uid))


def only_series(
    instances: Sequence[InstanceKey], series_uids: Collection[str] | None, where: str
) -> list[InstanceKey]:
    """The instances of the series asked for (all when None); a series with none left is told."""
    if series_uids is None:
        return list(instances)
    kept = [instance for instance in instances if instance[1] in series_uids]
    if {instance[1] for instance in kept} != set(series_uids):
        raise PacsError(
            f"a series asked for is not on the PACS at {where}: it may have been deleted; "
            "search again"
        )
    return kept


def iter_pacs_import(
    project: Project,
    server: PacsServer,
    study_uids: Sequence[str],
    *,
    series_uids: Collection[str] | None = None,
    thumbnails: bool = True,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[PacsImportEvent]:
    """Retrieve the studies' instances into the project's cache, then import them.

    ``series_uids``: only these series of the studies (all of them when None).

    Each series is fetched with one streamed request. Yields a :class:`PacsRetrieved` per
    instance, then the import's own events (an :class:`ImportProgress` per file, then
    :class:`ImportFinished`), the files in the same order as the search. ``cancel`` is asked between
    instances: cancelled while retrieving, the copies made so far are removed and the report is
    empty; cancelled while importing, the import keeps what it added (as a file import does).
    Raises :class:`PacsError` when the PACS fails; the project is then unchanged.
    """
    client = _client(server)
    wanted = list(dict.fromkeys(study_uids))
    instances: list[InstanceKey] = []
    for uid in wanted:
        instances += _instances_of(server, client, uid)
    instances = only_series(instances, series_uids, _where(server.url))
    cache = pacs_cache_dir(project)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)  # full headers: owner only
    kept: dict[InstanceKey, Path] = {}
    new_files: list[Path] = []
    stream = _retrieve_by_series(server, client, instances)
    try:
        for done in range(1, len(instances) + 1):
            if cancel is not None and cancel():
                logger.info(
                    "PACS import cancelled after %d of %d instances", done - 1, len(instances)
                )
                remove_copies(new_files)
                yield ImportFinished(ImportReport())
                return
            key, dataset = _call(server, next, stream)
            path, is_new = _keep(cache, dataset)
            kept[key] = path
            if is_new:
                new_files.append(path)
            yield PacsRetrieved(done, len(instances))
    except BaseException:
        remove_copies(new_files)
        raise
    finally:
        stream.close()
    files = [kept[key] for key in instances]
    logger.info("PACS import: %d instances retrieved (%d new)", len(files), len(new_files))
    yield from iter_import(project, files, thumbnails=thumbnails, cancel=cancel)


def pacs_import(
    project: Project,
    server: PacsServer,
    study_uids: Sequence[str],
    *,
    series_uids: Collection[str] | None = None,
    thumbnails: bool = True,
    cancel: Callable[[], bool] | None = None,
) -> ImportReport:
    """:func:`iter_pacs_import` to its end; the import's report."""
    report = ImportReport()
    for event in iter_pacs_import(
        project, server, study_uids, series_uids=series_uids, thumbnails=thumbnails, cancel=cancel
    ):
        if isinstance(event, ImportFinished):
            report = event.report
    return report


def _client(server: PacsServer) -> DICOMwebClient:
    from dicomweb_client.api import DICOMwebClient

    session = _session(server)
    client = DICOMwebClient(server.url.rstrip("/"), session=session, timeout=server.timeout_s)
    client.set_http_retry_params(retry=False)
    return client


def _session(server: PacsServer) -> requests.Session:
    import requests

    class WildcardSession(requests.Session):
        """Sends a query's ``*`` as it is: dicomweb-client encodes it as ``%2A``, which some
        servers (Orthanc) do not read as a wildcard. RFC 3986 allows ``*`` in a query."""

        def request(self, method: Any, url: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(url, str) and "?" in url:
                path, query = url.split("?", 1)
                url = f"{path}?{query.replace('%2A', '*')}"
            return super().request(method, url, *args, **kwargs)

    session = WildcardSession()
    session.verify = server.verify_tls
    session.trust_env = False  # no proxy or .netrc credentials from the environment
    if server.auth == "basic":
        session.auth = (server.user or "", server.secret or "")
    elif server.auth == "bearer":
        session.headers["Authorization"] = f"Bearer {server.secret}"
    return session


def _call(server: PacsServer, request: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``request(*args, **kwargs)``, its failures turned into one-line :class:`PacsError` messages."""
    import requests

    where = _where(server.url)
    try:
        return request(*args, **kwargs)
    except requests.exceptions.SSLError:
        raise PacsError(
            f"the PACS at {where} failed the TLS certificate check: check its address, or give "
            "the certificate authority's file"
        ) from None
    except requests.exceptions.Timeout:
        raise PacsError(_timeout_message(where, server.timeout_s)) from None
    except requests.exceptions.ConnectionError as err:
        if _stalled(err):
            raise PacsError(_timeout_message(where, server.timeout_s)) from None
        raise PacsError(
            f"cannot reach the PACS at {where}: is the server running, and the address right?"
        ) from None
    except requests.exceptions.HTTPError as err:
        status = err.response.status_code if err.response is not None else None
        raise PacsError(_http_message(where, status)) from None
    except requests.exceptions.RequestException as err:
        raise PacsError(f"the PACS at {where} could not be asked: {type(err).__name__}") from None


def _stalled(err: Exception) -> bool:
    """Whether a connection error is a streamed answer that stopped coming (requests reports a
    read timeout while streaming as a connection error)."""
    from urllib3.exceptions import ReadTimeoutError

    return any(isinstance(arg, ReadTimeoutError) for arg in err.args)


def _timeout_message(where: str, timeout_s: float) -> str:
    return (
        f"the PACS at {where} did not answer within {timeout_s:g} s: try again later, "
        "or allow it more time"
    )


def _http_message(where: str, status: int | None) -> str:
    if status in (401, 403):
        return (
            f"the PACS at {where} refused the credentials (HTTP {status}): check the user name "
            "and password, or the token"
        )
    if status == 404:
        return (
            f"a study asked for is not on the PACS at {where} (HTTP 404): it may have been "
            "deleted; search again"
        )
    return f"the PACS at {where} answered with an error (HTTP {status})"


def _where(url: str) -> str:
    """The server's scheme, host and port: what a message may show of its address."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _instances_of(server: PacsServer, client: DICOMwebClient, study_uid: str) -> list[InstanceKey]:
    found = _call(
        server,
        lambda: client.search_for_instances(
            study_instance_uid=study_uid, fields=["SeriesInstanceUID", "SOPInstanceUID"]
        ),
    )
    instances = []
    for item in found:
        series = _text(item, "0020000E")
        sop = _text(item, "00080018")
        if series and sop:
            instances.append((study_uid, series, sop))
    if not instances:
        raise PacsError(
            f"a study asked for is not on the PACS at {_where(server.url)} (no instances): it may "
            "have been deleted; search again"
        )
    return sorted(instances)


def _retrieve_by_series(
    server: PacsServer, client: DICOMwebClient, instances: Sequence[InstanceKey]
) -> Generator[tuple[InstanceKey, Any], None, None]:
    """Each instance asked for with its dataset, one streamed WADO-RS request per series.

    Instances the series gained since the search are passed over; one it lost is told as a
    deleted study. Requests are made only as the instances are asked for, so a caller that stops
    asking (cancel) stops the download.
    """
    for (study, series), asked in _by_series(instances).items():
        remaining = set(asked)
        for dataset in _call(server, client.iter_series, study, series, _AS_STORED):
            key = (study, series, str(dataset.get("SOPInstanceUID", "")))
            if key in remaining:
                remaining.discard(key)
                yield key, dataset
        if remaining:
            raise PacsError(
                f"a study asked for is not on the PACS at {_where(server.url)} (an instance is "
                "missing): it may have been deleted; search again"
            )


def _by_series(instances: Sequence[InstanceKey]) -> dict[tuple[str, str], list[InstanceKey]]:
    """The instances grouped by (study, series), in the order their series first appear."""
    grouped: dict[tuple[str, str], list[InstanceKey]] = {}
    for instance in instances:
        grouped.setdefault(instance[:2], []).append(instance)
    return grouped


def _keep(cache: Path, dataset: Any) -> tuple[Path, bool]:
    """The instance as a DICOM file in the cache, named by its content; whether it is new."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return keep_instance(cache, buffer.getvalue())


def keep_instance(cache: Path, data: bytes) -> tuple[Path, bool]:
    """A retrieved DICOM file's bytes kept in the cache, named by their sha256; whether new."""
    path = cache / f"{hashlib.sha256(data).hexdigest()}.dcm"
    if path.exists():
        return path, False
    atomic_write_bytes(path, data, "copy of a PACS instance")
    return path, True


def remove_copies(paths: Sequence[Path]) -> None:
    """Remove copies made by an import that did not finish (the project is left as it was)."""
    for path in paths:
        path.unlink(missing_ok=True)


def _study(item: dict[str, Any]) -> PacsStudy:
    count = _text(item, "00201208")
    return PacsStudy(
        study_uid=_text(item, "0020000D"),
        date=_text(item, "00080020"),
        modalities=tuple(_values(item, "00080061")),
        description=_text(item, "00081030"),
        instances=int(count) if count.isdigit() else None,
        patient_name=_text(item, "00100010"),
        patient_id=_text(item, "00100020"),
    )


def _series(study_uid: str, item: dict[str, Any]) -> PacsSeries:
    number, count = _text(item, "00200011"), _text(item, "00201209")
    return PacsSeries(
        study_uid=study_uid,
        series_uid=_text(item, "0020000E"),
        modality=_text(item, "00080060"),
        description=_text(item, "0008103E"),
        number=int(number) if number.lstrip("-").isdigit() else None,
        instances=int(count) if count.isdigit() else None,
    )


def _values(item: dict[str, Any], tag: str) -> list[str]:
    """A DICOM JSON attribute's values as text (a person name as its alphabetic form)."""
    values = item.get(tag, {}).get("Value", [])
    texts = []
    for value in values:
        if isinstance(value, dict):
            value = value.get("Alphabetic", "")
        texts.append(str(value))
    return texts


def _text(item: dict[str, Any], tag: str) -> str:
    values = _values(item, tag)
    return values[0] if values else ""
