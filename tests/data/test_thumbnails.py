"""Thumbnails: rendered, cached by content + spec + size, regenerated when the source changes,
written atomically into the cache folder only."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image

from ept_studio.common.errors import ConfigError, ImageDecodeError
from ept_studio.data.render import RenderingSpec, decode_file, render_file
from ept_studio.data.thumbnails import thumbnail_for, thumbnail_name

CT_SMALL = Path(pydicom.data.__file__).parent / "test_files" / "CT_small.dcm"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    return Path(shutil.copy(CT_SMALL, folder / "ct.dcm"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_thumbnail_is_the_rendered_image_scaled(tmp_path: Path, source: Path) -> None:
    cache = tmp_path / "project" / "thumbnails"
    spec = RenderingSpec(window=(40.0, 400.0))
    path = thumbnail_for(source, spec, cache, size=64)
    assert path.parent == cache
    assert path.name == thumbnail_name(_sha(source), spec, 64)
    assert path.name.startswith(_sha(source) + "-")
    with Image.open(path) as image:
        assert (image.format, image.size, image.mode) == ("PNG", (64, 64), "RGB")
        thumb = np.asarray(image).astype(float)
    full = render_file(source, spec).astype(float)
    expected = full.reshape(64, 2, 64, 2, 3).mean(axis=(1, 3))  # 128 -> 64
    assert np.abs(thumb - expected).mean() < 6


def test_cached_thumbnail_is_reused(tmp_path: Path, source: Path) -> None:
    cache = tmp_path / "cache"
    first = thumbnail_for(source, RenderingSpec(), cache)
    os.utime(first, ns=(1, 1))
    again = thumbnail_for(source, RenderingSpec(), cache, content_sha256=_sha(source))
    assert again == first
    assert first.stat().st_mtime_ns == 1  # not written again
    assert sorted(p.name for p in cache.iterdir()) == [first.name]


def test_a_changed_source_gets_a_new_thumbnail(tmp_path: Path, source: Path) -> None:
    cache = tmp_path / "cache"
    before = thumbnail_for(source, RenderingSpec(), cache)
    ds = pydicom.dcmread(source)
    ds.PixelData = (ds.pixel_array[::-1].copy()).tobytes()  # the image upside down
    ds.save_as(source)
    after = thumbnail_for(source, RenderingSpec(), cache)
    assert after != before
    with Image.open(before) as old, Image.open(after) as new:
        np.testing.assert_array_equal(np.asarray(new), np.asarray(old)[::-1])


def test_spec_and_size_are_part_of_the_key(tmp_path: Path, source: Path) -> None:
    cache = tmp_path / "cache"
    names = {
        thumbnail_for(source, RenderingSpec(), cache).name,
        thumbnail_for(source, RenderingSpec(invert=True), cache).name,
        thumbnail_for(source, RenderingSpec(policy="percentile"), cache).name,
        thumbnail_for(source, RenderingSpec(), cache, size=128).name,
    }
    assert len(names) == 4
    assert len(list(cache.iterdir())) == 4


def test_never_writes_next_to_the_source(tmp_path: Path, source: Path) -> None:
    folder = source.parent
    source.chmod(0o444)
    before = _sha(source), source.stat().st_mtime_ns
    thumbnail_for(source, RenderingSpec(), tmp_path / "cache")
    assert [p.name for p in folder.iterdir()] == ["ct.dcm"]
    assert (_sha(source), source.stat().st_mtime_ns) == before
    with pytest.raises(ConfigError, match="must not be the source image's folder"):
        thumbnail_for(source, RenderingSpec(), folder)
    assert [p.name for p in folder.iterdir()] == ["ct.dcm"]


def test_no_temporary_files_are_left(tmp_path: Path, source: Path) -> None:
    cache = tmp_path / "cache"
    for size in (32, 48, 256):
        thumbnail_for(source, RenderingSpec(), cache, size=size)
    assert all(p.suffix == ".png" and not p.name.startswith(".") for p in cache.iterdir())


def test_aspect_ratio_follows_pixel_spacing(tmp_path: Path, source: Path) -> None:
    ds = pydicom.dcmread(source)
    ds.PixelSpacing = [1.0, 0.5]  # rows 1 mm apart, columns 0.5 mm: twice as wide as tall
    ds.save_as(source)
    path = thumbnail_for(source, RenderingSpec(), tmp_path / "cache", size=100)
    with Image.open(path) as image:
        assert image.size == (50, 100)


def test_small_images_are_enlarged_with_visible_pixels(tmp_path: Path) -> None:
    tiny = tmp_path / "src" / "tiny.png"
    tiny.parent.mkdir()
    Image.fromarray(np.array([[0, 255], [255, 0]], dtype=np.uint8)).save(tiny)
    path = thumbnail_for(tiny, RenderingSpec(), tmp_path / "cache", size=16)
    with Image.open(path) as image:
        pixels = np.asarray(image)[:, :, 0]
    assert set(np.unique(pixels).tolist()) == {0, 255}
    assert (pixels[:8, :8] == 0).all()


def test_bad_inputs(tmp_path: Path, source: Path) -> None:
    cache = tmp_path / "cache"
    broken = tmp_path / "src" / "broken.png"
    broken.parent.mkdir()
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ImageDecodeError):
        thumbnail_for(broken, RenderingSpec(), cache)
    with pytest.raises(ImageDecodeError, match="file not found"):
        thumbnail_for(tmp_path / "gone.dcm", RenderingSpec(), cache)
    assert not cache.exists() or not list(cache.iterdir())
    for size in (0, 8, True, 5000):
        with pytest.raises(ConfigError, match="thumbnail size"):
            thumbnail_for(source, RenderingSpec(), cache, size=size)


def test_an_already_decoded_image_is_not_decoded_again(tmp_path: Path, source: Path) -> None:
    decoded = decode_file(source)
    made = thumbnail_for(
        source, RenderingSpec(), tmp_path / "a", content_sha256=_sha(source), decoded=decoded
    )
    plain = thumbnail_for(source, RenderingSpec(), tmp_path / "b")
    assert made.name == plain.name
    assert made.read_bytes() == plain.read_bytes()
