"""Labelled image sets for the few-shot accuracy protocol, all offline.

Each loader documents its source, licence, counts per class, how labels were derived and its
limits (``LabelledDataset.card``). Four come from installed packages; MedFMC reads a user's copy.
"""

from __future__ import annotations

from collections.abc import Callable

from ept_studio.common.errors import DatasetError
from ept_studio.evidence.datasets import conformal_textiles, lfw, mri_planes, pydicom_modality
from ept_studio.evidence.datasets.base import (
    DatasetCard,
    DatasetSample,
    Label,
    LabelledDataset,
    LabelModeName,
    SkippedSource,
)
from ept_studio.evidence.datasets.medfmc import (
    PAPER_TABLE1,
    TASKS,
    MedfmcData,
    MedfmcSplit,
    MedfmcTask,
    load_medfmc,
)

LOADERS: dict[str, Callable[[], LabelledDataset]] = {
    pydicom_modality.NAME: pydicom_modality.load,
    mri_planes.NAME: mri_planes.load,
    conformal_textiles.NAME: conformal_textiles.load,
    lfw.NAME: lfw.load,
}
"""The built-in datasets by name."""

CARDS: dict[str, DatasetCard] = {
    pydicom_modality.NAME: pydicom_modality.CARD,
    mri_planes.NAME: mri_planes.CARD,
    conformal_textiles.NAME: conformal_textiles.CARD,
    lfw.NAME: lfw.CARD,
}


def dataset_names() -> tuple[str, ...]:
    """The names ``load_dataset`` knows."""
    return tuple(LOADERS)


def load_dataset(name: str) -> LabelledDataset:
    """A built-in dataset by name (``dicom-modality``, ``mri-planes``, ``textiles``, ``lfw-faces``)."""
    if name not in LOADERS:
        raise DatasetError(f"unknown dataset {name!r}: choose one of {', '.join(LOADERS)}")
    return LOADERS[name]()


__all__ = [
    "CARDS",
    "LOADERS",
    "PAPER_TABLE1",
    "TASKS",
    "DatasetCard",
    "DatasetSample",
    "Label",
    "LabelModeName",
    "LabelledDataset",
    "MedfmcData",
    "MedfmcSplit",
    "MedfmcTask",
    "SkippedSource",
    "dataset_names",
    "load_dataset",
    "load_medfmc",
]
