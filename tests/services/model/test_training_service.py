"""End to end on the real offline backbone: train a few steps on real images, save, load, predict."""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom.data
import pytest
import torch
from support import write_class_folders

from ept_studio.common.errors import BackboneMismatchError, DatasetError
from ept_studio.core.backbones import load_backbone
from ept_studio.core.prompt_file import read_prompt_file
from ept_studio.data.folders import scan_class_folders
from ept_studio.services.model.images import load_images, split_class_folders
from ept_studio.services.model.inference import load_tuned_model, predict_files
from ept_studio.services.model.run_record import read_run_record
from ept_studio.services.model.training import (
    DataReady,
    TrainingSaved,
    TrainRequest,
    train_on_folder,
)

QUICK = {"epochs": 2, "batch_size": 4, "lr": 0.05}


def _run(request: TrainRequest) -> tuple[list[object], TrainingSaved]:
    events = list(train_on_folder(request))
    saved = events[-1]
    assert isinstance(saved, TrainingSaved)
    return events, saved


@pytest.mark.slow
def test_train_save_load_predict_on_the_offline_backbone(
    class_folders: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run" / "prompts.safetensors"
    request = TrainRequest(
        class_folders,
        out,
        method={"method": "ept", "length": 20},
        recipe=QUICK,
        shots=2,
        max_query_per_class=3,
        compact=True,
    )
    events, saved = _run(request)
    ready = events[0]
    assert isinstance(ready, DataReady)
    assert ready.support_counts == {"fundus": 2, "histology": 2}
    assert ready.query_counts == {"fundus": 3, "histology": 3}
    assert set(saved.metrics) >= {"accuracy", "balanced_accuracy", "macro_auc", "ece"}
    assert 0.0 <= saved.metrics["accuracy"] <= 1.0

    images, skipped = load_images(sorted(class_folders.rglob("*.png"))[:4])
    assert not skipped
    from ept_studio.core.training import eval_transform

    spec = load_backbone().spec
    transform = eval_transform(spec.input_size, spec.mean, spec.std)
    pixels = torch.stack([transform(image.pixels) for image in images])
    with torch.inference_mode():
        in_memory = saved.model.eval()(pixels)
        loaded = load_tuned_model(saved.prompt_file)
        from_file = loaded.model(pixels)
        assert saved.compact_file is not None
        compact = load_tuned_model(saved.compact_file).model(pixels)
    assert (in_memory - from_file).abs().max().item() == 0.0
    assert (in_memory - compact).abs().max().item() <= 1e-5

    predictions, _ = predict_files(loaded, [image.path for image in images])
    scores = torch.tensor([[p.scores["fundus"], p.scores["histology"]] for p in predictions])
    assert (scores - in_memory.softmax(-1)).abs().max().item() <= 1e-5

    tensors, metadata = read_prompt_file(saved.prompt_file)
    assert metadata.class_names == ("fundus", "histology")
    assert metadata.backbone_sha256 == load_backbone().weights_sha256
    assert sum(t.numel() for n, t in tensors.items() if "prompt" in n) == 12 * 257 * 20

    record = read_run_record(saved.run_record)
    assert record.source == "folder"
    assert record.backbone.sha256 == metadata.backbone_sha256
    assert record.seed == 0
    assert record.training.device.startswith("CPU")
    assert len(record.data.train) == 4
    assert len(record.data.test) == 6
    text = saved.run_record.read_text()
    assert str(class_folders) not in text, "the run record must not hold file paths"


@pytest.mark.slow
def test_cli_predict_matches_the_service(class_folders: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.safetensors"
    _, saved = _run(
        TrainRequest(class_folders, out, method={"method": "linear"}, recipe=QUICK, shots=2)
    )
    files = sorted(class_folders.rglob("*.png"))[:3]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png at all")
    table = tmp_path / "scores.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ept_studio",
            "predict",
            str(out),
            *map(str, files),
            str(broken),
            "--csv",
            str(table),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "broken.png" in result.stderr
    assert "not a recognised image format" in result.stderr
    rows = list(csv.DictReader(table.open()))
    assert [Path(r["file"]).name for r in rows] == [f.name for f in files]
    predictions, _ = predict_files(load_tuned_model(saved.prompt_file), files)
    for row, prediction in zip(rows, predictions, strict=True):
        assert row["predicted_class"] == prediction.predicted_class
        assert abs(float(row["score_fundus"]) - prediction.scores["fundus"]) <= 1e-6


@pytest.mark.slow
def test_same_seed_same_run_twice(class_folders: Path, tmp_path: Path) -> None:
    runs = []
    for index in range(2):
        request = TrainRequest(
            class_folders,
            tmp_path / f"r{index}.safetensors",
            method={"method": "ept", "length": 5},
            recipe={"epochs": 1, "lr": 0.05},
            shots=2,
            max_query_per_class=2,
            seed=3,
        )
        runs.append(_run(request)[1])
    assert runs[0].metrics == runs[1].metrics
    first, _ = read_prompt_file(runs[0].prompt_file)
    second, _ = read_prompt_file(runs[1].prompt_file)
    assert all(torch.equal(first[name], second[name]) for name in first)


@pytest.mark.slow
def test_prompt_file_refuses_another_backbone(class_folders: Path, tmp_path: Path) -> None:
    from ept_studio.core.backbones import random_backbone

    _, saved = _run(
        TrainRequest(
            class_folders,
            tmp_path / "p.safetensors",
            method={"method": "linear"},
            recipe={"epochs": 1},
            shots=2,
        )
    )
    other = random_backbone("vit_small_patch14_dinov2", seed=1, img_size=224)
    with pytest.raises(BackboneMismatchError, match="backbone"):
        load_tuned_model(saved.prompt_file, backbone=other)


def test_a_folder_without_classes_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    request = TrainRequest(tmp_path / "empty", tmp_path / "p.safetensors")
    with pytest.raises(DatasetError, match="empty"):
        list(train_on_folder(request))


def test_importing_services_and_cli_does_not_import_torch() -> None:
    code = (
        "import sys, ept_studio.cli, ept_studio.services.model.training, ept_studio.services.model.inference;"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.slow
def test_folder_training_takes_dicom_by_content(tmp_path: Path) -> None:
    """DICOM files are found by their preamble (no suffix needed) and rendered for the model."""
    import pydicom

    sources = Path(pydicom.data.__file__).parent / "test_files"
    for name, source in (("ct", "CT_small.dcm"), ("mr", "MR_small.dcm")):
        folder = tmp_path / "data" / name
        folder.mkdir(parents=True)
        for index in range(3):  # three different images: copies would be one image
            dataset = pydicom.dcmread(sources / source)
            pixels = dataset.pixel_array
            dataset.PixelData = (pixels + index).astype(pixels.dtype).tobytes()
            dataset.save_as(folder / f"IM{index:04d}")
    (tmp_path / "data" / "ct" / "notes.txt").write_text("not an image")
    request = TrainRequest(
        tmp_path / "data",
        tmp_path / "p.safetensors",
        method={"method": "linear"},
        recipe={"epochs": 1},
        shots=2,
    )
    events, saved = _run(request)
    ready = events[0]
    assert isinstance(ready, DataReady)
    assert ready.support_counts == {"ct": 2, "mr": 2}
    assert ready.query_counts == {"ct": 1, "mr": 1}
    assert [s.path.name for s in ready.skipped] == ["notes.txt"]
    assert saved.prompt_file.is_file()


# ------------------------------------------------- what the folder route refuses before training

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"


def _write_broken(path: Path) -> Path:
    path.write_bytes(b"not a png at all")
    return path


def test_a_broken_file_is_left_out_before_the_draw_and_a_class_without_evaluation_refused(
    class_folders: Path,
) -> None:
    """One good image and one broken file: whatever the seed, the class cannot give 1 shot + 1
    evaluation image, so the run is refused before training and the broken file is named."""
    for extra in sorted((class_folders / "fundus").glob("*.png"))[1:]:
        extra.unlink()
    _write_broken(class_folders / "fundus" / "broken.png")
    scan = scan_class_folders(class_folders)
    for seed in range(10):
        with pytest.raises(DatasetError) as caught:
            split_class_folders(scan, shots=1, seed=seed)
        message = str(caught.value)
        assert "class 'fundus' has 1 usable image" in message
        assert "broken.png" in message
        assert "at least 2" in message


def test_shots_equal_to_the_class_size_is_refused_before_training(
    class_folders: Path, tmp_path: Path
) -> None:
    out = tmp_path / "p.safetensors"
    request = TrainRequest(class_folders, out, method={"method": "linear"}, shots=6)
    with pytest.raises(DatasetError) as caught:
        next(iter(train_on_folder(request)))
    assert "class 'fundus' has 6 usable images" in str(caught.value)
    assert "1 to 5" in str(caught.value)
    assert not out.exists()


def test_training_on_every_image_is_refused(class_folders: Path, tmp_path: Path) -> None:
    """No shots (every image trains) would leave nothing to evaluate the model on."""
    request = TrainRequest(class_folders, tmp_path / "p.safetensors", shots=None)
    with pytest.raises(DatasetError, match="at least 1"):
        next(iter(train_on_folder(request)))


def test_byte_identical_copies_never_straddle_the_split(class_folders: Path) -> None:
    fundus = class_folders / "fundus"
    for name in ("copy-a.png", "copy-b.png"):
        shutil.copy(fundus / "img00.png", fundus / name)
    scan = scan_class_folders(class_folders)
    for seed in range(10):
        split = split_class_folders(scan, shots=2, seed=seed)
        support = {image.sha256 for image, _ in split.support}
        query = {image.sha256 for image, _ in split.query}
        assert not support & query, f"seed {seed}: one image on both sides"
        assert len(split.support) + len(split.query) == 12
    [group] = split.duplicates
    assert group.kept.name == "copy-a.png"
    assert sorted(p.name for p in group.dropped) == ["copy-b.png", "img00.png"]


def _mr_and_png_classes(root: Path) -> Path:
    """``mr``: MR_small, its RLE-compressed twin and CT_small; ``png``: three different crops."""
    (root / "mr").mkdir(parents=True)
    for name in ("MR_small.dcm", "MR_small_RLE.dcm", "CT_small.dcm"):
        shutil.copy(PYDICOM_FILES / name, root / "mr" / name)
    write_class_folders(root / "tmp", per_class=3)
    shutil.move(root / "tmp" / "fundus", root / "png")
    shutil.rmtree(root / "tmp")
    return root


def test_the_same_pixels_in_another_encoding_never_straddle_the_split(tmp_path: Path) -> None:
    scan = scan_class_folders(_mr_and_png_classes(tmp_path / "data"))
    for seed in range(10):
        split = split_class_folders(scan, shots=1, seed=seed)
        names = [image.path.name for image, _ in split.support + split.query]
        assert sorted(names).count("MR_small.dcm") + names.count("MR_small_RLE.dcm") == 1
        assert len(names) == 5
    [group] = split.duplicates
    assert (group.kept.name, [p.name for p in group.dropped]) == (
        "MR_small.dcm",
        ["MR_small_RLE.dcm"],
    )


def test_the_same_image_in_two_class_folders_is_refused(class_folders: Path) -> None:
    shutil.copy(class_folders / "fundus" / "img03.png", class_folders / "histology" / "twin.png")
    with pytest.raises(DatasetError) as caught:
        split_class_folders(scan_class_folders(class_folders), shots=2, seed=0)
    message = str(caught.value)
    assert "fundus/img03.png" in message
    assert "histology/twin.png" in message
    assert "one class per image" in message


def test_the_log_holds_no_folder_or_file_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_class_folders(tmp_path / "Patient Doe", per_class=4)
    shutil.copy(root / "fundus" / "img00.png", root / "fundus" / "Doe-copy.png")
    _write_broken(root / "histology" / "Doe-broken.png")
    with caplog.at_level(logging.DEBUG, logger="ept_studio"):
        split_class_folders(scan_class_folders(root), shots=2, seed=0)
    assert "Doe" not in caplog.text
    assert "fundus" in caplog.text  # class names are the user's labels


def test_a_query_cap_below_one_is_refused(class_folders: Path) -> None:
    """At most 0 evaluation images per class would save a model nobody evaluated."""
    scan = scan_class_folders(class_folders)
    with pytest.raises(DatasetError, match="at most 0 images"):
        split_class_folders(scan, shots=2, seed=0, max_query_per_class=0)


def test_a_file_that_cannot_be_read_is_skipped_with_its_reason(
    class_folders: Path, tmp_path: Path
) -> None:
    """Not only undecodable files: one the system cannot open (here a link to nothing, or a
    folder named like an image) is reported and the others are loaded, as the ONNX path does."""
    gone = tmp_path / "gone.png"
    gone.symlink_to(tmp_path / "nowhere.png")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    good = sorted(class_folders.rglob("*.png"))[:2]
    images, skipped = load_images([good[0], gone, folder, good[1]])
    assert [image.path for image in images] == good
    assert [item.path for item in skipped] == [gone, folder]
    assert all(item.reason for item in skipped)
