"""Project services on real files: import (folders, DICOM, duplicates, moves, changes, broken
files), the training set, training a tiny ViT on a project, exporting its prompt file, the CLI."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pydicom
import pytest
from support import tiny_backbone

from ept_studio.common.errors import DatasetError, ProjectError, TrainingCancelled
from ept_studio.core.prompt_file import read_prompt_file
from ept_studio.data.store import ImageFilter, ImageStatus, Project, Role
from ept_studio.services.project import (
    ProjectDataReady,
    ProjectTrainingSaved,
    create_project,
    default_projects_parent,
    export_prompt_file,
    import_paths,
    is_project_folder,
    new_project_folder,
    train_on_project,
)
from ept_studio.services.project.importing import (
    ImportFinished,
    ImportProgress,
    iter_import,
    missing_or_changed,
)
from ept_studio.services.project.training import training_set

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
QUICK = {"epochs": 1, "batch_size": 8, "lr": 0.05, "device": "cpu"}


def _digests(folder: Path) -> dict[Path, str]:
    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def project(tmp_path: Path) -> Project:
    with Project.create(tmp_path / "project", locations_dir=tmp_path / "locations") as opened:
        yield opened  # type: ignore[misc]


def test_folders_as_classes_import_labels_and_thumbnails(
    project: Project, class_folders: Path
) -> None:
    before = _digests(class_folders)
    report = import_paths(project, [class_folders], folders_as_classes=True)
    assert len(report.added) == 12
    assert not report.skipped
    assert not report.duplicates
    assert report.labelled == {"fundus": 6, "histology": 6}
    assert [c.name for c in project.labels.classes()] == ["fundus", "histology"]
    assert [(c.train, c.test) for c in project.labels.counts_per_class()] == [(6, 0), (6, 0)]
    image = project.image(report.added[0][1])
    assert (image.kind, image.rows, image.columns, image.frames) == ("image", 160, 160, 1)
    assert image.path == class_folders / "fundus" / "img00.png"
    assert image.rendering == {"window": None, "policy": "file", "invert": None, "frame": 0}
    thumbnails = sorted(project.thumbnails_dir.glob("*.png"))
    assert len(thumbnails) == 12
    assert all(t.name.startswith(tuple(i.sha256 for i in project.images())) for t in thumbnails)
    # Importing again: nothing new, nothing re-labelled; the sources were never written.
    again = import_paths(project, [class_folders], folders_as_classes=True)
    assert (len(again.added), len(again.duplicates), again.labelled) == (0, 12, {})
    assert _digests(class_folders) == before


def test_moved_changed_missing_and_broken_files(project: Project, class_folders: Path) -> None:
    import_paths(project, [class_folders], folders_as_classes=True)
    moved_to = class_folders.parent / "elsewhere" / "moved.png"
    moved_to.parent.mkdir()
    original = class_folders / "fundus" / "img01.png"
    moved_id = project.images_at(original)[0].id
    shutil.move(original, moved_to)
    changed = class_folders / "histology" / "img02.png"
    changed_id = project.images_at(changed)[0].id
    changed.write_bytes((class_folders / "histology" / "img03.png").read_bytes()[:-12] + b"x" * 12)
    (class_folders / "histology" / "img04.png").unlink()
    broken = class_folders.parent / "broken"
    broken.mkdir()
    (broken / "empty.png").write_bytes(b"")
    (broken / "truncated.png").write_bytes(
        (class_folders / "fundus" / "img00.png").read_bytes()[:300]
    )
    (broken / "notes.txt").write_text("not an image")
    (broken / "fake.dcm").write_bytes(b"\x00" * 200)
    (broken / ".hidden.png").write_bytes(b"")
    other = Project.create(broken / "other-project", locations_dir=class_folders.parent / "loc2")
    import_paths(other, [class_folders / "fundus"])  # its thumbnails must not be imported
    other.close()

    report = import_paths(project, [class_folders, moved_to.parent, broken, broken / "gone.png"])
    assert report.relinked == [(moved_to, moved_id)]
    assert project.image(moved_id).path == moved_to
    assert report.changed == [(changed, changed_id)]
    assert project.image(changed_id).status is ImageStatus.CHANGED
    reasons = {path.name: reason for path, reason in report.skipped}
    assert reasons["empty.png"] == "file is empty"
    assert "truncated" in reasons["truncated.png"] or "damaged" in reasons["truncated.png"]
    assert reasons["notes.txt"] == reasons["fake.dcm"] == "not a DICOM, PNG, JPEG, TIFF or BMP file"
    assert reasons["gone.png"] == "file or folder not found"
    assert reasons["other-project"] == "an EPT Studio project (its images are caches)"
    assert ".hidden.png" not in reasons
    # The changed file's new content could not be decoded (it is damaged), so nothing was added.
    assert report.added == []
    assert len(report.duplicates) == 9
    counts = missing_or_changed(project)
    assert counts == {"ok": 10, "missing": 1, "changed": 1, "unreadable": 0}
    missing = project.images(ImageFilter(status=ImageStatus.MISSING))
    assert [i.path for i in missing] == [class_folders / "histology" / "img04.png"]


def test_dicom_is_found_by_content_and_identifiers_are_hashed(
    project: Project, tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", folder / "IM0001")
    shutil.copy(PYDICOM_FILES / "MR_small.dcm", folder / "IM0002.DCM")
    events = list(iter_import(project, [folder]))
    assert [e.done for e in events if isinstance(e, ImportProgress)] == [1, 2]
    finished = events[-1]
    assert isinstance(finished, ImportFinished)
    assert len(finished.report.added) == 2
    ct, mr = project.images()
    assert (ct.kind, ct.modality, ct.rows, ct.columns, ct.photometric) == (
        "dicom",
        "CT",
        128,
        128,
        "MONOCHROME2",
    )
    assert mr.modality == "MR"
    header = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm", stop_before_pixels=True)
    assert ct.patient_hash == project.hash_identifier(header.PatientID)
    assert ct.study_hash == project.hash_identifier(header.StudyInstanceUID)
    assert ct.series_hash == project.hash_identifier(header.SeriesInstanceUID)
    assert ct.series_hash not in (None, header.SeriesInstanceUID, ct.study_hash)
    assert ct.instance_number == int(header.InstanceNumber)
    assert ct.patient_hash not in (None, header.PatientID)
    assert ct.burned_in_annotation is None


def test_training_set_targets_roles_and_exclusions(tmp_path: Path, class_folders: Path) -> None:
    with Project.create(tmp_path / "multi", "multi", locations_dir=tmp_path / "loc") as multi:
        import_paths(multi, [class_folders], folders_as_classes=True, thumbnails=False)
        _fundus, histology = multi.labels.classes()
        first = multi.images()[0]
        multi.labels.set_label([first.id], histology.id)
        multi.labels.set_role([first.id], Role.TEST)
        (class_folders / "fundus" / "img05.png").unlink()
        missing_or_changed(multi)
        tset = training_set(multi)
    assert tset.classes == ("fundus", "histology")
    assert len(tset.items) == 11
    assert tset.excluded == {"missing": 1}
    by_id = {item.image_id: item for item in tset.items}
    assert by_id[first.id].target == (1, 1)
    assert by_id[first.id].role is Role.TEST
    assert sorted({item.target for item in tset.of_role(Role.TRAIN)}) == [(0, 1), (1, 0)]
    assert len(tset.of_role(Role.TRAIN)) == 10


def test_train_on_project_records_the_run_and_exports(
    project: Project, class_folders: Path, tmp_path: Path
) -> None:
    import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
    ids = [i.id for i in project.images()]
    project.labels.set_role(ids[4:6] + ids[10:12], Role.TEST)
    folder = project.folder
    events = list(
        train_on_project(
            folder,
            {"method": "ept", "length": 4},
            QUICK,
            seed=3,
            backbone=tiny_backbone(),
            locations_dir=tmp_path / "locations",
        )
    )
    ready, saved = events[0], events[-1]
    assert isinstance(ready, ProjectDataReady)
    assert isinstance(saved, ProjectTrainingSaved)
    assert ready.train_counts == {"fundus": 4, "histology": 4}
    assert ready.test_counts == {"fundus": 2, "histology": 2}
    assert saved.prompt_file == folder / "runs" / str(saved.run_id) / "prompt.safetensors"
    assert set(saved.metrics) >= {"accuracy", "macro_auc"}
    _, metadata = read_prompt_file(saved.prompt_file)
    assert metadata.class_names == ("fundus", "histology")
    assert metadata.rendering == {"window": None, "policy": "file", "invert": None, "frame": 0}
    assert metadata.seed == 3
    run = project.run(saved.run_id)
    assert run.status == "finished"
    assert run.seed == 3
    assert (run.device or "").lower().startswith("cpu")
    assert run.artifacts["prompt_sha256"] == saved.prompt_sha256
    assert run.metrics == saved.metrics
    assert run.config["classes"] == ["fundus", "histology"]
    exported = export_prompt_file(
        folder,
        saved.run_id,
        tmp_path / "out" / "chest.safetensors",
        locations_dir=tmp_path / "locations",
    )
    assert hashlib.sha256(exported.read_bytes()).hexdigest() == saved.prompt_sha256
    assert [(e.kind, e.file_name) for e in project.exports(saved.run_id)] == [
        ("prompt", "prompt.safetensors")
    ]


def test_train_on_project_refuses_and_cancels_clearly(
    project: Project, class_folders: Path, tmp_path: Path
) -> None:
    import_paths(project, [class_folders / "fundus"], thumbnails=False)
    project.labels.add_class("fundus")
    project.labels.add_class("histology")
    project.labels.set_label([i.id for i in project.images()], project.labels.classes()[0].id)
    options = {"backbone": tiny_backbone(), "locations_dir": tmp_path / "locations"}
    with pytest.raises(DatasetError, match="class 'histology' has no training image"):
        list(train_on_project(project.folder, {"method": "linear"}, QUICK, **options))
    assert project.runs() == []
    import_paths(project, [class_folders], folders_as_classes=True, thumbnails=False)
    with pytest.raises(TrainingCancelled):
        list(
            train_on_project(
                project.folder, {"method": "linear"}, QUICK, cancel=lambda: True, **options
            )
        )
    assert [r.status for r in project.runs()] == ["cancelled"]


def test_project_cli_commands(
    class_folders: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse
    import io

    from ept_studio.cli import project as project_cli
    from ept_studio.cli.console import Console

    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    parser = argparse.ArgumentParser()
    project_cli.add_commands(parser.add_subparsers(dest="command"))
    folder = str(tmp_path / "cli-project")

    def run(*argv: str) -> str:
        out, err = io.StringIO(), io.StringIO()
        args = parser.parse_args(["project", *argv])
        args.handler(args, Console(out, err))
        return out.getvalue()

    assert "created a single-label project" in run("new", folder)
    imported = run("import", folder, str(class_folders), "--folders-as-classes")
    assert "added 12, duplicates 0" in imported
    assert run("classes", folder).splitlines() == [
        "  0 fundus  6 train, 0 test",
        "  1 histology  6 train, 0 test",
    ]
    assert run("label", folder, "1", "2", "--class", "histology") == "2 images changed\n"
    assert run("role", folder, "test", "1", "7") == "2 images moved to test\n"
    assert run("undo", folder) == "undone: 2 images\n"
    assert run("redo", folder) == "redone: 2 images\n"
    lines = run("list", folder).splitlines()
    assert len(lines) == 12
    assert lines[0].split()[:5] == ["1", "ok", "image", "160x160", "histology:test"]
    (class_folders / "fundus" / "img03.png").unlink()
    assert run("check", folder) == "11 ok, 1 missing, 0 changed, 0 unreadable\n"
    assert len(run("list", folder, "--status", "missing").splitlines()) == 1
    assert run("runs", folder) == ""
    assert list((tmp_path / "user-data" / "locations").glob("*.db"))


def test_a_changed_file_is_flagged_and_its_old_content_relinked_when_found(
    project: Project, class_folders: Path
) -> None:
    import numpy as np
    from PIL import Image

    import_paths(project, [class_folders / "fundus"], thumbnails=False)
    path = class_folders / "fundus" / "img00.png"
    old_id = project.images_at(path)[0].id
    original = path.read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    report = import_paths(project, [path], thumbnails=False)
    assert report.changed == [(path, old_id)]
    assert len(report.added) == 1
    new_id = report.added[0][1]
    assert (project.image(new_id).rows, project.image(new_id).columns) == (40, 50)
    assert project.image(old_id).status is ImageStatus.CHANGED
    restored = class_folders / "restored.png"
    restored.write_bytes(original)
    again = import_paths(project, [class_folders], thumbnails=False)
    assert again.relinked == [(restored, old_id)]
    assert again.changed == []
    assert project.image(old_id).status is ImageStatus.OK
    assert project.image(old_id).path == restored


def test_a_project_is_never_made_in_a_folder_of_images(class_folders: Path, tmp_path: Path) -> None:
    before = sorted(p.relative_to(class_folders) for p in class_folders.rglob("*"))
    with pytest.raises(ProjectError, match=r"is not empty \(it holds 2 files or folders\)"):
        create_project(class_folders, locations_dir=tmp_path / "loc")
    with pytest.raises(ProjectError, match="not empty"):
        create_project(class_folders / "fundus", locations_dir=tmp_path / "loc")
    after = sorted(p.relative_to(class_folders) for p in class_folders.rglob("*"))
    assert after == before  # no project.db, cache/ or runs/ written among the images
    assert not is_project_folder(class_folders / "fundus")


def test_a_new_project_next_to_the_images_imports_them(class_folders: Path, tmp_path: Path) -> None:
    folder = new_project_folder(tmp_path, "  Chest study 1 ")
    assert folder == tmp_path.absolute() / "Chest study 1"
    assert not folder.exists()  # only named; create_project makes it
    with create_project(folder, locations_dir=tmp_path / "loc") as project:
        report = import_paths(project, [class_folders], thumbnails=False)
        assert (len(report.added), len(report.skipped)) == (12, 0)
    assert is_project_folder(folder)
    with pytest.raises(ProjectError, match="already holds a project"):
        new_project_folder(tmp_path, "Chest study 1")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_bytes(b"")
    create_project(tmp_path / "empty", locations_dir=tmp_path / "loc").close()  # empty is fine


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "Give the project a name"),
        ("   ", "Give the project a name"),
        ("a/b", "cannot hold /"),
        ("why?", "cannot hold \\?"),
        ("..", "cannot end with a dot"),
        ("x" * 101, "at most 100 characters"),
    ],
)
def test_project_names_that_cannot_be_folders_are_refused(
    tmp_path: Path, name: str, reason: str
) -> None:
    with pytest.raises(ProjectError, match=reason):
        new_project_folder(tmp_path, name)


def test_a_new_project_refuses_an_occupied_name(class_folders: Path) -> None:
    with pytest.raises(ProjectError, match="fundus is not empty"):
        new_project_folder(class_folders, "fundus")
    assert default_projects_parent() == Path.home() / "EPT Studio projects"


def _same_patient_again(source: Path, target: Path) -> Path:
    """Another image of the patient in ``source`` (same PatientID, different content)."""
    dataset = pydicom.dcmread(source)
    dataset.InstanceNumber = 99
    dataset.save_as(target, enforce_file_format=True)
    return target


def test_the_patient_key_carried_to_another_machine_keeps_a_patient_together(
    tmp_path: Path,
) -> None:
    from ept_studio.services.project import export_project_key, import_project_key
    from ept_studio.services.project.readiness import Severity, check_readiness

    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(PYDICOM_FILES / "CT_small.dcm", scans / "IM0001")
    later = _same_patient_again(PYDICOM_FILES / "CT_small.dcm", tmp_path / "IM0002")
    here, there = tmp_path / "machine-a", tmp_path / "machine-b"
    with create_project(tmp_path / "project", locations_dir=here) as original:
        import_paths(original, [scans], thumbnails=False)
        (first,) = original.images()
        assert first.patient_hash is not None
        key_file = export_project_key(original, tmp_path / "transfer" / "project.key")
    shutil.copytree(tmp_path / "project", tmp_path / "copy")
    with pytest.raises(ProjectError, match="outside the project folder"):
        export_project_key(original, tmp_path / "project" / "project.key")

    with Project.open(tmp_path / "copy", locations_dir=there) as copy:
        # Without the key: nothing new is hashed, the import says why, so does the checklist.
        report = import_paths(copy, [later], thumbnails=False)
        assert report.added == []
        assert [path for path, _ in report.skipped] == [later]
        assert "patient key" in report.skipped[0][1]
        found = {item.key: item for item in check_readiness(copy).items}
        assert found["patient-key"].severity is Severity.WARNING
        assert "import-key" in found["patient-key"].text

        import_project_key(copy, key_file)
        assert "patient-key" not in {item.key for item in check_readiness(copy).items}
        report = import_paths(copy, [later], thumbnails=False)
        assert len(report.added) == 1
        grouped = {image.patient_hash for image in copy.images()}
        assert grouped == {first.patient_hash}
    with Project.open(tmp_path / "copy", locations_dir=there) as reopened:
        assert reopened.has_key  # kept on machine B from now on
