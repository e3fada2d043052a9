"""``ept-studio project search-pacs`` and ``import-pacs`` end to end against the test Orthanc."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest
from orthanc_support import PASSWORD, USER, Orthanc
from phi_support import MARK

from ept_studio.cli import main
from ept_studio.services.project import Project, image_count


@pytest.fixture
def project_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    folder = tmp_path / "project"
    assert main(["project", "new", str(folder)]) == 0
    return folder


def test_search_then_import_from_the_command_line(
    orthanc: Orthanc,
    project_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PACS_PASSWORD", PASSWORD)
    server = ["--url", orthanc.dicomweb_url, "--user", USER, "--password-env", "PACS_PASSWORD"]
    capsys.readouterr()
    folder = str(project_folder)
    assert main(["project", "search-pacs", folder, *server, "--modality", "US"]) == 0
    captured = capsys.readouterr()
    rows = [line.split("\t") for line in captured.out.splitlines()]
    assert len(rows) == 3
    assert all(row[2] == "US" for row in rows)
    assert "3 studies" in captured.err
    uids = [row[0] for row in rows[:2]]
    held = sum(orthanc.instance_count(uid) for uid in uids)
    assert main(["project", "import-pacs", folder, *server, *uids]) == 0
    assert f"added {held}, duplicates 0" in capsys.readouterr().out
    with Project.open(project_folder) as project:
        assert image_count(project) == held
    prompted = []

    def answer(prompt: str) -> str:
        prompted.append(prompt)
        return PASSWORD

    monkeypatch.setattr(getpass, "getpass", answer)
    by_prompt = ["--url", orthanc.dicomweb_url, "--user", USER]
    assert main(["project", "import-pacs", folder, *by_prompt, *uids]) == 0
    assert f"added 0, duplicates {held}" in capsys.readouterr().out
    assert len(prompted) == 1
    assert PASSWORD not in prompted[0]


def test_a_wrong_password_exits_with_one_line(
    orthanc: Orthanc,
    project_folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PACS_PASSWORD", "wrong")
    server = ["--url", orthanc.dicomweb_url, "--user", USER, "--password-env", "PACS_PASSWORD"]
    capsys.readouterr()
    code = main(["project", "import-pacs", str(project_folder), *server, "1.2.3"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the PACS at http://127.0.0.1:")
    assert "HTTP 401" in err
    assert len(err.splitlines()) == 1
    with Project.open(project_folder) as project:
        assert image_count(project) == 0


def test_an_unset_password_variable_is_told(
    project_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("NO_SUCH_PACS_PASSWORD", raising=False)
    args = ["--url", "http://127.0.0.1:9/dicom-web", "--user", USER]
    args += ["--password-env", "NO_SUCH_PACS_PASSWORD"]
    assert main(["project", "search-pacs", str(project_folder), *args]) == 2
    assert "NO_SUCH_PACS_PASSWORD is not set" in capsys.readouterr().err


def test_search_then_import_by_dimse_from_the_command_line(
    orthanc: Orthanc, project_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["--dimse", f"EPTTEST@127.0.0.1:{orthanc.dicom_port}", "--calling-aet", "EPTCLI"]
    capsys.readouterr()
    folder = str(project_folder)
    assert main(["project", "search-pacs", folder, *server, "--modality", "MR"]) == 0
    captured = capsys.readouterr()
    rows = [line.split("\t") for line in captured.out.splitlines()]
    assert len(rows) == 4  # two MR studies, two marked CT / MR studies
    assert all("MR" in row[2].split("/") for row in rows)
    assert "4 studies" in captured.err
    uids = [row[0] for row in rows if row[2] == "MR"]
    assert len(uids) == 2
    held = sum(orthanc.instance_count(uid) for uid in uids)
    assert main(["project", "import-pacs", folder, *server, *uids]) == 0
    assert f"added {held}, duplicates 0" in capsys.readouterr().out
    with Project.open(project_folder) as project:
        assert image_count(project) == held


def test_a_dimse_pacs_takes_no_password_and_a_bad_address_is_told(
    project_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = str(project_folder)
    args = ["--dimse", "ORTHANC@127.0.0.1:9", "--user", USER]
    assert main(["project", "search-pacs", folder, *args]) == 2
    assert "a DIMSE PACS takes no user, password or token" in capsys.readouterr().err
    assert main(["project", "search-pacs", folder, "--dimse", "127.0.0.1:104"]) == 2
    assert "not a DIMSE address: write it as AE_TITLE@host:port" in capsys.readouterr().err


def test_a_studys_series_are_listed_and_one_is_imported(
    orthanc: Orthanc, project_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["--dimse", f"EPTTEST@127.0.0.1:{orthanc.dicom_port}"]
    folder = str(project_folder)
    capsys.readouterr()
    assert main(["project", "search-pacs", folder, *server, "--patient", MARK]) == 0
    study_uid = capsys.readouterr().out.splitlines()[0].split("\t")[0]
    assert main(["project", "search-pacs", folder, *server, "--series-of", study_uid]) == 0
    captured = capsys.readouterr()
    rows = [line.split("\t") for line in captured.out.splitlines()]
    assert [row[3] for row in rows] == ["1 instances"] * 4
    assert "4 series" in captured.err
    picked = ["--series", rows[1][0], "--series", rows[3][0]]
    assert main(["project", "import-pacs", folder, *server, study_uid, *picked]) == 0
    assert "added 2, duplicates 0" in capsys.readouterr().out
    with Project.open(project_folder) as project:
        assert image_count(project) == 2
