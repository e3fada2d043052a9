"""Rendering: the DICOM display pipeline checked against pydicom's own LUT functions and the
standard's formulas, the rendering spec, and Pillow formats through the same function."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pydicom.data
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut, apply_windowing

from ept_studio.common.errors import ConfigError, ImageDecodeError
from ept_studio.data.packaged_dicom import pydicom_data_folder
from ept_studio.data.render import (
    DecodedImage,
    RenderingSpec,
    decode_file,
    percentile_window,
    render,
    render_file,
)

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
_DATA = pydicom_data_folder()
assert _DATA is not None, "pydicom-data (a dev dependency) is not installed"
DATA_FILES: Path = _DATA


def _pydicom_display(path: Path) -> tuple[np.ndarray, Dataset]:
    """pydicom's modality + VOI output scaled to 0..255 by its own output range."""
    ds = pydicom.dcmread(path)
    values = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds)
    if ds.get("VOILUTSequence"):
        bits = ds.VOILUTSequence[0].LUTDescriptor[2]
        low, high = 0.0, 2.0**bits - 1
    else:  # apply_windowing's y range: the stored range through the rescale
        bits, signed = ds.BitsStored, ds.PixelRepresentation == 1
        low, high = (
            (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0**bits - 1)
        )
        slope, intercept = float(ds.get("RescaleSlope", 1)), float(ds.get("RescaleIntercept", 0))
        low, high = low * slope + intercept, high * slope + intercept
    return (values.astype(np.float64) - low) * 255.0 / (high - low), ds


