"""DICOM modality: CT / MR / ultrasound / projection X-ray, from the files pydicom ships.

Source: every file in ``pydicom``'s ``data/test_files`` folder and in ``pydicom-data``'s
``data_store/data`` folder (both MIT; the images are de-identified public test data). One sample per
frame. Label: the file's Modality tag (0008,0060): CT, MR, US, and CR or DX as "X-ray" (projection
radiography). Other modalities (NM, OT/secondary capture, RT dose, SEG, ...) are left out and
reported. Files that fail to decode are reported with the reason and skipped.

Frames smaller than 32 pixels a side are left out: pydicom's DICOMDIR test files carry 16 x 16
stubs of pixel data that show no anatomy. Most of pydicom's images exist several times in other
encodings (uncompressed, RLE, JPEG 2000, big endian): a frame equal to one already kept from
another file is dropped, so the same picture never sits in both the support and the query set.
Groups are series (a hash of the series UID, image size and body part, because pydicom's
anonymised files share one series UID across unrelated images): the split keeps a group on one
side.

Counts with pydicom 3.0.2 and pydicom-data 1.0.0 (see ``EXPECTED_COUNTS``): CT 8, MR 14, US 159,
X-ray 2 frames. Limits, stated plainly: tiny and unbalanced (X-ray has 2 frames, so only K = 1 can
be drawn for it; larger K drop it, with a note); 150 of the US frames come from two cine clips of
one examination; and modality shows in trivial cues (ultrasound is mostly colour, projection X-rays
are large and inverted). Read the accuracy as a check that the pipeline learns on real DICOM
pixels, not as a clinical benchmark.
"""

from __future__ import annotations

from ept_studio.data.packaged_dicom import installed_dicom_files
from ept_studio.evidence.datasets._dicom import DEFAULT_MAX_SIDE, FrameDeduplicator, read_dicom
from ept_studio.evidence.datasets.base import (
    DatasetCard,
    DatasetSample,
    LabelledDataset,
    SkippedSource,
    constant_reader,
)

NAME = "dicom-modality"
CLASSES = ("CT", "MR", "US", "X-ray")
EXPECTED_COUNTS = {"CT": 8, "MR": 14, "US": 159, "X-ray": 2}
"""Frames per class with pydicom 3.0.2 and pydicom-data 1.0.0 installed."""
MIN_SIDE = 32
_MODALITY_CLASS = {"CT": 0, "MR": 1, "US": 2, "CR": 3, "DX": 3}

CARD = DatasetCard(
    name=NAME,
    title="DICOM modality (CT / MR / US / projection X-ray) from pydicom's test files",
    source="pydicom (data/test_files) and pydicom-data 1.0 (data_store/data), installed packages",
    licence="MIT (pydicom, pydicom-data); de-identified public test images",
    labels="Modality tag (0008,0060): CT, MR, US; CR and DX as X-ray. One sample per frame.",
    limits=(
        "Tiny and unbalanced (X-ray: 2 frames, so only K = 1); repeats across encodings removed; "
        "16 x 16 DICOMDIR stubs left out; 150 of 159 US frames come from two cine clips; modality "
        "shows in trivial cues (colour, size). A pipeline check, not a clinical benchmark."
    ),
)


def load(max_side: int = DEFAULT_MAX_SIDE) -> LabelledDataset:
    """Decode every installed pydicom test file and label its frames by modality."""
    samples: list[DatasetSample] = []
    skipped: list[SkippedSource] = []
    repeats = FrameDeduplicator()
    dropped = 0
    for name, path in installed_dicom_files():
        decoded = read_dicom(name, path, max_side, frozenset(_MODALITY_CLASS))
        if isinstance(decoded, SkippedSource):
            skipped.append(decoded)
            continue
        label = _MODALITY_CLASS.get(decoded.modality)
        if label is None:
            skipped.append(SkippedSource(name, f"modality {decoded.modality or 'missing'}"))
            continue
        if min(decoded.frames[0].shape[:2]) < MIN_SIDE:
            skipped.append(SkippedSource(name, f"smaller than {MIN_SIDE} pixels a side"))
            continue
        for index, frame in enumerate(decoded.frames):
            if float(frame.std()) < 1.0:
                skipped.append(SkippedSource(f"{name} frame {index + 1}", "renders blank"))
                continue
            if not repeats.is_new(name, frame):
                dropped += 1
                continue
            samples.append(
                DatasetSample(
                    label=label,
                    group=f"{CLASSES[label]}:{decoded.series_key}",
                    description=f"{name} frame {index + 1}",
                    read=constant_reader(frame),
                )
            )
    notes = (f"{dropped} frames dropped as repeats of a frame from another file",)
    return LabelledDataset(CARD, CLASSES, "single", tuple(samples), tuple(skipped), notes)
