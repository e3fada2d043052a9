"""No patient identifier leaves the source files: a full import -> label -> train -> export workflow
on DICOMs whose every PHI tag, file name and folder name holds a marker, then a byte search of every
file the project wrote, the exported prompt file and the captured logs and warnings."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
from phi_support import (
    BIRTH_DATE,
    MARK,
    MARKERS,
    STUDY_DATE,
    UID_ROOT,
    every_file,
    leaks,
    write_phi_folder,
)
from support import tiny_backbone

from ept_studio.data.project_key import KeyStore
from ept_studio.data.store import Project, Role
from ept_studio.services.project import (
    ProjectTrainingSaved,
    export_prompt_file,
    import_paths,
    train_on_project,
)


def test_no_marker_reaches_the_project_the_exports_or_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sources = write_phi_folder(tmp_path / f"{MARK}_export")
    in_sources = b"".join(p.read_bytes() for p in every_file(sources))
    assert all(m.encode() in in_sources for m in (MARK, UID_ROOT, BIRTH_DATE, STUDY_DATE))
    folder, locations = tmp_path / "project", tmp_path / "locations"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Project.create(folder, locations_dir=locations) as project:
            report = import_paths(project, [sources], folders_as_classes=True)
            assert len(report.added) == 8
            assert not report.skipped
            assert report.labelled == {"ct": 4, "mr": 4}
            ids = [image.id for image in project.images()]
            project.labels.set_role([ids[0], ids[4]], Role.TEST)
            project.labels.set_label([ids[1]], project.labels.classes()[1].id)
            project.labels.undo()
            events = list(
                train_on_project(
                    folder,
                    {"method": "ept", "length": 4},
                    {"epochs": 1, "batch_size": 3, "device": "cpu"},
                    backbone=tiny_backbone(),
                    locations_dir=locations,
                )
            )
            saved = events[-1]
            assert isinstance(saved, ProjectTrainingSaved)
            exported = export_prompt_file(
                folder,
                saved.run_id,
                folder / "exports" / "model.safetensors",
                locations_dir=locations,
            )
            outside = export_prompt_file(
                folder,
                saved.run_id,
                tmp_path / "shared" / "model.safetensors",
                locations_dir=locations,
            )
            # While the project is open its WAL holds the latest pages: search it too.
            written = every_file(folder)
            assert {p.name for p in written} >= {"project.db", "project.db-wal", "run.json"}
            assert len(list(project.thumbnails_dir.glob("*.png"))) == 8
            assert leaks(written) == []
            hashes = {image.patient_hash for image in project.images()}
            assert len(hashes) == 2
            assert None not in hashes
    assert leaks([*every_file(folder), exported, outside]) == []
    # The patient key would confirm a guessed PatientID against the stored hashes: it stays in the
    # user data folder, in nothing else the app wrote (project folder, exports, logs).
    key = KeyStore(locations).load(project.project_id)
    assert key is not None
    key_bytes = (key.secret.encode(), bytes.fromhex(key.secret))
    written_anywhere = b"".join(p.read_bytes() for p in [*every_file(folder), exported, outside])
    assert not any(k in written_anywhere for k in key_bytes)
    assert key.secret not in caplog.text
    assert all(key.secret not in str(w.message) for w in caught)
    assert all(m not in caplog.text for m in MARKERS)
    assert all(m not in str(r.args) for r in caplog.records for m in MARKERS)
    assert all(m not in str(w.message) for w in caught for m in MARKERS)
    # Paths are needed to find the sources again: they live only in the location index, kept
    # outside the project folder (on this machine), never inside it; the key lies beside it.
    assert [p.suffix for p in every_file(locations)] == [".db", ".key"]
    assert leaks(every_file(locations)) != []


def test_a_typed_export_name_is_not_kept_in_the_project(
    tmp_path: Path, class_folders: Path
) -> None:
    from labelled_projects import tiny_trained_project

    from ept_studio.services.project.reports import export_predictions_csv, write_model_card
    from ept_studio.services.project.run_actions import export_run_onnx

    folder, locations = tmp_path / "project", tmp_path / "locations"
    run_id = tiny_trained_project(folder, class_folders, [0, 6], locations)
    out = tmp_path / "exports"
    with Project.open(folder, locations_dir=locations) as project:
        export_predictions_csv(project, run_id, out / "Patient X.csv")
        write_model_card(project, run_id, out / "Patient X card.md")
    export_prompt_file(folder, run_id, out / "Patient X.safetensors", locations_dir=locations)
    events = list(
        export_run_onnx(
            folder,
            run_id,
            out / "Patient X.onnx",
            backbone=tiny_backbone(),
            locations_dir=locations,
        )
    )
    assert events
    with Project.open(folder, locations_dir=locations) as project:
        recorded = [(e.kind, e.file_name) for e in project.exports(run_id)]
        assert recorded == [
            ("predictions-csv", "predictions.csv"),
            ("model-card", "model-card.md"),
            ("prompt", "prompt.safetensors"),
            ("onnx", "model.onnx"),
        ]
        stored = b"".join(p.read_bytes() for p in every_file(folder))
    assert b"Patient X" not in stored
    assert sorted(p.name for p in out.iterdir()) == [
        "Patient X card.md",
        "Patient X.README.txt",
        "Patient X.csv",
        "Patient X.onnx",
        "Patient X.safetensors",
    ]
