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
