"""After a PACS import the project folder holds no patient detail: the PHI-marked studies imported
by DICOMweb and by DIMSE from a real Orthanc, labelled, tuned (tiny backbone) and exported; then a
byte search of the project folder, the exports and the app log finds no marker. The retrieved copies
(full headers) lie on this machine beside the location index, outside the project folder."""

from __future__ import annotations

import logging
from pathlib import Path

from orthanc_support import PASSWORD, USER, Orthanc
from phi_support import MARK, MARKERS, UID_ROOT, every_file, leaks
from support import tiny_backbone

from ept_studio.services.model.training_options import TrainingOptions
from ept_studio.services.project import (
    DimseServer,
    ImportFinished,
    PacsServer,
    Project,
    ProjectTrainingSaved,
    Role,
    export_prompt_file,
    iter_dimse_import,
    pacs_cache_dir,
    pacs_import,
    search_studies,
)
from ept_studio.services.project.importing import PACS_CACHE
from ept_studio.services.project.reports import export_predictions_csv, write_model_card
from ept_studio.services.project.tuning import tune_project

MARKED_STUDIES = (f"{UID_ROOT}.1.0", f"{UID_ROOT}.1.1")
"""phi_support's two marked studies, 2 CT and 2 MR images each."""


def _import_both_ways(project: Project, orthanc: Orthanc) -> None:
    web = PacsServer(orthanc.dicomweb_url, "basic", USER, PASSWORD, timeout_s=10)
    found = {s.study_uid for s in search_studies(web, patient=MARK)}
    assert found == set(MARKED_STUDIES)
    by_web = pacs_import(project, web, [MARKED_STUDIES[0]])
    assert len(by_web.added) == 4
    dimse = DimseServer("EPTTEST", "127.0.0.1", orthanc.dicom_port, timeout_s=10)
    by_dimse = list(iter_dimse_import(project, dimse, [MARKED_STUDIES[1]]))[-1]
    assert isinstance(by_dimse, ImportFinished)
    assert len(by_dimse.report.added) == 4


def _label_by_modality(project: Project) -> None:
    classes = {name: project.labels.add_class(name).id for name in ("CT", "MR")}
    images = project.images()
    assert sorted(image.modality or "" for image in images) == ["CT"] * 4 + ["MR"] * 4
    for name, class_id in classes.items():
        ids = [image.id for image in images if image.modality == name]
        project.labels.set_label(ids, class_id)
        project.labels.set_role(ids[:1], Role.TEST)


def test_no_marker_in_the_project_exports_or_log_after_a_pacs_import(
    orthanc: Orthanc, project: Project, app_log: Path, tmp_path: Path
) -> None:
    _import_both_ways(project, orthanc)
    _label_by_modality(project)
    options = TrainingOptions(method="ept", length=4, epochs=1, batch_size=8, device="cpu")
    events = list(tune_project(project.folder, options, backbone=tiny_backbone()))
    saved = events[-1]
    assert isinstance(saved, ProjectTrainingSaved), saved
    out = tmp_path / "exports"
    exports = [
        export_predictions_csv(project, saved.run_id, out / "predictions.csv"),
        write_model_card(project, saved.run_id, out / "card.md"),
        export_prompt_file(project.folder, saved.run_id, out / "model.safetensors"),
    ]
    for handler in logging.getLogger().handlers:
        handler.flush()
    written = every_file(project.folder)
    assert {p.name for p in written} >= {"project.db", "run.json"}
    assert len(written) > 8
    assert leaks([*written, *every_file(out), app_log]) == []
    assert all(path.is_file() for path in exports)
    assert all(marker not in str(p) for p in written for marker in MARKERS)

    copies = every_file(pacs_cache_dir(project))
    assert len(copies) == 8
    assert not pacs_cache_dir(project).is_relative_to(project.folder)
    assert pacs_cache_dir(project).is_relative_to(project.locations_dir)
    assert len(leaks(copies)) >= 8  # the copies keep their headers: the search above can see PHI
    assert not (project.folder / PACS_CACHE).exists()
    assert {image.path for image in project.images()} == set(copies)
