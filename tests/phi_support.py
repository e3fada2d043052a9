"""DICOM files full of PHI markers (every identifying tag, file and folder name), and a byte search
for those markers in whatever the app wrote. Used by the privacy and export tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

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


def write_phi_folder(root: Path) -> Path:
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


def leaks(files: list[Path]) -> list[str]:
    found = []
    for path in files:
        data = path.read_bytes()
        found += [f"{path.name}: {m}" for m in MARKERS if m.encode() in data]
    return found


def every_file(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())
