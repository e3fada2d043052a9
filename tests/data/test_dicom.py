"""DICOM headers and pixels, on pydicom's and pydicom-data's real files."""

from __future__ import annotations

import hashlib
import logging
import shutil
import struct
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pydicom.config
import pydicom.data
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut

from ept_studio.common.errors import ImageDecodeError
from ept_studio.data.dicom import decode_dicom, is_dicom_file, read_dicom_header
from ept_studio.data.packaged_dicom import pydicom_data_folder

PYDICOM_FILES = Path(pydicom.data.__file__).parent / "test_files"
_DATA = pydicom_data_folder()
assert _DATA is not None, "pydicom-data (a dev dependency) is not installed"
DATA_FILES: Path = _DATA
MARKER = "PHIMARKER"


def _copy_with(tmp_path: Path, source: Path, name: str = "copy.dcm", **values: object) -> Path:
    """A copy of ``source`` with some attributes changed (keyword=value; None deletes).

    Values are written as given, valid or not (the point is to test broken files).
    """
    ds = pydicom.dcmread(source)
    path = tmp_path / name
    with pydicom.config.disable_value_validation():
        for keyword, value in values.items():
            holder = ds.file_meta if keyword == "TransferSyntaxUID" else ds
            if value is None:
                delattr(holder, keyword)
            else:
                setattr(holder, keyword, value)
        syntax = ds.file_meta.TransferSyntaxUID
        if syntax.is_compressed and not ds["PixelData"].is_undefined_length:
            ds.PixelData = encapsulate([ds.PixelData])
        ds.save_as(path, enforce_file_format=False)
    return path


# --------------------------------------------------------------------------------- header


def test_header_of_ct_small() -> None:
    header = read_dicom_header(PYDICOM_FILES / "CT_small.dcm")
    assert header.modality == "CT"
    assert (header.rows, header.columns, header.frames) == (128, 128, 1)
    assert header.photometric == "MONOCHROME2"
    assert (header.bits_stored, header.pixel_representation) == (16, 1)
    assert header.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert header.transfer_syntax_name == "Explicit VR Little Endian"
    assert header.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    assert header.sop_class_name == "CT Image Storage"
    assert header.burned_in_annotation is None
    assert header.pixel_spacing == pytest.approx((0.661468, 0.661468))
    assert header.has_pixel_data
    assert header.patient_id == "1CT1"
    assert header.study_instance_uid is not None
    assert header.series_instance_uid is not None


def test_header_repr_hides_patient_and_uids() -> None:
    header = read_dicom_header(PYDICOM_FILES / "CT_small.dcm")
    for shown in (repr(header), str(header), f"{header}"):
        assert "1CT1" not in shown
        assert str(header.study_instance_uid) not in shown
        assert str(header.series_instance_uid) not in shown
        assert shown.count("<hidden>") == 3
        assert "modality='CT'" in shown


@pytest.mark.parametrize(
    ("name", "has_pixels", "frames"),
    [
        ("MR_small_bigendian.dcm", True, 1),
        ("emri_small_jpeg_ls_lossless.dcm", True, 10),
        ("reportsi.dcm", False, 1),
        ("rtplan.dcm", False, 1),
    ],
)
def test_header_tells_whether_there_are_pixels(name: str, has_pixels: bool, frames: int) -> None:
    folder = PYDICOM_FILES if (PYDICOM_FILES / name).is_file() else DATA_FILES
    header = read_dicom_header(folder / name)
    assert header.has_pixel_data is has_pixels
    assert header.frames == frames


def test_header_of_an_enhanced_multi_frame_ct() -> None:
    header = read_dicom_header(DATA_FILES / "eCT_Supplemental.dcm")
    assert header.sop_class_name == "Enhanced CT Image Storage"
    assert header.frames == 2
    assert header.burned_in_annotation is False
    assert header.pixel_spacing == pytest.approx((0.388672, 0.388672))  # functional groups


@pytest.mark.parametrize(("value", "expected"), [("YES", True), ("NO", False), ("maybe", None)])
def test_burned_in_annotation(tmp_path: Path, value: str, expected: bool | None) -> None:
    path = _copy_with(tmp_path, PYDICOM_FILES / "CT_small.dcm", BurnedInAnnotation=value)
    assert read_dicom_header(path).burned_in_annotation is expected


