"""No patient identifier leaves the source files: a full import -> label -> train -> export workflow
on DICOMs whose every PHI tag, file name and folder name holds a marker, then a byte search of every
file the project wrote, the exported prompt file and the captured logs and warnings."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
from support import tiny_backbone

from ept_studio.data.store import Project, Role
from ept_studio.services.project import (
    ProjectTrainingSaved,
    export_prompt_file,
    import_paths,
    train_on_project,
)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
MARK = "PHIMARK1234"
UID_ROOT = "1.2.826.0.1.3680043.8.498.7712345678901"
"""Marker-derived UIDs (valid UID syntax): every Study / Series / SOP Instance UID starts so."""
BIRTH_DATE = "19230917"
STUDY_DATE = "19450321"
MARKERS = (MARK, MARK.lower(), UID_ROOT, BIRTH_DATE, STUDY_DATE)


def _source(name: str) -> tuple[Dataset, np.ndarray]:
    ds = pydicom.dcmread(PYDICOM_FILES / name)
    return ds, ds.pixel_array


def _phi_dataset(pixels: np.ndarray, source: Dataset, index: int) -> Dataset:
    """A new DICOM holding ``pixels`` (real CT / MR values) and a marker in every PHI tag."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = source.SOPClassUID
    meta.MediaStorageSOPInstanceUID = f"{UID_ROOT}.3.{index}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = source.SOPClassUID
    ds.SOPInstanceUID = f"{UID_ROOT}.3.{index}"
    ds.StudyInstanceUID = f"{UID_ROOT}.1.{index % 2}"
    ds.SeriesInstanceUID = f"{UID_ROOT}.2.{index}"
    ds.PatientName = f"{MARK}^Jane^Q"
    ds.PatientID = f"{MARK}-{index % 2}"
    ds.PatientBirthDate = BIRTH_DATE
    ds.AccessionNumber = f"{MARK}A{index}"
    ds.InstitutionName = f"{MARK} General Hospital"
    ds.ReferringPhysicianName = f"{MARK}^Referrer"
    ds.PerformingPhysicianName = f"{MARK}^Performer"
    ds.OperatorsName = f"{MARK}^Operator"
    ds.StudyDate = STUDY_DATE
    ds.SeriesDate = STUDY_DATE
    ds.StudyDescription = f"{MARK} chest"
    ds.Modality = source.Modality
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, source.get("RescaleIntercept", 0)
    ds.PixelData = pixels.astype(np.int16).tobytes()
    return ds


def _write_phi_folder(root: Path) -> Path:
    """root/<class>/<MARK patient folder>/<MARK file>.dcm: 4 CT and 4 MR images, real pixels."""
    sources = {"ct": _source("CT_small.dcm"), "mr": _source("MR_small.dcm")}
    index = 0
    for class_name, (source, pixels) in sources.items():
        for k in range(4):
            folder = root / class_name / f"{MARK}_Jane_{k % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            varied = np.rot90(pixels, k) + k  # distinct content, same anatomy
            dataset = _phi_dataset(np.ascontiguousarray(varied), source, index)
            dataset.save_as(folder / f"{MARK}_{BIRTH_DATE}_{k}.dcm", enforce_file_format=True)
            index += 1
    return root


def _leaks(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        data = path.read_bytes()
        found += [f"{path.name}: {m}" for m in MARKERS if m.encode() in data]
    return found


def _every_file(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_no_marker_reaches_the_project_the_exports_or_the_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sources = _write_phi_folder(tmp_path / f"{MARK}_export")
    in_sources = b"".join(p.read_bytes() for p in _every_file(sources))
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
            project.set_role([ids[0], ids[4]], Role.TEST)
            project.set_label([ids[1]], project.classes()[1].id)
            project.undo()
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
            written = _every_file(folder)
            assert {p.name for p in written} >= {"project.db", "project.db-wal", "run.json"}
            assert len(list(project.thumbnails_dir.glob("*.png"))) == 8
            assert _leaks(written) == []
            hashes = {image.patient_hash for image in project.images()}
            assert len(hashes) == 2
            assert None not in hashes
    assert _leaks([*_every_file(folder), exported, outside]) == []
    assert all(m not in caplog.text for m in MARKERS)
    assert all(m not in str(r.args) for r in caplog.records for m in MARKERS)
    assert all(m not in str(w.message) for w in caught for m in MARKERS)
    # Paths are needed to find the sources again: they live only in the location index, kept
    # outside the project folder (on this machine), never inside it.
    assert [p.suffix for p in _every_file(locations)] == [".db"]
    assert _leaks(_every_file(locations)) != []
