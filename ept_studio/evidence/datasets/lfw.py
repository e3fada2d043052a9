"""Faces vs non-faces: scikit-image's bundled ``lfw_subset`` (200 grey 25 x 25 crops).

Source: ``skimage/data/lfw_subset.npy`` inside the scikit-image wheel (read from the installed
folder directly; nothing is fetched). scikit-image documents it as 100 face crops randomly chosen
from Labeled Faces in the Wild (Huang et al.) followed by 100 non-face crops cut from the
backgrounds of the same photographs, all resized to 25 x 25. Label: the position in the array
(first 100 faces, last 100 non-faces), as documented by ``skimage.data.lfw_subset``.
Licence: scikit-image is BSD-3-Clause; LFW is distributed for research use.

Not medical: a second real, labelled, balanced set. Each crop is its own group; faces may repeat a
person across crops (LFW has several photos per person), which the split cannot see.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from ept_studio.common.errors import DatasetError
from ept_studio.evidence.datasets.base import (
    DatasetCard,
    DatasetSample,
    LabelledDataset,
    constant_reader,
    grey_to_rgb,
)

NAME = "lfw-faces"
CLASSES = ("face", "non-face")
EXPECTED_COUNTS = {"face": 100, "non-face": 100}
_FACES = 100

CARD = DatasetCard(
    name=NAME,
    title="Faces vs non-faces (scikit-image lfw_subset)",
    source="scikit-image wheel: skimage/data/lfw_subset.npy, 200 grey crops of 25 x 25 px",
    licence="scikit-image BSD-3-Clause; images from Labeled Faces in the Wild (research use)",
    labels="Array position, as documented by skimage.data.lfw_subset: 100 faces, then 100 non-faces",
    limits="Not medical; 25 x 25 px upscaled to the model's input; a person may recur among faces.",
)


def lfw_file() -> Path:
    """The bundled array inside the installed scikit-image."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise DatasetError("the lfw-faces dataset needs scikit-image: `pip install scikit-image`")
    return Path(spec.origin).parent / "data" / "lfw_subset.npy"


def load() -> LabelledDataset:
    """The 200 crops as 8-bit RGB."""
    path = lfw_file()
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DatasetError(f"cannot read scikit-image's face crops {path}: {err}") from err
    if images.ndim != 3 or images.shape[0] != 2 * _FACES:
        raise DatasetError(f"{path} holds {images.shape}, expected 200 crops of 25 x 25")
    grey = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    samples = tuple(
        DatasetSample(
            label=0 if index < _FACES else 1,
            group=f"lfw/{index}",
            description=f"lfw_subset[{index}]",
            read=constant_reader(grey_to_rgb(grey[index])),
        )
        for index in range(grey.shape[0])
    )
    return LabelledDataset(CARD, CLASSES, "single", samples)
