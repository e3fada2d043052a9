"""Debian's Orthanc with its DICOMweb plugin as a local PACS for the benchmarks and the tests.

Started on free loopback ports with a folder of its own and basic authentication (never the Debian
package's service), stopped by :meth:`Orthanc.stop`. Without Orthanc, starting one raises
:class:`OrthancUnavailable`, naming ``bash packaging/dev.sh setup``, which installs it.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pydicom.data
import requests

from ept_studio.common.errors import EptStudioError
from ept_studio.data.packaged_dicom import pydicom_data_folder

USER = "ept-tester"
PASSWORD = "pacs-test-secret"
ORTHANC_PLACES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")
PLUGIN_PLACES = (Path("/usr/share/orthanc/plugins"), Path("/usr/lib/orthanc"))
PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
UPLOADS = (
    "CT_small.dcm",
    "MR_small.dcm",
    "US1_J2KR.dcm",
    "693_UNCI.dcm",
    "color-pl.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "emri_small.dcm",
)
START_SECONDS = 30
START_TRIES = 3


class OrthancUnavailable(EptStudioError):
    """The local Orthanc cannot be found, started or filled; the message says what to install."""


@dataclasses.dataclass
class Orthanc:
    """One running Orthanc: its REST root, its DICOMweb root, and the process."""

    http_port: int
    dicom_port: int
    storage: Path
    process: subprocess.Popen[bytes]
    ca_file: Path | None = None
    https: HttpsFront | None = None

    @property
    def url(self) -> str:
        if self.https is not None:
            return f"https://127.0.0.1:{self.https.port}"
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def rest(self, method: str, path: str, data: bytes | None = None) -> requests.Response:
        response = requests.request(
            method,
            f"{self.url}{path}",
            data=data,
            auth=(USER, PASSWORD),
            timeout=30,
            verify=str(self.ca_file) if self.ca_file is not None else True,
        )
        response.raise_for_status()
        return response

    def study_id(self, study_uid: str) -> str:
        """Orthanc's own id of the study with this StudyInstanceUID."""
        found = self.rest(
            "POST", "/tools/lookup", data=study_uid.encode()
        ).json()  # [{"ID": ..., "Type": "Study"}]
        return str(next(item["ID"] for item in found if item["Type"] == "Study"))

    def instance_count(self, study_uid: str) -> int:
        return len(self.rest("GET", f"/studies/{self.study_id(study_uid)}/instances").json())

    def study_uids(self) -> list[str]:
        studies = self.rest("GET", "/studies?expand").json()
        return sorted(study["MainDicomTags"]["StudyInstanceUID"] for study in studies)

    def stop(self) -> None:
        if self.https is not None:
            self.https.stop()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def find_orthanc(places: Sequence[str] = ORTHANC_PLACES) -> str:
    """The Orthanc executable: on the PATH, else the first of ``places`` that exists."""
    found = shutil.which("Orthanc") or next((p for p in places if Path(p).is_file()), None)
    if found is None:
        raise OrthancUnavailable(
            "Orthanc is not installed: the PACS tests and benchmark need it (Debian packages orthanc "
            "and orthanc-dicomweb); install them with `bash packaging/dev.sh setup` (as root)"
        )
    return found


def find_dicomweb_plugin(places: Sequence[Path] = PLUGIN_PLACES) -> Path:
    """Orthanc's DICOMweb plugin library in the first of ``places`` that holds it."""
    for folder in places:
        for name in (
            "libOrthancDicomWeb.so",
            *sorted(p.name for p in folder.glob("libOrthancDicomWeb.so*")),
        ):
            if (folder / name).is_file():
                return folder / name
    raise OrthancUnavailable(
        "Orthanc's DICOMweb plugin is not installed (Debian package orthanc-dicomweb); install it "
        "with `bash packaging/dev.sh setup` (as root)"
    )


def free_ports(count: int) -> list[int]:
    """``count`` loopback ports free now (all held at once, so they differ)."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def orthanc_config(
    storage: Path, http_port: int, dicom_port: int, plugin: Path
) -> dict[str, object]:
    """Orthanc's configuration: loopback only, basic authentication, DICOMweb and C-FIND / C-GET."""
    return {
        "Name": "ept-studio-tests",
        "StorageDirectory": str(storage),
        "IndexDirectory": str(storage),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "EPTTEST",
        "DicomServerEnabled": True,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }


@dataclasses.dataclass(frozen=True)
class TestCertificates:
    """A throw-away certificate authority and the server certificate it signed (PEM files)."""

    ca_file: Path
    server_certificate: Path
    server_key: Path
    server_key_and_certificate: Path


def tls_config(certificates: TestCertificates) -> dict[str, object]:
    """Orthanc's settings for DICOM TLS; callers need not show a certificate.

    Orthanc's own HTTPS (``SslEnabled``) is not used: Debian 12's Orthanc 1.10.1 (civetweb 1.15
    with OpenSSL 3) crashes after the first HTTPS handshake. :class:`HttpsFront` serves its REST
    and DICOMweb over HTTPS instead.
    """
    return {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(certificates.server_certificate),
        "DicomTlsPrivateKey": str(certificates.server_key),
        "DicomTlsTrustedCertificates": str(certificates.ca_file),
        "DicomTlsRemoteCertificateRequired": False,
    }


