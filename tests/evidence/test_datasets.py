"""The offline benchmark datasets: real counts per class, decodable pixels, honest splits; MedFMC's
file layout on a generated replica (format only, no real MedFMC data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ept_studio.common.errors import DatasetError
from ept_studio.evidence.datasets import (
    DatasetSample,
    LabelledDataset,
    conformal_textiles,
    dataset_names,
    lfw,
    load_dataset,
    load_medfmc,
    mri_planes,
    pydicom_modality,
)
from ept_studio.evidence.datasets.medfmc import CHEST_CLASSES


def class_of(dataset: LabelledDataset, sample: DatasetSample) -> str:
    assert isinstance(sample.label, int)
    return dataset.class_names[sample.label]


@pytest.fixture(scope="module")
def modality() -> LabelledDataset:
    return load_dataset("dicom-modality")


def test_the_built_in_datasets_are_listed() -> None:
    assert dataset_names() == ("dicom-modality", "mri-planes", "textiles", "lfw-faces")
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


def test_dicom_modality_counts_and_pixels(modality: LabelledDataset) -> None:
    assert modality.counts() == pydicom_modality.EXPECTED_COUNTS
    assert modality.group_counts() == {"CT": 6, "MR": 5, "US": 10, "X-ray": 2}
    assert modality.notes == ("71 frames dropped as repeats of a frame from another file",)
    for sample in modality.samples:
        pixels = sample.read()
        assert pixels.dtype == np.uint8
        assert pixels.ndim == 3
        assert pixels.shape[2] == 3
        assert min(pixels.shape[:2]) >= 32
        assert max(pixels.shape[:2]) <= 512
        assert pixels.std() >= 1.0


def test_dicom_modality_reports_what_it_skipped(modality: LabelledDataset) -> None:
    reasons = {s.source: s.reason for s in modality.skipped}
    assert reasons["pydicom/test_files/MR_truncated.dcm"].startswith("cannot be decoded")
    assert reasons["pydicom/test_files/rtdose.dcm"] == "modality RTDOSE"
    assert reasons["pydicom/test_files/dicomdirtests/77654033/CR1/6154"] == (
        "smaller than 32 pixels a side"
    )
    tiny = "pydicom/test_files/dicomdirtests/TINY_ALPHA/PT000000/ST000000/SE000000/IM000000"
    assert reasons[tiny] == "no pixel data"
    assert reasons["pydicom/test_files/README.txt"].startswith("cannot be read: not a DICOM file")


def test_dicom_modality_keeps_one_copy_of_each_picture(modality: LabelledDataset) -> None:
    # MR_small ships in 9 encodings, 693 in 4 (two distinct pictures): one sample each remains.
    names = [s.description for s in modality.samples]
    assert sum("MR_small" in n for n in names) == 1
    assert sum("/693_" in n for n in names) == 2
    assert sum("emri_small" in n for n in names) == 10
    # Windowed CT: the brain window leaves most of a head slice mid-grey, not saturated.
    ct = next(s for s in modality.samples if s.description.endswith("CT_small.dcm frame 1"))
    assert 20 < float(ct.read().mean()) < 200


def test_mri_planes_cuts_the_volume_three_ways() -> None:
    planes = load_dataset("mri-planes")
    assert planes.counts() == mri_planes.EXPECTED_COUNTS
    shapes = {class_of(planes, s): s.read().shape for s in planes.samples}
    assert shapes == {
        "acquired": (64, 64, 3),
        "reformat-rows": (10, 64, 3),
        "reformat-columns": (10, 64, 3),
    }
    assert planes.group_counts() == {"acquired": 5, "reformat-rows": 8, "reformat-columns": 8}


def test_textiles_counts_and_one_image() -> None:
    textiles = load_dataset("textiles")
    assert textiles.counts() == conformal_textiles.EXPECTED_COUNTS
    assert len({s.group for s in textiles.samples}) == 2000
    pixels = textiles.samples[1500].read()
    assert pixels.shape == (250, 250, 3)
    assert pixels.dtype == np.uint8
    assert class_of(textiles, textiles.samples[1500]) == "global defect"


def test_lfw_faces_counts_and_labels() -> None:
    faces = load_dataset("lfw-faces")
    assert faces.counts() == lfw.EXPECTED_COUNTS
    assert [s.label for s in faces.samples[98:102]] == [0, 0, 1, 1]
    pixels = faces.samples[0].read()
    assert pixels.shape == (25, 25, 3)
    assert (pixels[..., 0] == pixels[..., 2]).all()
    assert pixels.max() > 100


def write_png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def write_task(root: Path, task: str, labels: list[str], shots: int = 1, exps: int = 2) -> None:
    """A replica of a MedFMC task folder: images/, the test list and few-shot lists."""
    folder = root / task
    for index in range(len(labels)):
        write_png(folder / "images" / f"{task}_{index:03d}.png", 10 * index)
    test = [f"{task}_{i:03d}.png {labels[i]}" for i in range(len(labels) // 2, len(labels))]
    (folder / "test_WithLabel.txt").write_text("\n".join(test) + "\n", encoding="utf-8")
    for exp in range(1, exps + 1):
        chosen = [(exp - 1) * shots + i for i in range(shots)]
        lines = [f"{task}_{j:03d}.png {labels[j]}" for j in chosen]
        (folder / f"{task}_{shots}-shot_train_exp{exp}.txt").write_text(
            "\n".join(lines) + "\n", encoding="utf-8"
        )


def test_medfmc_replica_colon_single_label(tmp_path: Path) -> None:
    write_task(tmp_path, "colon", ["0", "1", "0", "1", "1", "0", "1", "0"])
    data = load_medfmc(tmp_path, "colon", shots=(1, 5), experiments=(1, 2))
    assert data.dataset.label_mode == "single"
    assert data.dataset.class_names == ("non_tumor", "tumor")
    assert [(s.shots, s.experiment, len(s.support)) for s in data.splits] == [(1, 1, 1), (1, 2, 1)]
    assert len(data.test) == 4
    assert data.dataset.counts() == {"non_tumor": 3, "tumor": 3}
    assert any("5-shot split 1" in note for note in data.dataset.notes)
    assert data.dataset.samples[0].read().shape == (8, 8, 3)
    assert "colon_" not in data.dataset.samples[0].description


def test_medfmc_replica_chest_and_endo_multi_label(tmp_path: Path) -> None:
    chest = ["1," + ",".join(["0"] * 17) + ",1", ",".join(["0"] * 18) + ",1"] * 3
    write_task(tmp_path, "chest", chest)
    data = load_medfmc(tmp_path, "chest", shots=(1,), experiments=(1, 2))
    assert data.dataset.label_mode == "multi"
    assert len(data.dataset.class_names) == 19
    assert data.dataset.class_names == CHEST_CLASSES
    counts = data.dataset.counts()
    assert counts["pleural_effusion"] == 2
    assert counts["consolidation"] == 5
    write_task(tmp_path, "endo", ["1 0 0 0", "0 1 1 0", "0 0 0 1", "1 1 0 0"])
    endo = load_medfmc(tmp_path / "endo", "endo", shots=(1,), experiments=(1,))
    assert endo.dataset.samples[0].label == (0, 0, 0, 1)
    assert endo.dataset.counts() == {"ulcer": 2, "erosion": 1, "polyp": 0, "tumor": 1}


def test_medfmc_reports_missing_images_and_bad_lines(tmp_path: Path) -> None:
    write_task(tmp_path, "colon", ["0", "1", "0", "1"])
    (tmp_path / "colon" / "images" / "colon_003.png").unlink()
    data = load_medfmc(tmp_path, "colon", shots=(1,), experiments=(1,))
    assert [s.reason for s in data.dataset.skipped] == ["file missing"]
    (tmp_path / "colon" / "test_WithLabel.txt").write_text("colon_002.png 7\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"test_WithLabel.txt line 1: expected one class"):
        load_medfmc(tmp_path, "colon", shots=(1,), experiments=(1,))
    with pytest.raises(DatasetError, match="no MedFMC Endo test list"):
        load_medfmc(tmp_path, "endo")
    with pytest.raises(DatasetError, match="unknown MedFMC task"):
        load_medfmc(tmp_path, "retino")
