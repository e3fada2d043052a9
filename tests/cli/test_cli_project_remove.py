"""``ept-studio project remove``: images (by the ids ``project list`` shows) taken out of a real
project, their labels with them; a PACS copy no image uses is deleted, the user's files never."""

from __future__ import annotations

from pathlib import Path

import pytest
from labelled_projects import labelled_project, write_series

from ept_studio.cli import main
from ept_studio.services.project import Project, import_paths, pacs_cache_dir
from ept_studio.services.project.pacs import keep_instance


@pytest.fixture
def project_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Path]]:
    """Four labelled images of the user's and two PACS copies (the CLI's location index is the
    builder's: ``EPT_STUDIO_DATA``/locations); the copies made."""
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path))
    with labelled_project(tmp_path, {"CT": ["P1", "P2"], "Photo": [None, None]}) as project:
        cache = pacs_cache_dir(project)
        cache.mkdir(mode=0o700, parents=True)
        retrieved = write_series(tmp_path / "retrieved", 2, patient="P3")
        copies = [keep_instance(cache, path.read_bytes())[0] for path in retrieved]
        import_paths(project, copies, thumbnails=False)
        assert len(project.images()) == 6
    return tmp_path / "project", copies


def _ids_by_path(folder: Path) -> dict[Path, int]:
    with Project.open(folder) as project:
        return {image.path: image.id for image in project.images() if image.path}


def _labelled(folder: Path) -> set[int]:
    with Project.open(folder) as project:
        return {label.image_id for label in project.labels.all()}


def test_remove_takes_the_images_and_their_labels_out_and_deletes_only_unused_pacs_copies(
    project_folder: tuple[Path, list[Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder, copies = project_folder
    ids = _ids_by_path(folder)
    own_ct = tmp_path / "data" / "CT" / "img00.dcm"
    photo = tmp_path / "data" / "Photo" / "img01.png"
    assert {ids[own_ct], ids[photo]} <= _labelled(folder)
    assert main(["project", "list", str(folder)]) == 0
    listed = capsys.readouterr().out
    assert all(f"{ids[path]:>6} ok" in listed for path in (own_ct, photo, copies[0]))

    gone = [ids[own_ct], ids[photo], ids[copies[0]]]
    assert main(["project", "remove", str(folder), *map(str, gone)]) == 0
    out = capsys.readouterr().out
    assert "3 images taken out of the project, with their labels" in out
    assert "1 PACS copy deleted" in out
    assert "the files you imported from your disk are not deleted" in out
    assert own_ct.is_file()
    assert photo.is_file()
    assert not copies[0].exists()
    assert copies[1].is_file()
    left = _ids_by_path(folder)
    assert sorted(left.values()) == sorted(set(ids.values()) - set(gone))
    assert _labelled(folder) == {ids[tmp_path / "data" / "CT" / "img01.dcm"]} | {
        ids[tmp_path / "data" / "Photo" / "img00.png"]
    }
    assert main(["project", "list", str(folder)]) == 0
    listed = capsys.readouterr().out
    assert len(listed.splitlines()) == 3
    assert str(own_ct) not in listed
    assert str(copies[1]) in listed


def test_an_unknown_id_is_refused_and_nothing_is_taken_out(
    project_folder: tuple[Path, list[Path]], capsys: pytest.CaptureFixture[str]
) -> None:
    folder, copies = project_folder
    before = _ids_by_path(folder)
    known = before[copies[0]]
    assert main(["project", "remove", str(folder), str(known), "998", "999"]) == 2
    err = capsys.readouterr().err
    assert "error: 2 images are not in this project (id 998, 999): nothing was taken out" in err
    assert _ids_by_path(folder) == before
    assert copies[0].is_file()
