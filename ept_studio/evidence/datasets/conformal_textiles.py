"""Simulated textile surfaces: nominal / local defect / global defect, from ``conformal-clip-data``.

Source: the PyPI package ``conformal-clip-data`` 0.1.4 (MIT, Megahed et al. 2025,
arXiv:2501.12596), 2,000 JPEG images of 250 x 250 px simulated with the R package ``spc4sts``
(Bui & Apley 2020): 1,000 nominal weaves, 500 with a local defect inserted, 500 whose
autoregressive parameters were lowered by 5 % (a global defect). Label: the folder the package puts
each image in (``nominal``, ``local``, ``global``). Every image is its own group (independent
simulations).

Not medical: a larger, balanced-enough set with a known ground truth, to see the methods separate
where the medical sets are too small. The global defect is a subtle texture change, so the task is
not trivial at K = 1 or 5.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ept_studio.common.errors import DatasetError
from ept_studio.data.images import decode_image
from ept_studio.evidence.datasets.base import DatasetCard, DatasetSample, LabelledDataset

NAME = "textiles"
CLASSES = ("nominal", "local defect", "global defect")
FOLDERS = ("nominal", "local", "global")
EXPECTED_COUNTS = {"nominal": 1000, "local defect": 500, "global defect": 500}

CARD = DatasetCard(
    name=NAME,
    title="Simulated textile defects (conformal-clip-data)",
    source="PyPI conformal-clip-data 0.1.4: 2,000 JPEGs, 250 x 250 px, simulated with spc4sts",
    licence="MIT",
    labels="The package folder of each image: nominal, local (defect), global (defect)",
    limits="Not medical; simulated textures. Each image is an independent simulation.",
)


def textile_root() -> Path:
    """The installed package's ``textile_images/simulated`` folder."""
    spec = importlib.util.find_spec("conformal_clip_data")
    if spec is None or spec.origin is None:
        raise DatasetError(
            "the textiles dataset needs the package conformal-clip-data: "
            "run `pip install conformal-clip-data` in EPT Studio's environment"
        )
    return Path(spec.origin).parent / "data" / "textile_images" / "simulated"


def load() -> LabelledDataset:
    """The 2,000 textile images, read lazily."""
    root = textile_root()
    samples: list[DatasetSample] = []
    for label, folder in enumerate(FOLDERS):
        for path in sorted((root / folder).glob("*.jpg")):
            samples.append(
                DatasetSample(
                    label=label,
                    group=f"{folder}/{path.name}",
                    description=f"conformal_clip_data/{folder}/{path.name}",
                    read=_reader(path),
                )
            )
    if not samples:
        raise DatasetError(f"no textile images found under {root}: reinstall conformal-clip-data")
    return LabelledDataset(CARD, CLASSES, "single", tuple(samples))


def _reader(path: Path) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        return decode_image(path)

    return read
