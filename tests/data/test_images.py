"""Decoding PNG / JPEG / TIFF / BMP to RGB uint8 from real files written by Pillow."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image

from ept_studio.common.errors import ImageDecodeError
from ept_studio.data.images import IMAGE_SUFFIXES, decode_image, is_image_path


def _save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def _rgb_noise(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _check_rgb(array: np.ndarray, height: int, width: int) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (height, width, 3)
    assert array.flags.c_contiguous
    assert array.flags.writeable


# --------------------------------------------------------------------------------- PNG modes


def test_png_8_bit_grey_is_replicated_unchanged(tmp_path: Path) -> None:
    grey = np.arange(24 * 32, dtype=np.uint16).reshape(24, 32).astype(np.uint8)
    out = decode_image(_save(Image.fromarray(grey, mode="L"), tmp_path / "grey.png"))
    _check_rgb(out, 24, 32)
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey)


def test_png_16_bit_ramp_maps_min_to_0_and_max_to_255(tmp_path: Path) -> None:
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0 .. 65535 in steps of 257
    image = Image.fromarray(ramp)
    assert image.mode == "I;16"
    out = decode_image(_save(image, tmp_path / "ramp16.png"))
    _check_rgb(out, 16, 16)
    np.testing.assert_array_equal(out[:, :, 0], np.arange(256).reshape(16, 16))
    np.testing.assert_array_equal(out[:, :, 2], out[:, :, 0])


def test_16_bit_stretch_uses_the_image_own_range(tmp_path: Path) -> None:
    values = (1000 + 3 * np.arange(256, dtype=np.uint16)).reshape(16, 16)  # 1000 .. 1765
    out = decode_image(_save(Image.fromarray(values), tmp_path / "narrow16.png"))
    assert out[0, 0, 0] == 0
    assert out[-1, -1, 0] == 255
    np.testing.assert_array_equal(out[:, :, 1], np.arange(256).reshape(16, 16))


def test_constant_16_bit_image_gives_zeros_not_nan(tmp_path: Path) -> None:
    flat = np.full((8, 9), 4321, dtype=np.uint16)
    out = decode_image(_save(Image.fromarray(flat), tmp_path / "flat16.png"))
    _check_rgb(out, 8, 9)
    assert int(out.max()) == 0


def test_png_1_bit_is_0_or_255(tmp_path: Path) -> None:
    checker = (np.indices((8, 8)).sum(axis=0) % 2).astype(bool)
    image = Image.fromarray(checker)
    assert image.mode == "1"
    out = decode_image(_save(image, tmp_path / "bits.png"))
    np.testing.assert_array_equal(out[:, :, 0], checker.astype(np.uint8) * 255)
    assert set(np.unique(out).tolist()) == {0, 255}


def test_png_palette_becomes_rgb(tmp_path: Path) -> None:
    image = Image.new("P", (4, 2))
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30] + [0] * 756)
    image.putdata([0, 1, 2, 3, 3, 2, 1, 0])
    out = decode_image(_save(image, tmp_path / "palette.png"))
    assert out[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]
    assert out[1, 0].tolist() == [10, 20, 30]


def test_palette_transparency_composites_on_black(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([200, 100, 50, 9, 9, 9] + [0] * 762)
    image.putdata([0, 1])
    out = decode_image(_save(image, tmp_path / "ptrans.png", transparency=1))
    assert out[0].tolist() == [[200, 100, 50], [0, 0, 0]]


def test_png_rgba_composites_on_black(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 50, 0], [200, 100, 50, 255], [200, 100, 50, 128]]], np.uint8)
    out = decode_image(_save(Image.fromarray(rgba, mode="RGBA"), tmp_path / "rgba.png"))
    assert out[0].tolist() == [[0, 0, 0], [200, 100, 50], [100, 50, 25]]


def test_png_grey_alpha_composites_on_black(tmp_path: Path) -> None:
    la = np.array([[[90, 0], [90, 255], [255, 51]]], np.uint8)
    out = decode_image(_save(Image.fromarray(la, mode="LA"), tmp_path / "la.png"))
    assert out[0].tolist() == [[0, 0, 0], [90, 90, 90], [51, 51, 51]]


def test_png_rgb_is_exact(tmp_path: Path) -> None:
    rgb = _rgb_noise()
    out = decode_image(_save(Image.fromarray(rgb), tmp_path / "rgb.png"))
    np.testing.assert_array_equal(out, rgb)


# --------------------------------------------------------------------------------- JPEG, TIFF, BMP


def _two_halves(width: int = 40, height: int = 20) -> Image.Image:
    """Left half red, right half blue."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[:, : width // 2, 0] = 255
    pixels[:, width // 2 :, 2] = 255
    return Image.fromarray(pixels)


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(_two_halves(), tmp_path / "rotated.jpg", exif=exif, quality=95)
    out = decode_image(path)
    _check_rgb(out, 40, 20)
    top, bottom = out[:15].astype(int), out[25:].astype(int)
    assert top[..., 0].mean() > 240
    assert top[..., 2].mean() < 15
    assert bottom[..., 2].mean() > 240
    assert bottom[..., 0].mean() < 15


def test_jpeg_without_exif_keeps_its_shape(tmp_path: Path) -> None:
    out = decode_image(_save(_two_halves(), tmp_path / "plain.jpeg", quality=95))
    _check_rgb(out, 20, 40)
    assert out[:, :15, 0].mean() > 240


def test_jpeg_grey_and_cmyk(tmp_path: Path) -> None:
    grey = decode_image(_save(Image.new("L", (10, 6), 128), tmp_path / "grey.jpg"))
    _check_rgb(grey, 6, 10)
    assert np.abs(grey.astype(int) - 128).max() <= 1
    cmyk = decode_image(_save(Image.new("CMYK", (10, 6), (0, 255, 255, 0)), tmp_path / "cmyk.jpg"))
    _check_rgb(cmyk, 6, 10)
    assert cmyk[..., 0].mean() > 240
    assert cmyk[..., 1].mean() < 15


def test_multipage_tiff_gives_the_first_page(tmp_path: Path) -> None:
    first, second = Image.new("L", (6, 4), 17), Image.new("L", (6, 4), 200)
    path = _save(first, tmp_path / "pages.tif", save_all=True, append_images=[second])
    with Image.open(path) as check:
        assert getattr(check, "n_frames", 1) == 2
    out = decode_image(path)
    _check_rgb(out, 4, 6)
    assert set(np.unique(out).tolist()) == {17}


def test_tiff_16_bit_ramp(tmp_path: Path) -> None:
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(8, 32)
    out = decode_image(_save(Image.fromarray(ramp), tmp_path / "ramp16.tiff"))
    np.testing.assert_array_equal(out[:, :, 1], np.arange(256).reshape(8, 32))


def test_float_tiff_ignores_non_finite_values(tmp_path: Path) -> None:
    values = np.array([[-1.0, 0.0, 1.0, np.nan]], np.float32)
    out = decode_image(_save(Image.fromarray(values, mode="F"), tmp_path / "float.tif"))
    assert out[0, :, 0].tolist() == [0, 128, 255, 0]


def test_bmp_rgb_and_palette(tmp_path: Path) -> None:
    rgb = _rgb_noise(7, 5, seed=3)
    np.testing.assert_array_equal(
        decode_image(_save(Image.fromarray(rgb), tmp_path / "c.bmp")), rgb
    )
    image = Image.new("P", (3, 1))
    image.putpalette([1, 2, 3, 4, 5, 6, 7, 8, 9] + [0] * 759)
    image.putdata([2, 1, 0])
    out = decode_image(_save(image, tmp_path / "p.bmp"))
    assert out[0].tolist() == [[7, 8, 9], [4, 5, 6], [1, 2, 3]]


def test_a_real_ct_slice_saved_as_16_bit_png(tmp_path: Path) -> None:
    pixels = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm")).pixel_array
    assert pixels.min() >= 0
    path = _save(Image.fromarray(pixels.astype(np.uint16)), tmp_path / "ct_small.png")
    out = decode_image(path)
    _check_rgb(out, 128, 128)
    low, high = float(pixels.min()), float(pixels.max())
    reference = np.rint((pixels.astype(np.float64) - low) * 255.0 / (high - low))
    assert np.abs(out[:, :, 0].astype(np.float64) - reference).max() <= 1
    assert int(out.min()) == 0
    assert int(out.max()) == 255
    assert len(np.unique(out)) > 100
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])