def test_zero_pixel_spacing_is_none() -> None:
    assert read_dicom_header(DATA_FILES / "RG1_UNCI.dcm").pixel_spacing is None  # [0, 0]


def test_header_errors(tmp_path: Path) -> None:
    png = tmp_path / "a.dcm"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    with pytest.raises(ImageDecodeError, match="not a DICOM file"):
        read_dicom_header(png)
    empty = tmp_path / "empty.dcm"
    empty.touch()
    with pytest.raises(ImageDecodeError, match="file is empty"):
        read_dicom_header(empty)
    with pytest.raises(ImageDecodeError, match="file not found"):
        read_dicom_header(tmp_path / "gone.dcm")


def test_is_dicom_file(tmp_path: Path) -> None:
    assert is_dicom_file(PYDICOM_FILES / "CT_small.dcm")
    assert is_dicom_file(DATA_FILES / "RG1_UNCR.dcm")  # a TIFF header in its preamble
    assert not is_dicom_file(PYDICOM_FILES / "no_meta.dcm")  # a bare dataset, no preamble
    assert not is_dicom_file(PYDICOM_FILES / "README.txt")
    assert not is_dicom_file(tmp_path / "missing.dcm")
    short = tmp_path / "short.dcm"
    short.write_bytes(b"DICM")
    assert not is_dicom_file(short)


# --------------------------------------------------------------------------------- transfer syntaxes

MR_SMALL_VARIANTS = [
    "MR_small_implicit.dcm",  # Implicit VR Little Endian
    "MR_small_bigendian.dcm",  # Explicit VR Big Endian
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_padded.dcm",
]


@pytest.mark.parametrize("name", MR_SMALL_VARIANTS)
def test_lossless_syntaxes_give_the_same_signed_16_bit_values(name: str) -> None:
    reference = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm").pixel_array
    decoded = decode_dicom(PYDICOM_FILES / name)
    assert decoded.pixels.dtype == np.float32
    np.testing.assert_array_equal(decoded.pixels, reference.astype(np.float32))
    assert decoded.windows[0] == (600.0, 1600.0)


EMRI_VARIANTS = [
    "emri_small.dcm",
    "emri_small_big_endian.dcm",
    "emri_small_RLE.dcm",
    "emri_small_jpeg_ls_lossless.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
]


@pytest.mark.parametrize("name", EMRI_VARIANTS)
def test_multi_frame_decodes_only_the_frame_asked_for(name: str) -> None:
    frames = pydicom.dcmread(DATA_FILES / "emri_small.dcm").pixel_array  # 10 x 64 x 64, 12-bit
    for frame in (0, 4, 9):
        decoded = decode_dicom(DATA_FILES / name, frame=frame)
        assert (decoded.frame, decoded.frames) == (frame, 10)
        np.testing.assert_array_equal(decoded.pixels, frames[frame].astype(np.float32))
    assert not np.array_equal(frames[0], frames[9])


def test_frame_out_of_range() -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_dicom(DATA_FILES / "emri_small.dcm", frame=10)
    assert caught.value.reason == "frame 10 asked for, but the file has 10 frames (0 to 9)"
    with pytest.raises(ImageDecodeError, match="has 1 frame "):
        decode_dicom(PYDICOM_FILES / "CT_small.dcm", frame=1)


@pytest.mark.parametrize(
    ("name", "bits"),
    [
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", 8),  # JPEG lossless, 8-bit unsigned
        ("JPEG-LL.dcm", 16),  # JPEG lossless, 16-bit signed
        ("MR2_J2KR.dcm", 12),  # JPEG 2000 lossless, 12-bit
        ("RG3_J2KR.dcm", 10),
    ],
)
def test_compressed_bit_depths_match_pydicom(name: str, bits: int) -> None:
    ds = pydicom.dcmread(DATA_FILES / name)
    assert ds.BitsStored == bits
    decoded = decode_dicom(DATA_FILES / name)
    np.testing.assert_array_equal(decoded.pixels, apply_modality_lut(ds.pixel_array, ds))


def test_jpeg_extended_12_bit() -> None:
    decoded = decode_dicom(PYDICOM_FILES / "JPGExtended.dcm")
    assert decoded.pixels.shape == (1024, 256)
    assert 200 < float(decoded.pixels.max()) < 4096