class HttpsFront:
    """HTTPS on a free loopback port in front of Orthanc's HTTP port, on threads of its own."""

    def __init__(self, certificates: TestCertificates, http_port: int) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certificates.server_certificate, certificates.server_key)
        self._context = context
        self._http_port = http_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def stop(self) -> None:
        self._listener.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _address = self._listener.accept()
            except OSError:
                return  # stopped
            threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            secure = self._context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()  # the caller did not trust the certificate, or hung up
            return
        with secure:
            try:
                orthanc = socket.create_connection(("127.0.0.1", self._http_port))
            except OSError:
                return  # Orthanc is not listening yet (or any more): the caller sees a hang-up
            with orthanc:
                pump = threading.Thread(target=_pump, args=(orthanc, secure), daemon=True)
                pump.start()
                _pump(secure, orthanc)
                pump.join(timeout=30)


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy bytes until ``source`` closes, then close ``target``'s sending side."""
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the other side went away: nothing more to copy


def write_test_certificates(folder: Path) -> TestCertificates:
    """A new certificate authority and a certificate for 127.0.0.1 / localhost, under ``folder``."""
    from cryptography.hazmat.primitives import serialization

    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _certificate("EPT Studio test CA", None)
    key, cert = _certificate("127.0.0.1", (ca_key, ca_cert))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    files = TestCertificates(
        folder / "ca.pem", folder / "server.crt", folder / "server.key", folder / "server.pem"
    )
    files.ca_file.write_bytes(ca_cert.public_bytes(pem))
    files.server_certificate.write_bytes(cert.public_bytes(pem))
    files.server_key.write_bytes(key_pem)
    files.server_key_and_certificate.write_bytes(key_pem + cert.public_bytes(pem))
    return files


def _certificate(common_name: str, issuer: tuple[Any, Any] | None) -> tuple[Any, Any]:
    """A key and its certificate: self-signed for the authority, else signed by ``issuer``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    signer_key, signer_cert = issuer if issuer is not None else (key, None)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(signer_cert.subject if signer_cert is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
    )
    is_ca = issuer is None
    builder = builder.add_extension(
        x509.BasicConstraints(ca=is_ca, path_length=None), critical=True
    )
    if is_ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
    else:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(signer_key, hashes.SHA256())


def start_orthanc(
    folder: Path,
    *,
    orthanc_places: Sequence[str] = ORTHANC_PLACES,
    plugin_places: Sequence[Path] = PLUGIN_PLACES,
    tls: bool = False,
) -> Orthanc:
    """An Orthanc on free loopback ports, storing under ``folder``, answering /system.

    ``tls``: HTTPS and DICOM TLS only, with a throw-away certificate authority made in ``folder``
    (its file is :attr:`Orthanc.ca_file`) and a certificate for 127.0.0.1 and localhost.
    """
    executable = find_orthanc(orthanc_places)
    plugin = find_dicomweb_plugin(plugin_places)
    certificates = write_test_certificates(folder / "tls") if tls else None
    last_log = ""
    for attempt in range(START_TRIES):
        server = _launch(executable, plugin, folder, attempt, certificates)
        if _answers(server):
            return server
        server.stop()
        log = folder / f"orthanc-{attempt}.log"
        last_log = log.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise OrthancUnavailable(
        f"Orthanc did not start on a free port ({START_TRIES} tries); its log:\n{last_log}"
    )


def _launch(
    executable: str,
    plugin: Path,
    folder: Path,
    attempt: int,
    certificates: TestCertificates | None = None,
) -> Orthanc:
    http_port, dicom_port = free_ports(2)
    storage = folder / f"storage-{attempt}"
    storage.mkdir(parents=True, exist_ok=True)
    config_file = folder / f"orthanc-{attempt}.json"
    config = orthanc_config(storage, http_port, dicom_port, plugin)
    if certificates is not None:
        config.update(tls_config(certificates))
    config_file.write_text(json.dumps(config), encoding="utf-8")
    with (folder / f"orthanc-{attempt}.log").open("wb") as out:
        process = subprocess.Popen(
            [executable, str(config_file)], stdout=out, stderr=subprocess.STDOUT
        )
    if certificates is None:
        return Orthanc(http_port, dicom_port, storage, process)
    https = HttpsFront(certificates, http_port)
    return Orthanc(http_port, dicom_port, storage, process, certificates.ca_file, https)


def _answers(server: Orthanc) -> bool:
    """Whether the server answers /system within :data:`START_SECONDS` (and has not exited)."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            server.rest("GET", "/system")
            return True
        except requests.RequestException:
            time.sleep(0.1)
    return False


def upload_files() -> list[Path]:
    """The real CT / MR / US files the PACS holds (pydicom's, pydicom-data's)."""
    data = pydicom_data_folder()
    if data is None:
        raise OrthancUnavailable(
            "pydicom-data (a dev dependency) is not installed: install it with "
            "`bash packaging/dev.sh setup`"
        )
    return [next(iter([*PYDICOM_FILES.rglob(name), *data.rglob(name)])) for name in UPLOADS]