# --------------------------------------------------------------------------------- source untouched

MAKERS: dict[str, Callable[[Path], Path]] = {
    "png": lambda d: _save(Image.fromarray(_rgb_noise()), d / "a.png"),
    "png16": lambda d: _save(
        Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8)), d / "b.png"
    ),
    "jpeg": lambda d: _save(Image.fromarray(_rgb_noise()), d / "c.jpg", exif=_orientation(3)),
    "tiff": lambda d: _save(
        Image.new("L", (5, 5), 3),
        d / "d.tif",
        save_all=True,
        append_images=[Image.new("L", (5, 5))],
    ),
    "bmp": lambda d: _save(Image.fromarray(_rgb_noise()), d / "e.bmp"),
}


def _orientation(value: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif


@pytest.mark.parametrize("kind", sorted(MAKERS))
def test_decoding_never_changes_the_source_file(tmp_path: Path, kind: str) -> None:
    path = MAKERS[kind](tmp_path)
    before, mtime = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    path.chmod(0o444)
    decode_image(path)
    decode_image(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert path.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# --------------------------------------------------------------------------------- bad inputs


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` (its pixel data is never read)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, kind: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def _png_bytes() -> bytes:
    return _encoded(Image.fromarray(_rgb_noise(64, 64)), "PNG")


def _jpeg_bytes() -> bytes:
    return _encoded(Image.fromarray(_rgb_noise(64, 64)), "JPEG")


BAD: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "empty": ("empty.png", lambda: b"", "file is empty"),
    "text named png": (
        "notes.png",
        lambda: b"patient list, do not share\n" * 3,
        "not a recognised image format",
    ),
    "gif": ("anim.png", lambda: b"GIF89a" + b"\x00" * 40, "not a recognised image format"),
    "truncated png": (
        "cut.png",
        lambda: _png_bytes()[: len(_png_bytes()) // 2],
        "file is truncated",
    ),
    "truncated jpeg": (
        "cut.jpg",
        lambda: _jpeg_bytes()[: len(_jpeg_bytes()) // 2],
        "file is truncated",
    ),
    "damaged png header": (
        "bad.png",
        lambda: b"\x89PNG\r\n\x1a\n" + b"\xff" * 40,
        "header is damaged",
    ),
    "zero-size png": ("zero.png", lambda: _png_header(0, 10), "header is damaged"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_is_an_image_decode_error_naming_it(tmp_path: Path, case: str) -> None:
    name, content, reason = BAD[case]
    path = tmp_path / name
    path.write_bytes(content())
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path)
    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)
    assert reason in caught.value.reason


def test_pixel_limit_is_checked_from_the_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header(20000, 20000))
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path, max_pixels=1_000_000)
    assert caught.value.reason == "image is 20000 x 20000 = 400 MP, above the 1 MP limit"
    assert str(path) in str(caught.value)
    with pytest.raises(ImageDecodeError, match="400 MP, above the 179 MP limit"):
        decode_image(path)


def test_pixel_limit_applies_to_small_images_too(tmp_path: Path) -> None:
    path = _save(Image.new("RGB", (30, 20)), tmp_path / "small.bmp")
    with pytest.raises(ImageDecodeError, match=r"30 x 20 = 0.0006 MP, above the 0.0005 MP limit"):
        decode_image(path, max_pixels=500)
    assert decode_image(path, max_pixels=600).shape == (20, 30, 3)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="file not found"):
        decode_image(tmp_path / "gone.png")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    with pytest.raises(ImageDecodeError, match="folder"):
        decode_image(folder)


def test_image_suffixes() -> None:
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"} == IMAGE_SUFFIXES
    assert is_image_path(Path("scan.PNG"))
    assert is_image_path(Path("a/b/slide.Tiff"))
    assert not is_image_path(Path("image.dcm"))
    assert not is_image_path(Path("notes.txt"))
    assert not is_image_path(Path("png"))


def test_huge_pixel_counts_read_plainly(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    path.write_bytes(_png_header(2_000_000, 20_000))
    with pytest.raises(ImageDecodeError, match="= 40,000 MP, above the 179 MP limit"):
        decode_image(path)


FUZZ_SOURCES: dict[str, Callable[[], bytes]] = {
    "png": lambda: _encoded(Image.fromarray(_rgb_noise()), "PNG"),
    "png16": lambda: _encoded(
        Image.fromarray(np.arange(256, dtype=np.uint16).reshape(16, 16)), "PNG"
    ),
    "jpeg": lambda: _encoded(Image.fromarray(_rgb_noise()), "JPEG", exif=_orientation(6)),
    "tiff": lambda: _encoded(Image.fromarray(_rgb_noise()), "TIFF"),
    "bmp": lambda: _encoded(Image.fromarray(_rgb_noise()).convert("P"), "BMP"),
}


@pytest.mark.filterwarnings("ignore")  # Pillow warns about the corrupt EXIF blocks it skips
@pytest.mark.parametrize("kind", sorted(FUZZ_SOURCES))
def test_damaged_files_only_ever_raise_image_decode_errors(tmp_path: Path, kind: str) -> None:
    original = FUZZ_SOURCES[kind]()
    rng = random.Random(0)
    path = tmp_path / f"damaged.{kind}"
    decoded, refused = 0, []
    for _ in range(60):
        data = bytearray(original)
        for _ in range(rng.choice([1, 2, 5])):
            data[rng.randrange(min(len(data), 200))] = rng.randrange(256)
        path.write_bytes(bytes(data[: rng.randrange(len(data))] if rng.random() < 0.2 else data))
        try:
            out = decode_image(path, max_pixels=10_000_000)
        except ImageDecodeError as err:
            refused.append(err.path)
        else:
            decoded += 1
            assert out.dtype == np.uint8
            assert out.ndim == 3
            assert out.shape[2] == 3
    assert decoded + len(refused) == 60
    assert refused
    assert set(refused) == {str(path)}