def _grey(pixels: np.ndarray, photometric: str = "MONOCHROME2", **fields: object) -> DecodedImage:
    return DecodedImage(pixels.astype(np.float32), photometric, False, **fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- against pydicom


@pytest.mark.parametrize(
    ("folder", "name"),
    [
        (DATA_FILES, "693_UNCI.dcm"),  # CT 512 x 512, window 40 / 100 in HU, signed
        (DATA_FILES, "RG1_UNCI.dcm"),  # CR chest, MONOCHROME1, window 15000 / 30000, 15-bit
        (DATA_FILES, "RG3_UNCI.dcm"),  # CR extremity, MONOCHROME1, 10-bit
        (PYDICOM_FILES, "dicomdirtests/77654033/CR1/6154"),  # small CR, MONOCHROME1, 12-bit
        (DATA_FILES, "MR-SIEMENS-DICOM-WithOverlays.dcm"),  # MR, two windows listed
        (DATA_FILES, "vlut_04.dcm"),  # VOI LUT Sequence
    ],
)
def test_rendering_matches_pydicom_within_one_grey_level(folder: Path, name: str) -> None:
    expected, ds = _pydicom_display(folder / name)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        expected = 255.0 - expected  # inverted after windowing
    out = render_file(folder / name)
    assert out.shape == (ds.Rows, ds.Columns, 3)
    np.testing.assert_array_equal(out[:, :, 0], out[:, :, 2])
    assert np.abs(out[:, :, 0].astype(np.float64) - expected).max() <= 1.0
    assert len(np.unique(out)) > 20


def test_ct_hounsfield_window() -> None:
    decoded = decode_file(DATA_FILES / "693_UNCI.dcm")
    assert decoded.windows == ((40.0, 100.0),)
    hu = decoded.pixels
    assert float(hu.min()) == -3995.0  # outside the reconstruction circle
    inside = hu[hu > -2000]
    assert -1100 < float(np.percentile(inside, 5)) < -1000  # air around the patient
    assert 0 < float(np.percentile(inside, 75)) < 100  # soft tissue
    assert float(hu.max()) == 1812.0  # bone
    out = render(decoded, RenderingSpec())[:, :, 0]
    assert (out[hu <= -10.5] == 0).all()  # below the window: black
    assert (out[hu > 88.5] == 255).all()  # above: white
    bone = render(decoded, RenderingSpec(window=(400.0, 1800.0)))[:, :, 0]
    assert len(np.unique(bone)) > len(np.unique(out))  # a user window overrides the file's


def test_monochrome1_is_inverted_after_windowing() -> None:
    decoded = decode_file(DATA_FILES / "RG3_UNCI.dcm")
    assert decoded.photometric == "MONOCHROME1"
    shown = render(decoded, RenderingSpec())
    as_stored = render(decoded, RenderingSpec(invert=False))
    np.testing.assert_array_equal(shown.astype(int), 255 - as_stored.astype(int))
    # the bone (high attenuation, low stored values in MONOCHROME1) shows bright
    assert shown[decoded.pixels < 100].mean() > 200


def test_the_file_s_second_window_is_not_the_default() -> None:
    decoded = decode_file(DATA_FILES / "MR-SIEMENS-DICOM-WithOverlays.dcm")
    assert decoded.windows == ((450.0, 790.0), (200.0, 443.0))
    first = render(decoded, RenderingSpec())
    second = render(decoded, RenderingSpec(window=decoded.windows[1]))
    assert not np.array_equal(first, second)


# --------------------------------------------------------------------------------- VOI formulas


def _window_dataset(centre: float, width: float, function: str) -> Dataset:
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsStored, ds.PixelRepresentation = 16, 0
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = centre, width, function
    return ds


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")  # in pydicom's SIGMOID
@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(("centre", "width"), [(1000.0, 400.0), (1000.5, 1.0), (20.0, 2.0)])
def test_voi_functions_match_pydicom_apply_windowing(
    function: str, centre: float, width: float
) -> None:
    values = np.arange(0, 2200, dtype=np.float32).reshape(40, 55)
    decoded = _grey(values, windows=((centre, width),), voi_function=function)
    out = render(decoded, RenderingSpec())[:, :, 0].astype(np.float64)
    expected = apply_windowing(values.astype(np.float64), _window_dataset(centre, width, function))
    assert np.abs(out - expected * 255.0 / 65535.0).max() <= 0.5 + 1e-6


def test_linear_formula_at_its_edges() -> None:
    # PS3.3 C.11.2.1.2.1 with c = 100, w = 11: x <= 94.5 -> 0, x > 104.5 -> 255, linear between
    values = np.array([[94.0, 94.5, 95.0, 99.5, 100.0, 104.5, 105.0]], dtype=np.float32)
    out = render(_grey(values, windows=((100.0, 11.0),)), RenderingSpec())[0, :, 0]
    # ((x - 99.5) / 10 + 0.5) * 255 = 0, 0, 12.75, 127.5, 140.25, 255, 255, rounded
    assert out.tolist() == [0, 0, 13, 128, 140, 255, 255]


def test_full_precision_is_kept_until_the_end() -> None:
    # 100 neighbouring 16-bit values in a 100-wide window: 100 different grey levels, which a
    # cast to 8 bits before windowing would have merged into one
    values = np.arange(30000, 30100, dtype=np.float32).reshape(10, 10)
    out = render(_grey(values), RenderingSpec(window=(30050.0, 100.0)))
    assert len(np.unique(out)) == 100


def test_percentile_window() -> None:
    values = np.arange(10_000, dtype=np.float32).reshape(100, 100)
    low, high = percentile_window(values)
    assert (low, high) == pytest.approx((49.995, 9949.005))
    out = render(_grey(values), RenderingSpec())[:, :, 0].ravel()
    assert out[:50].max() == 0
    assert out[-50:].min() == 255
    assert out[5000] == 128
    np.testing.assert_array_equal(
        render(_grey(values, windows=((1.0, 5.0),)), RenderingSpec(policy="percentile")),
        out.reshape(100, 100, 1).repeat(3, 2),
    )


def test_percentile_of_a_sparse_mask_falls_back_to_min_max() -> None:
    mask = np.zeros((100, 100), dtype=np.float32)
    mask[:3, :3] = 1  # 0.09 % of the pixels
    out = render(_grey(mask), RenderingSpec())
    assert set(np.unique(out).tolist()) == {0, 255}
    flat = render(_grey(np.full((4, 4), 7.0)), RenderingSpec())
    assert int(flat.max()) == 0


def test_ct_without_a_window_uses_the_percentile_window() -> None:
    decoded = decode_file(PYDICOM_FILES / "CT_small.dcm")
    assert decoded.windows == ()
    out = render(decoded, RenderingSpec())[:, :, 0]
    low, high = np.percentile(decoded.pixels, [0.5, 99.5])
    expected = np.clip((decoded.pixels - low) * 255.0 / (high - low), 0, 255)
    assert np.abs(out - expected).max() <= 0.5 + 1e-3


def test_voi_lut_sequence_beats_the_window() -> None:
    decoded = decode_file(DATA_FILES / "vlut_04.dcm")
    assert decoded.has_voi_lut_sequence
    assert decoded.voi_lut is not None
    assert decoded.voi_lut.bits == 16
    user = render(decoded, RenderingSpec(window=(128.0, 64.0)))
    assert not np.array_equal(user, render(decoded, RenderingSpec()))


# --------------------------------------------------------------------------------- colour


def test_ybr_jpeg_variants_render_like_the_rgb_original() -> None:
    reference = render_file(DATA_FILES / "SC_rgb.dcm").astype(int)
    for name in [
        "SC_rgb_dcmtk_+eb+cy+n2.dcm",
        "SC_rgb_dcmtk_+eb+cy+s4.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "SC_rgb_dcmtk_+eb+cy+np.dcm",
    ]:
        out = render_file(PYDICOM_FILES / name).astype(int)
        assert np.abs(out - reference).mean() < 3.0, name  # lossy JPEG and 4:2:2 chroma only
    ybr = render_file(DATA_FILES / "SC_ybr_full_uncompressed.dcm").astype(int)
    assert np.abs(ybr - reference).mean() < 1.0  # 8-bit YCbCr quantisation only
    assert np.abs(ybr - reference).max() <= 6


def test_colour_is_not_windowed_unless_asked() -> None:
    decoded = decode_file(DATA_FILES / "SC_rgb_16bit.dcm")
    np.testing.assert_array_equal(
        render(decoded, RenderingSpec(policy="percentile")), render_file(DATA_FILES / "SC_rgb.dcm")
    )
    windowed = render(decoded, RenderingSpec(window=(32768.0, 1000.0)))
    assert set(np.unique(windowed).tolist()) <= {0, 255} | set(range(256))
    assert not np.array_equal(windowed, render(decoded, RenderingSpec()))


def test_palette_big_endian_matches_little_endian() -> None:
    np.testing.assert_array_equal(
        render_file(DATA_FILES / "OBXXXX1A_expb.dcm"), render_file(DATA_FILES / "OBXXXX1A.dcm")
    )


# --------------------------------------------------------------------------------- the spec


@pytest.mark.parametrize(
    "spec",
    [
        RenderingSpec(),
        RenderingSpec(window=(40.0, 400.0), invert=True, frame=3),
        RenderingSpec(policy="percentile", invert=False),
    ],
)
def test_spec_round_trips_through_json(spec: RenderingSpec) -> None:
    text = json.dumps(spec.to_dict())
    assert RenderingSpec.from_dict(json.loads(text)) == spec
    assert spec.to_json() == json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))


