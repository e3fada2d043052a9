"""Debian's Orthanc with its DICOMweb plugin as a local PACS for the benchmarks and the tests.

Started on free loopback ports with a folder of its own and basic authentication (never the Debian
package's service), stopped by :meth:`Orthanc.stop`. Without Orthanc, starting one raises
:class:`OrthancUnavailable`, naming ``bash packaging/dev.sh setup``, which installs it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    def rest(self, method: str, path: str, data: bytes | None = None) -> requests.Response:
        response = requests.request(
            method, f"{self.url}{path}", data=data, auth=(USER, PASSWORD), timeout=30
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


def start_orthanc(
    folder: Path,
    *,
    orthanc_places: Sequence[str] = ORTHANC_PLACES,
    plugin_places: Sequence[Path] = PLUGIN_PLACES,
) -> Orthanc:
    """An Orthanc on free loopback ports, storing under ``folder``, answering /system."""
    executable = find_orthanc(orthanc_places)
    plugin = find_dicomweb_plugin(plugin_places)
    last_log = ""
    for attempt in range(START_TRIES):
        server = _launch(executable, plugin, folder, attempt)
        if _answers(server):
            return server
        server.stop()
        log = folder / f"orthanc-{attempt}.log"
        last_log = log.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise OrthancUnavailable(
        f"Orthanc did not start on a free port ({START_TRIES} tries); its log:\n{last_log}"
    )


def _launch(executable: str, plugin: Path, folder: Path, attempt: int) -> Orthanc:
    http_port, dicom_port = free_ports(2)
    storage = folder / f"storage-{attempt}"
    storage.mkdir(parents=True, exist_ok=True)
    config_file = folder / f"orthanc-{attempt}.json"
    config = orthanc_config(storage, http_port, dicom_port, plugin)
    config_file.write_text(json.dumps(config), encoding="utf-8")
    with (folder / f"orthanc-{attempt}.log").open("wb") as out:
        process = subprocess.Popen(
            [executable, str(config_file)], stdout=out, stderr=subprocess.STDOUT
        )
    return Orthanc(http_port, dicom_port, storage, process)


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
