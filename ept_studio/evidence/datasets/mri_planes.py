"""Slice direction in a 3-D MR block: acquired slices vs the two reformats, from pydicom-data.

Source: ``data_store/data/emri_small.dcm`` in ``pydicom-data`` 1.0 (MIT; a de-identified enhanced
MR image, 3-D T1 gradient echo of the head, 10 frames of 64 x 64, 1.2 mm between slices). The
volume is cut along its three voxel axes: the 10 acquired frames ("acquired", 64 x 64 px), 64
reformats at fixed frame rows ("reformat-rows") and 64 at fixed frame columns ("reformat-columns"),
each 10 x 64 px (slices x columns, or slices x rows). Label: the axis the slice was cut along (geometry, not a reading). The anatomical
names (axial / coronal / sagittal) cannot be given: the file's orientation tags were removed.
One grey window for the whole volume (0.5-99.5 percentile; the file has none).

Limits, stated plainly: one small volume, so slices are strongly correlated and support and query
cannot come from different volumes; the split keeps slabs of neighbouring slices together (groups
of 2 acquired frames and 8 reformats), which only softens that. The reformats are 10 px tall and
are stretched to the model's square input, so the classes differ in obvious blur direction: with enough
training every method should reach the ceiling (at the small CPU budget of resources/evidence/README.md none
did). It checks that the methods train on real MR voxels; it is too easy to rank them.
"""

from __future__ import annotations

import numpy as np

from ept_studio.common.errors import DatasetError, ImageDecodeError
from ept_studio.data.packaged_dicom import installed_dicom_files
from ept_studio.data.render import decode_file
from ept_studio.evidence.datasets.base import (
    DatasetCard,
    DatasetSample,
    LabelledDataset,
    constant_reader,
    grey_to_rgb,
)

NAME = "mri-planes"
CLASSES = ("acquired", "reformat-rows", "reformat-columns")
EXPECTED_COUNTS = {"acquired": 10, "reformat-rows": 64, "reformat-columns": 64}
VOLUME = "data_store/data/emri_small.dcm"
_SLAB = {0: 2, 1: 8, 2: 8}

CARD = DatasetCard(
    name=NAME,
    title="Slice direction in a 3-D T1 MR block (pydicom-data emri_small)",
    source="pydicom-data 1.0: data_store/data/emri_small.dcm, 10 x 64 x 64 voxels",
    licence="MIT (pydicom-data); de-identified public test image",
    labels="The voxel axis each slice is cut along: acquired frames, reformats across rows/columns",
    limits=(
        "One volume: slices are correlated (slabs kept on one side only); orientation tags are "
        "absent, so no anatomical plane names; reformats are 10 px tall: too easy to rank methods."
    ),
)


def load() -> LabelledDataset:
    """The 138 slices of the volume, rendered with one window."""
    volume = _volume()
    low, high = np.percentile(volume, [0.5, 99.5])
    grey = (np.clip((volume - low) / max(high - low, 1e-9), 0.0, 1.0) * 255.0 + 0.5).astype(
        np.uint8
    )
    samples: list[DatasetSample] = []
    for axis, name in enumerate(CLASSES):
        for index in range(grey.shape[axis]):
            cut = np.take(grey, index, axis=axis)
            samples.append(
                DatasetSample(
                    label=axis,
                    group=f"{name}:slab{index // _SLAB[axis]}",
                    description=f"emri_small {name} {index + 1}",
                    read=constant_reader(grey_to_rgb(np.ascontiguousarray(cut))),
                )
            )
    return LabelledDataset(CARD, CLASSES, "single", tuple(samples))


def _volume() -> np.ndarray:
    """The volume's grey values after the modality LUT, ``[frames, rows, columns]``."""
    files = dict(installed_dicom_files())
    if VOLUME not in files:
        raise DatasetError(
            "the mri-planes dataset needs the package pydicom-data: `pip install pydicom-data`"
        )
    try:
        first = decode_file(files[VOLUME])
        rest = [decode_file(files[VOLUME], frame=f) for f in range(1, first.frames)]
    except ImageDecodeError as err:
        raise DatasetError(f"cannot decode {VOLUME} from pydicom-data: {err.reason}") from err
    if first.is_colour or first.frames < 2:
        raise DatasetError(f"{VOLUME} is not a grey volume")
    return np.stack([first.pixels, *(d.pixels for d in rest)]).astype(np.float64)