def test_spec_from_dict_ignores_unknown_keys_and_accepts_ints() -> None:
    spec = RenderingSpec.from_dict({"window": [40, 400], "frame": 2.0, "future": "x"})
    assert spec == RenderingSpec(window=(40.0, 400.0), frame=2)
    assert RenderingSpec.from_dict({}) == RenderingSpec()


@pytest.mark.parametrize(
    "data",
    [
        {"policy": "auto"},
        {"window": [40, 0]},
        {"window": [40]},
        {"window": ["40", 400]},
        {"window": [float("nan"), 400]},
        {"invert": "yes"},
        {"frame": -1},
        {"frame": 1.5},
    ],
)
def test_bad_specs_are_config_errors(data: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        RenderingSpec.from_dict(data)


def test_frame_of_spec_and_decoded_image_must_agree() -> None:
    decoded = decode_file(DATA_FILES / "emri_small.dcm", frame=2)
    assert render(decoded, RenderingSpec(frame=2)).shape == (64, 64, 3)
    with pytest.raises(ConfigError, match="frame 0 but frame 2 was decoded"):
        render(decoded, RenderingSpec())
    frame7 = render_file(DATA_FILES / "emri_small.dcm", RenderingSpec(frame=7))
    assert not np.array_equal(frame7, render(decoded, RenderingSpec(frame=2)))


# --------------------------------------------------------------------------------- Pillow files


def test_8_bit_grey_png_is_shown_as_stored(tmp_path: Path) -> None:
    grey = (np.arange(256, dtype=np.uint8).reshape(16, 16) // 2 + 40).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    out = render_file(tmp_path / "g.png")
    np.testing.assert_array_equal(out[:, :, 1], grey)


def test_16_bit_png_gets_a_percentile_window_or_a_user_window(tmp_path: Path) -> None:
    values = (np.arange(10_000, dtype=np.uint16) * 5).reshape(100, 100)
    Image.fromarray(values).save(tmp_path / "w.png")
    decoded = decode_file(tmp_path / "w.png")
    assert decoded.pixels.dtype == np.float32
    np.testing.assert_array_equal(decoded.pixels, values)
    assert render(decoded, RenderingSpec())[:, :, 0].ravel()[5000] == 128
    user = render(decoded, RenderingSpec(window=(25000.5, 10001.0)))[:, :, 0].ravel()
    assert (user[:4000] == 0).all()
    assert (user[6001:] == 255).all()


def test_tiff_pages_are_frames(tmp_path: Path) -> None:
    pages = [Image.fromarray(np.full((4, 6), value, dtype=np.uint16)) for value in (100, 60000)]
    pages[0].save(tmp_path / "p.tif", save_all=True, append_images=pages[1:])
    second = decode_file(tmp_path / "p.tif", frame=1)
    assert (second.frames, second.frame) == (2, 1)
    assert float(second.pixels.min()) == 60000.0
    with pytest.raises(ImageDecodeError, match="frame 2 asked for, but the file has 2 frames"):
        decode_file(tmp_path / "p.tif", frame=2)
    Image.new("L", (3, 3)).save(tmp_path / "one.png")
    with pytest.raises(ImageDecodeError, match="has 1 frame "):
        decode_file(tmp_path / "one.png", frame=1)


def test_colour_png_and_transparency(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 50, 0], [200, 100, 50, 255]]], np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    decoded = decode_file(tmp_path / "a.png")
    assert decoded.is_colour
    assert render(decoded, RenderingSpec())[0].tolist() == [[0, 0, 0], [200, 100, 50]]
    assert render(decoded, RenderingSpec(invert=True))[0].tolist() == [[255] * 3, [55, 155, 205]]