def test_lossy_and_lossless_jpeg_2000_agree_roughly() -> None:
    lossless = decode_dicom(DATA_FILES / "RG1_UNCR.dcm").pixels
    np.testing.assert_array_equal(decode_dicom(DATA_FILES / "RG1_J2KR.dcm").pixels, lossless)
    lossy = decode_dicom(DATA_FILES / "RG1_J2KI.dcm").pixels
    assert float(np.abs(lossy - lossless).mean()) < 0.02 * float(lossless.max())


# --------------------------------------------------------------------------------- modality LUT


def test_ct_rescale_gives_hounsfield_units_exactly() -> None:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    decoded = decode_dicom(PYDICOM_FILES / "CT_small.dcm")
    expected = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_array_equal(decoded.pixels, expected)
    assert (float(decoded.pixels.min()), float(decoded.pixels.max())) == (-896.0, 1167.0)
    assert decoded.modality == "CT"


def test_fractional_rescale_is_computed_in_float64(tmp_path: Path) -> None:
    path = _copy_with(
        tmp_path, PYDICOM_FILES / "CT_small.dcm", RescaleSlope="0.3", RescaleIntercept="-12.7"
    )
    ds = pydicom.dcmread(path)
    decoded = decode_dicom(path)
    assert decoded.pixels.dtype == np.float64
    np.testing.assert_array_equal(decoded.pixels, apply_modality_lut(ds.pixel_array, ds))


def test_modality_lut_sequence() -> None:
    ds = pydicom.dcmread(DATA_FILES / "mlut_18.dcm")
    decoded = decode_dicom(DATA_FILES / "mlut_18.dcm")
    np.testing.assert_array_equal(decoded.pixels, apply_modality_lut(ds.pixel_array, ds))
    assert (float(decoded.pixels.min()), float(decoded.pixels.max())) == (0.0, 65535.0)


def test_enhanced_ct_rescale_and_window_from_functional_groups() -> None:
    decoded = decode_dicom(DATA_FILES / "eCT_Supplemental.dcm", frame=1)
    assert float(decoded.pixels.min()) == -1024.0  # intercept -1024 lives in the shared group
    assert decoded.windows == ((49.0, 102.0),)


# --------------------------------------------------------------------------------- colour


def test_palette_colour_matches_pydicom() -> None:
    ds = pydicom.dcmread(DATA_FILES / "OBXXXX1A.dcm")
    decoded = decode_dicom(DATA_FILES / "OBXXXX1A.dcm")
    assert decoded.is_colour
    assert decoded.photometric == "PALETTE COLOR"
    np.testing.assert_array_equal(decoded.pixels, apply_color_lut(ds.pixel_array, ds))
    assert decoded.display_range == (0.0, 65535.0)


@pytest.mark.parametrize("name", ["OBXXXX1A_expb.dcm", "OBXXXX1A_rle.dcm", "OBXXXX1A_2frame.dcm"])
def test_palette_variants_agree(name: str) -> None:
    reference = decode_dicom(DATA_FILES / "OBXXXX1A.dcm").pixels
    np.testing.assert_array_equal(decode_dicom(DATA_FILES / name).pixels, reference)


def test_planar_configuration_1_equals_0() -> None:
    planar = decode_dicom(DATA_FILES / "color-pl.dcm")
    interleaved = decode_dicom(DATA_FILES / "color-px.dcm")
    assert pydicom.dcmread(DATA_FILES / "color-pl.dcm").PlanarConfiguration == 1
    np.testing.assert_array_equal(planar.pixels, interleaved.pixels)


def test_16_and_32_bit_rgb_have_their_own_display_range() -> None:
    eight = decode_dicom(DATA_FILES / "SC_rgb.dcm")
    sixteen = decode_dicom(DATA_FILES / "SC_rgb_16bit.dcm")
    assert (eight.display_range, sixteen.display_range) == ((0.0, 255.0), (0.0, 65535.0))
    np.testing.assert_array_equal(sixteen.pixels, eight.pixels * 257)


# --------------------------------------------------------------------------------- errors


def test_truncated_pixel_data() -> None:
    with pytest.raises(ImageDecodeError, match="file is truncated"):
        decode_dicom(PYDICOM_FILES / "MR_truncated.dcm")
    with pytest.raises(ImageDecodeError, match="file is truncated"):
        decode_dicom(DATA_FILES / "emri_small_jpeg_2k_lossless_too_short.dcm")


