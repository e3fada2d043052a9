"""``train --project`` refuses a series with slices in train and in test, before any work: the
checklist's rule, told by the training service itself, with no run recorded."""

from __future__ import annotations

from pathlib import Path

import pytest
from series_runs import loose_ids, series_project, slice_ids

from ept_studio.cli import main
from ept_studio.data.store import Project, Role


def _straddling_project(tmp_path: Path) -> tuple[list[int], list[int]]:
    """A 4-slice series labelled Brain with its last two slices in test, two PNGs labelled Bone
    (one in test); the CLI's location index in ``tmp_path / "user-data"``."""
    with series_project(tmp_path, tmp_path / "user-data" / "locations") as project:
        slices, loose = slice_ids(project), loose_ids(project)
        brain = project.labels.add_class("Brain").id
        bone = project.labels.add_class("Bone").id
        project.labels.set_label(slices, brain)
        project.labels.set_label(loose, bone)
        project.labels.set_role([slices[2], slices[3], loose[1]], Role.TEST)
    return slices, loose


def test_train_refuses_a_series_in_train_and_in_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    slices, _ = _straddling_project(tmp_path)
    folder = tmp_path / "project"
    code = main(["train", "--project", str(folder), "--method", "linear", "--epochs", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "1 series has slices in both train and test" in err
    assert "Split for me" in err
    assert f"`ept-studio project role {folder} train {slices[2]} {slices[3]}`" in err
    with Project.open(folder, locations_dir=tmp_path / "user-data" / "locations") as project:
        assert project.runs() == []


def test_train_goes_ahead_once_the_series_is_on_one_side(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    slices, _ = _straddling_project(tmp_path)
    folder = str(tmp_path / "project")
    assert main(["project", "role", folder, "train", str(slices[2]), str(slices[3])]) == 0
    capsys.readouterr()
    code = main(["train", "--project", folder, "--method", "linear", "--epochs", "1"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "class Brain: 4 train, 0 test images" in err
    assert "class Bone: 1 train, 1 test images" in err