def test_a_dicom_whose_preamble_is_a_tiff_header_is_read_as_dicom() -> None:
    assert (DATA_FILES / "RG1_UNCR.dcm").read_bytes()[:4] == b"II*\x00"
    assert decode_file(DATA_FILES / "RG1_UNCR.dcm").photometric == "MONOCHROME1"


def test_files_that_are_no_image(tmp_path: Path) -> None:
    (tmp_path / "e.dcm").touch()
    with pytest.raises(ImageDecodeError, match="file is empty"):
        decode_file(tmp_path / "e.dcm")
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_file(PYDICOM_FILES / "rtplan.dump")
    with pytest.raises(ImageDecodeError, match="file not found"):
        render_file(tmp_path / "missing.png")


def test_render_output_is_a_fresh_contiguous_uint8_array() -> None:
    for path in (PYDICOM_FILES / "CT_small.dcm", DATA_FILES / "US1_UNCR.dcm"):
        out = render_file(path)
        assert out.dtype == np.uint8
        assert out.ndim == 3
        assert out.shape[2] == 3
        assert out.flags.c_contiguous
        assert out.flags.writeable


@pytest.mark.parametrize(
    "spec",
    [RenderingSpec(), RenderingSpec(invert=True), RenderingSpec(window=(0.0, 10.0))],
)
def test_render_never_changes_the_decoded_pixels(spec: RenderingSpec) -> None:
    for path in (
        DATA_FILES / "RG3_UNCI.dcm",
        DATA_FILES / "vlut_04.dcm",
        DATA_FILES / "SC_rgb.dcm",
    ):
        decoded = decode_file(path)
        before = decoded.pixels.copy()
        first = render(decoded, spec)
        np.testing.assert_array_equal(decoded.pixels, before)
        np.testing.assert_array_equal(render(decoded, spec), first)