def test_a_file_cut_in_half(tmp_path: Path) -> None:
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    for cut in (200, 3000, 20_000, 38_000):  # the meta, the header, the pixel data twice
        path = tmp_path / f"cut{cut}.dcm"
        path.write_bytes(data[:cut])
        with pytest.raises(ImageDecodeError) as caught:
            decode_dicom(path)
        assert "truncated" in caught.value.reason or "damaged" in caught.value.reason


def test_no_pixel_data() -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_dicom(PYDICOM_FILES / "rtplan.dcm")
    assert caught.value.reason == (
        "no pixel data: this DICOM file holds no image (it is a RT Plan Storage object)"
    )


def test_unsupported_transfer_syntax_is_named(tmp_path: Path) -> None:
    path = _copy_with(
        tmp_path, PYDICOM_FILES / "CT_small.dcm", TransferSyntaxUID="1.2.840.10008.1.2.4.100"
    )
    with pytest.raises(ImageDecodeError) as caught:
        decode_dicom(path)
    assert caught.value.reason.startswith(
        "unsupported transfer syntax MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100): "
        "pydicom has no decoder for it"
    )


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path: Path) -> None:
    # The header claims 60000 x 60000 but holds 128 x 128 pixels: the limit must speak first.
    path = _copy_with(tmp_path, PYDICOM_FILES / "CT_small.dcm", Rows=60000, Columns=60000)
    with pytest.raises(ImageDecodeError) as caught:
        decode_dicom(path)
    assert caught.value.reason == "image is 60000 x 60000 = 3,600 MP, above the 179 MP limit"
    with pytest.raises(ImageDecodeError, match=r"128 x 128 = 0.0164 MP, above the 0.01 MP limit"):
        decode_dicom(PYDICOM_FILES / "CT_small.dcm", max_pixels=10_000)


def test_pixel_limit_counts_frames() -> None:
    with pytest.raises(ImageDecodeError, match=r"64 x 64 x 10 frames = 0.041 MP"):
        decode_dicom(DATA_FILES / "emri_small.dcm", max_pixels=40_000)
    assert decode_dicom(DATA_FILES / "emri_small.dcm", max_pixels=40_960).frames == 10


def test_invalid_number_of_frames() -> None:
    with pytest.raises(ImageDecodeError) as caught:
        decode_dicom(PYDICOM_FILES / "badVR.dcm")  # NumberOfFrames "1A"
    assert caught.value.reason == "the header's NumberOfFrames is not a number"


