"""Class-folder scanning and the seeded few-shot split, on real folders in tmp_path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ept_studio.common.errors import DatasetError
from ept_studio.data.folders import (
    ClassFolderScan,
    LabelledImage,
    sample_per_class,
    scan_class_folders,
)


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (4, 4), 7).save(path)
    return path


def _text(path: Path, content: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def _dataset(root: Path, counts: dict[str, int]) -> Path:
    for label, count in counts.items():
        for k in range(count):
            _image(root / label / f"img_{k:03d}.png")
    return root


def test_scan_finds_classes_nested_images_and_skipped_files(tmp_path: Path) -> None:
    root = tmp_path / "set"
    a1 = _image(root / "normal" / "b.png")
    a2 = _image(root / "normal" / "a.JPG")
    a3 = _image(root / "normal" / "deeper" / "more" / "c.tif")
    b1 = _image(root / "effusion" / "x.bmp")
    notes = _text(root / "normal" / "notes.txt")
    no_suffix = _text(root / "effusion" / "README")
    stray = _image(root / "stray.png")
    _text(root / "normal" / ".DS_Store")
    _image(root / ".cache" / "hidden.png")
    _image(root / "effusion" / ".thumbs" / "t.png")

    scan = scan_class_folders(root)
    assert scan.classes == ("effusion", "normal")
    assert scan.images == (
        LabelledImage(b1, "effusion"),
        LabelledImage(a2, "normal"),
        LabelledImage(a1, "normal"),
        LabelledImage(a3, "normal"),
    )
    assert scan.skipped == (
        (no_suffix, "not an image or DICOM file (no suffix)"),
        (notes, "not an image or DICOM file (.txt)"),
        (stray, "not inside a class folder"),
    )
    assert scan.counts() == {"effusion": 1, "normal": 3}


def test_scan_is_safe_against_link_loops(tmp_path: Path) -> None:
    root = _dataset(tmp_path / "set", {"a": 2, "b": 1})
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)
    (root / "b" / "up").symlink_to(root, target_is_directory=True)
    (root / "b" / "dangling.png").symlink_to(root / "nowhere.png")
    (root / "b" / "copy.png").symlink_to(root / "a" / "img_000.png")
    scan = scan_class_folders(root)
    assert scan.counts() == {"a": 2, "b": 1}
    assert [i.path for i in scan.images] == [
        root / "a" / "img_000.png",
        root / "a" / "img_001.png",
        root / "b" / "img_000.png",
    ]
    assert dict(scan.skipped) == {
        root / "a" / "loop": "link to a folder that was already scanned",
        root / "b" / "up": "link to a folder that was already scanned",
        root / "b" / "dangling.png": "broken link or not a regular file",
        root / "b" / "copy.png": "the same file as another image already listed (a link)",
    }


def test_classes_are_sorted_by_name(tmp_path: Path) -> None:
    scan = scan_class_folders(_dataset(tmp_path, {"zeta": 1, "Alpha": 1, "beta": 1}))
    assert scan.classes == ("Alpha", "beta", "zeta")
    assert [i.label for i in scan.images] == ["Alpha", "beta", "zeta"]


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({}, "no class folders found"),
        ({"only": 3}, "only one class folder ('only')"),
        ({"a": 2, "empty": 0}, "class folder 'empty' has no images"),
    ],
)
def test_unusable_folders_are_dataset_errors_naming_the_folder(
    tmp_path: Path, layout: dict[str, int], message: str
) -> None:
    root = tmp_path / "my-set"
    root.mkdir()
    _dataset(root, layout)
    for label, count in layout.items():
        if count == 0:
            _text(root / label / "notes.txt")
    with pytest.raises(DatasetError) as caught:
        scan_class_folders(root)
    assert str(root) in str(caught.value)
    assert message in str(caught.value)


def test_scan_of_a_missing_folder_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        scan_class_folders(tmp_path / "missing")
    with pytest.raises(DatasetError, match="not a folder"):
        scan_class_folders(_text(tmp_path / "file.txt"))


def test_unreadable_sub_folder_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _dataset(tmp_path / "set", {"a": 1, "b": 1})
    locked = _image(root / "a" / "locked" / "x.png").parent
    real_iterdir = Path.iterdir

    def iterdir(self: Path) -> Iterator[Path]:
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    scan = scan_class_folders(root)
    assert (locked, "folder cannot be read") in scan.skipped
    assert scan.counts() == {"a": 1, "b": 1}


# --------------------------------------------------------------------------------- few-shot split


def _scan(tmp_path: Path) -> ClassFolderScan:
    return scan_class_folders(_dataset(tmp_path / "set", {"a": 10, "b": 6, "c": 4}))


def test_split_counts_and_disjointness(tmp_path: Path) -> None:
    scan = _scan(tmp_path)
    support, query = sample_per_class(scan, shots=3, seed=0)
    labels = [image.label for image in support]
    assert labels == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert [image.label for image in query] == ["a"] * 7 + ["b"] * 3 + ["c"]
    assert not set(support) & set(query)
    assert set(support) | set(query) == set(scan.images)


def test_split_is_deterministic_and_depends_on_the_seed(tmp_path: Path) -> None:
    scan = _scan(tmp_path)
    first = sample_per_class(scan, shots=2, seed=123)
    assert sample_per_class(scan, shots=2, seed=123) == first
    draws = {tuple(i.path.name for i in sample_per_class(scan, 2, seed)[0]) for seed in range(10)}
    assert len(draws) > 5


def test_a_class_with_exactly_shots_images_is_refused(tmp_path: Path) -> None:
    """All of class c would train and none would evaluate it: refused, with what shots allows."""
    with pytest.raises(DatasetError) as caught:
        sample_per_class(_scan(tmp_path), shots=4, seed=1)
    assert str(caught.value) == (
        "class 'c' has 4 usable images: with 4 images the number of shots can be 1 to 3, so "
        "that at least 1 image is left to evaluate the model on"
    )


def test_too_few_images_or_shots_are_dataset_errors(tmp_path: Path) -> None:
    scan = _scan(tmp_path)
    with pytest.raises(DatasetError) as caught:
        sample_per_class(scan, shots=5, seed=0)
    assert "class 'c' has 4 usable images" in str(caught.value)
    assert "1 to 3" in str(caught.value)
    for shots in (0, -1):
        with pytest.raises(DatasetError, match="at least 1"):
            sample_per_class(scan, shots=shots, seed=0)
