"""Removing images deletes the PACS copies no image left in the project uses, and nothing else:
not the copies other images use, not a copy no removed image pointed at, not a user's file."""

from __future__ import annotations

from pathlib import Path

from labelled_projects import write_series

from ept_studio.data.store import Project
from ept_studio.services.project import import_paths, pacs_cache_dir, remove_from_project
from ept_studio.services.project.pacs import keep_instance


def _pacs_copies(project: Project, originals: list[Path]) -> list[Path]:
    """Copies of ``originals`` kept and imported as the PACS import keeps and imports them."""
    cache = pacs_cache_dir(project)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    copies = [keep_instance(cache, path.read_bytes())[0] for path in originals]
    import_paths(project, copies, thumbnails=False)
    return copies


def test_removing_images_deletes_exactly_their_pacs_copies(tmp_path: Path) -> None:
    retrieved = write_series(tmp_path / "retrieved", 4, seed=1)
    own = write_series(tmp_path / "own", 2, patient="P2", seed=2)
    with Project.create(tmp_path / "project", locations_dir=tmp_path / "locations") as project:
        copies = _pacs_copies(project, retrieved)
        import_paths(project, own, thumbnails=False)
        by_path = {image.path: image.id for image in project.images()}
        assert len(by_path) == 6
        stray = keep_instance(pacs_cache_dir(project), b"not yet imported")[0]
        gone = [by_path[copies[0]], by_path[copies[2]], by_path[own[0]]]
        deleted = remove_from_project(project, gone)
        assert deleted == tuple(sorted([copies[0], copies[2]]))
        assert sorted(p.name for p in pacs_cache_dir(project).iterdir()) == sorted(
            [copies[1].name, copies[3].name, stray.name]
        )
        assert all(path.is_file() for path in retrieved + own)
        assert sorted(image.id for image in project.images()) == sorted(
            [by_path[copies[1]], by_path[copies[3]], by_path[own[1]]]
        )
        assert remove_from_project(project, [by_path[own[1]]]) == ()
        assert own[1].is_file()


def test_a_copy_outside_the_projects_pacs_folder_is_never_deleted(tmp_path: Path) -> None:
    """A file named like a copy but in a user's folder (or another project's) is the user's."""
    with Project.create(tmp_path / "project", locations_dir=tmp_path / "locations") as project:
        elsewhere = tmp_path / "user-folder"
        elsewhere.mkdir()
        data = write_series(tmp_path / "retrieved", 1)[0].read_bytes()
        lookalike = keep_instance(elsewhere, data)[0]
        import_paths(project, [lookalike], thumbnails=False)
        (image,) = project.images()
        assert remove_from_project(project, [image.id]) == ()
        assert lookalike.is_file()
        assert project.images() == []
