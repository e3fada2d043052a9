"""Debian's Orthanc with its DICOMweb plugin as a test PACS: started on free loopback ports with a
folder of its own and basic authentication (never the Debian package's service), stopped by
:meth:`Orthanc.stop`. Without Orthanc, starting one fails the test, naming
``bash packaging/dev.sh setup``, which installs it."""

from __future__ import annotations

import dataclasses
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pydicom.data
import pytest
import requests

from ept_studio.data.packaged_dicom import pydicom_data_folder

USER = "ept-tester"
PASSWORD = "pacs-test-secret"
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


ORTHANC_PLACES = ("/usr/sbin/Orthanc", "/usr/bin/Orthanc")


def _executable() -> str:
    found = shutil.which("Orthanc") or next((p for p in ORTHANC_PLACES if Path(p).is_file()), None)
    if found is None:
        pytest.fail(
            "Orthanc is not installed: the PACS tests need it (Debian packages orthanc and "
            "orthanc-dicomweb); install them with `bash packaging/dev.sh setup` (as root)",
            pytrace=False,
        )
    return found


def _plugin() -> Path:
    for folder in PLUGIN_PLACES:
        for name in (
            "libOrthancDicomWeb.so",
            *sorted(p.name for p in folder.glob("libOrthancDicomWeb.so*")),
        ):
            if (folder / name).is_file():
                return folder / name
    pytest.fail(
        "Orthanc's DICOMweb plugin is not installed (Debian package orthanc-dicomweb); install it "
        "with `bash packaging/dev.sh setup` (as root)",
        pytrace=False,
    )


def _free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def start_orthanc(folder: Path) -> Orthanc:
    """An Orthanc on free loopback ports, storing under ``folder``, answering /system."""
    executable, plugin = _executable(), _plugin()
    last_log = ""
    for attempt in range(3):
        http_port, dicom_port = _free_ports(2)
        storage = folder / f"storage-{attempt}"
        storage.mkdir(parents=True, exist_ok=True)
        config = {
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
        config_file = folder / f"orthanc-{attempt}.json"
        config_file.write_text(json.dumps(config), encoding="utf-8")
        log = folder / f"orthanc-{attempt}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [executable, str(config_file)], stdout=out, stderr=subprocess.STDOUT
            )
        server = Orthanc(http_port, dicom_port, storage, process)
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline and process.poll() is None:
            try:
                server.rest("GET", "/system")
                return server
            except requests.RequestException:
                time.sleep(0.1)
        server.stop()
        last_log = log.read_text(encoding="utf-8", errors="replace")[-2000:]
    pytest.fail(f"Orthanc did not start on a free port (3 tries); its log:\n{last_log}")


def upload_files() -> list[Path]:
    """The real CT / MR / US files the PACS holds (pydicom's, pydicom-data's)."""
    data = pydicom_data_folder()
    assert data is not None, "pydicom-data (a dev dependency) is not installed"
    return [next(iter([*PYDICOM_FILES.rglob(name), *data.rglob(name)])) for name in UPLOADS]