def test_decoding_never_changes_the_source(tmp_path: Path) -> None:
    path = tmp_path / "ct.dcm"
    shutil.copy(DATA_FILES / "693_J2KR.dcm", path)
    path.chmod(0o444)
    before, mtime = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    decode_dicom(path)
    read_dicom_header(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert path.stat().st_mtime_ns == mtime
    assert [p.name for p in tmp_path.iterdir()] == ["ct.dcm"]


# --------------------------------------------------------------------------------- privacy


def _phi_file(tmp_path: Path, name: str, **values: object) -> Path:
    phi = {
        keyword: f"{MARKER}{index}"
        for index, keyword in enumerate(
            [
                "PatientName",
                "PatientID",
                "InstitutionName",
                "ReferringPhysicianName",
                "AccessionNumber",
                "StudyID",
                "OperatorsName",
            ]
        )
    }
    return _copy_with(tmp_path, PYDICOM_FILES / "CT_small.dcm", name, **{**phi, **values})


def _with_bad_value(path: Path, prefix: str) -> Path:
    """Overwrite the value 1234567890 in the file with a marker string of the same length."""
    data = path.read_bytes()
    assert data.count(b"1234567890") == 1
    path.write_bytes(data.replace(b"1234567890", (prefix + MARKER).encode()))
    return path


def test_no_phi_in_errors_warnings_or_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    too_long = MARKER * 20  # an invalid LO value: pydicom warns and logs it, quoting it
    broken = [
        _phi_file(tmp_path, "rows.dcm", Rows=None, PatientID=too_long),
        _phi_file(tmp_path, "syntax.dcm", TransferSyntaxUID="1.2.840.10008.1.2.4.100"),
        _with_bad_value(_phi_file(tmp_path, "frames.dcm", NumberOfFrames="1234567890"), "x"),
        _with_bad_value(_phi_file(tmp_path, "slope.dcm", RescaleSlope="1234567890"), "y"),
    ]
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(_phi_file(tmp_path, "whole.dcm").read_bytes()[:-500])
    broken.append(cut)
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        for path in broken:
            with pytest.raises(ImageDecodeError) as caught:
                decode_dicom(path)
            assert MARKER not in str(caught.value)
            try:
                header = repr(read_dicom_header(path))
            except ImageDecodeError as err:
                header = str(err)
            assert MARKER not in header
    assert not any(MARKER in str(w.message) for w in shown)
    assert MARKER not in caplog.text


# --------------------------------------------------------------------------------- damaged RLE


def _rle_frame() -> bytes:
    """MR_small_RLE's one frame: a 64-byte RLE header (2 segments, at 64 and 1948), then the data."""
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small_RLE.dcm")
    return next(generate_frames(ds.PixelData, number_of_frames=1))


DAMAGED_RLE: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    # a repeat run past the end of the segment's pixels made pylibjpeg-rle panic (Rust)
    "run past the pixels": (
        lambda f: f[:64] + bytes([0x81, 0x00]) * 40 + f[144:],
        "a segment decodes to 9038 bytes, 4096 expected",
    ),
    "second segment offset beyond the fragment": (
        lambda f: f[:8] + struct.pack("<I", len(f) + 1000) + f[12:],
        "(0 vs. 4096 bytes)",
    ),
    "segment count 15 for 2 segments": (
        lambda f: struct.pack("<I", 15) + f[4:],
        "number of RLE segments in the pixel data doesn't match the expected amount (15 vs. 2",
    ),
    "truncated segment": (
        lambda f: f[: len(f) // 2],
        "RLE segment data doesn't match the expected amount",
    ),
}


def _damaged_rle(tmp_path: Path, case: str) -> Path:
    damage, _ = DAMAGED_RLE[case]
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small_RLE.dcm")
    ds.PixelData = encapsulate([damage(_rle_frame())])
    path = tmp_path / f"{case.replace(' ', '-')}.dcm"
    ds.save_as(path)
    return path


@pytest.mark.parametrize("case", sorted(DAMAGED_RLE))
def test_damaged_rle_is_refused_naming_the_reason(tmp_path: Path, case: str) -> None:
    path = _damaged_rle(tmp_path, case)
    with pytest.raises(ImageDecodeError) as caught:
        decode_dicom(path)
    assert caught.value.reason.startswith(
        "the pixel data cannot be decoded (the RLE Lossless data is damaged: "
    )
    assert DAMAGED_RLE[case][1] in caught.value.reason


def test_damaged_rle_prints_no_decoder_panic(tmp_path: Path) -> None:
    """The refusal is all a user sees: no Rust panic text on stderr (run in a fresh process)."""
    paths = [str(_damaged_rle(tmp_path, case)) for case in sorted(DAMAGED_RLE)]
    script = (
        "import sys\n"
        "from ept_studio.data.dicom import decode_dicom\n"
        "from ept_studio.common.errors import ImageDecodeError\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        decode_dicom(path)\n"
        "    except ImageDecodeError:\n"
        "        print('refused')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=120
    )
    assert "panicked" not in run.stderr
    assert run.stderr == ""
    assert run.returncode == 0
    assert run.stdout.split() == ["refused"] * len(paths)


def test_rle_decodes_the_same_values_as_the_uncompressed_files() -> None:
    """pydicom's RLE decoder, on every RLE file pydicom and pydicom-data ship."""
    pairs = {
        PYDICOM_FILES / "SC_rgb_rle_32bit_2frame.dcm": DATA_FILES / "SC_rgb_32bit_2frame.dcm",
        PYDICOM_FILES / "rtdose_rle.dcm": PYDICOM_FILES / "rtdose.dcm",
        DATA_FILES / "OBXXXX1A_rle_2frame.dcm": DATA_FILES / "OBXXXX1A_2frame.dcm",
    }
    for compressed, plain in pairs.items():
        for frame in (0, 1):
            ours = decode_dicom(compressed, frame=frame).pixels
            np.testing.assert_array_equal(ours, decode_dicom(plain, frame=frame).pixels)
