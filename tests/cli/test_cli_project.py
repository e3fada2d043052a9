"""The project commands end to end, in process, on the real offline backbone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ept_studio.cli import main
from ept_studio.core.prompt_file import read_prompt_file


def test_project_import_label_train_export(
    class_folders: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    project = tmp_path / "project"
    assert main(["project", "new", str(project)]) == 0
    assert (
        main(["project", "import", str(project), str(class_folders), "--folders-as-classes"]) == 0
    )
    assert "added 12" in capsys.readouterr().out
    assert main(["project", "role", str(project), "test", "1", "2", "7", "8"]) == 0
    capsys.readouterr()
    code = main(["train", "--project", str(project), "--method", "linear", "--epochs", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "accuracy" in out
    assert main(["project", "runs", str(project)]) == 0
    assert "finished" in capsys.readouterr().out
    exported = tmp_path / "exported.safetensors"
    assert main(["project", "export", str(project), "1", str(exported)]) == 0
    tensors, metadata = read_prompt_file(exported)
    assert metadata.class_names == ("fundus", "histology")
    assert set(tensors) == {"head.weight", "head.bias"}


def test_train_needs_a_folder_or_a_project(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--epochs", "1"]) == 2
    assert "--project" in capsys.readouterr().err


def test_export_key_and_import_key_carry_a_project_to_another_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    import pydicom

    from ept_studio.data.store import Project

    ct = Path(pydicom.__file__).parent / "data" / "test_files" / "CT_small.dcm"
    again = pydicom.dcmread(ct)
    again.InstanceNumber = 99  # the same patient, another image
    again.save_as(tmp_path / "IM0002", enforce_file_format=True)
    project, key_file = tmp_path / "project", tmp_path / "transfer" / "project.key"
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "machine-a"))
    assert main(["project", "new", str(project)]) == 0
    assert "patient key stays on this machine" in capsys.readouterr().err
    assert main(["project", "import", str(project), str(ct)]) == 0
    assert main(["project", "export-key", str(project), str(key_file)]) == 0
    written = capsys.readouterr()
    assert f"patient key       {key_file}" in written.out
    assert "keep this file apart from the project" in written.err
    with Project.open(project) as opened:
        (first,) = opened.images()

    shutil.copytree(project, tmp_path / "copy")
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "machine-b"))
    assert main(["project", "import", str(tmp_path / "copy"), str(tmp_path / "IM0002")]) == 0
    out = capsys.readouterr()
    assert "added 0" in out.out
    assert "1 DICOM image not imported" in out.err
    assert "import-key" in out.err
    assert main(["project", "import-key", str(tmp_path / "copy"), str(key_file)]) == 0
    assert "patient key imported" in capsys.readouterr().out
    assert main(["project", "import", str(tmp_path / "copy"), str(tmp_path / "IM0002")]) == 0
    assert "added 1" in capsys.readouterr().out
    with Project.open(tmp_path / "copy") as copy:
        assert {image.patient_hash for image in copy.images()} == {first.patient_hash}


def test_a_coverage_outside_a_half_to_one_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["train", "--project", "p", "--coverage", "1.2"])
    assert ended.value.code == 2
    assert "how often a prediction set should contain" in capsys.readouterr().err


def test_calibrating_on_test_images_needs_a_project(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.safetensors"
    code = main(["train", str(tmp_path), "--out", str(out), "--calibrate-on-test"])
    assert code != 0
    assert "--calibrate-on-test and --detail need --project" in capsys.readouterr().err
