"""Attention overlays, checked numerically: grid, bilinear upsampling, colormap, blend, caption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ept_studio.common.errors import ConfigError, ExportError
from ept_studio.data.overlay import (
    CAPTION,
    attention_heatmap,
    attention_map,
    attention_overlay,
    bilinear_matrix,
    blend,
    caption_text,
    captioned,
    grid_cell,
    head_mean,
    normalise,
    save_overlay,
    upsample_bilinear,
    viridis,
)


def _base(height: int = 60, width: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_bilinear_upsampling_is_exact_on_a_known_grid() -> None:
    """2 x 2 -> 4 x 4 with half-pixel centres: source coords -0.25, 0.25, 0.75, 1.25, edges held."""
    grid = np.array([[0.0, 4.0], [8.0, 12.0]])
    expected_rows = np.array([0.0, 0.25 * 4, 0.75 * 4, 4.0])  # along a row: 0 .. 4
    up = upsample_bilinear(grid, (4, 4))
    np.testing.assert_allclose(up[0], expected_rows, atol=1e-12)
    np.testing.assert_allclose(up[:, 0], expected_rows * 2, atol=1e-12)
    np.testing.assert_allclose(up[3], expected_rows + 8.0, atol=1e-12)
    assert up[1, 2] == pytest.approx(0.25 * 8 + 0.75 * 4)


def test_bilinear_reproduces_a_linear_ramp_and_identity() -> None:
    rows, columns = np.meshgrid(np.arange(4.0), np.arange(6.0), indexing="ij")
    ramp = 2.0 * rows + 3.0 * columns
    up = upsample_bilinear(ramp, (16, 24))  # a factor of 4 along both axes
    y = (np.arange(16) + 0.5) / 4 - 0.5
    x = (np.arange(24) + 0.5) / 4 - 0.5
    inside_y, inside_x = (y >= 0) & (y <= 3), (x >= 0) & (x <= 5)
    truth = 2.0 * y[:, None] + 3.0 * x[None, :]
    np.testing.assert_allclose(up[np.ix_(inside_y, inside_x)], truth[np.ix_(inside_y, inside_x)])
    np.testing.assert_allclose(upsample_bilinear(ramp, (4, 6)), ramp)
    np.testing.assert_allclose(bilinear_matrix(7, 19).sum(axis=1), 1.0)


@pytest.mark.parametrize("patch", [0, 5, 10, 15])
@pytest.mark.parametrize("size", [(64, 64), (50, 90), (224, 160)])
def test_one_hot_attention_peaks_in_its_patch_cell(patch: int, size: tuple[int, int]) -> None:
    grid = (4, 4)
    attention = np.full((3, 16), 0.01)
    attention[:, patch] = 0.9
    values = attention_map(attention, grid, size)
    peak = np.unravel_index(int(np.argmax(values)), values.shape)
    rows, columns = grid_cell(patch, grid, size)
    assert rows.start <= peak[0] < rows.stop
    assert columns.start <= peak[1] < columns.stop
    assert values.max() > 0.85  # pixel centres fall half a pixel off the patch centre
    assert values.min() == pytest.approx(0.0)
    overlay = attention_overlay(np.zeros((*size, 3), np.uint8), attention, grid, alpha=1.0)
    brightest = np.unravel_index(int(np.argmax(overlay.astype(int).sum(axis=2))), size)
    assert rows.start <= brightest[0] < rows.stop
    assert columns.start <= brightest[1] < columns.stop
    assert tuple(overlay[brightest]) == tuple(viridis(np.array(values.max())))


def test_alpha_zero_returns_the_base_exactly_and_one_the_heatmap() -> None:
    base = _base()
    attention = np.random.default_rng(1).random((6, 12))
    assert np.array_equal(attention_overlay(base, attention, (3, 4), alpha=0.0), base)
    heatmap = attention_heatmap(attention, (3, 4), base.shape[:2])
    assert np.array_equal(attention_overlay(base, attention, (3, 4), alpha=1.0), heatmap)
    half = blend(base, heatmap, 0.5)
    np.testing.assert_allclose(half, (base.astype(float) + heatmap) / 2, atol=0.5 + 1e-9)


def test_mean_over_heads_by_default_and_any_single_head() -> None:
    attention = np.zeros((2, 4))
    attention[0, 0] = 1.0
    attention[1, 3] = 1.0
    np.testing.assert_allclose(head_mean(attention), [0.5, 0.0, 0.0, 0.5])
    np.testing.assert_allclose(head_mean(attention, head=1), [0.0, 0.0, 0.0, 1.0])
    one = attention_map(attention, (2, 2), (20, 20), head=1)
    assert np.unravel_index(int(np.argmax(one)), one.shape) >= (10, 10)
    with pytest.raises(ConfigError, match="head 2 does not exist"):
        head_mean(attention, head=2)
    with pytest.raises(ConfigError, match="no heads"):
        head_mean(np.ones(4), head=0)
    with pytest.raises(ConfigError, match="do not fill"):
        attention_map(np.ones((2, 5)), (2, 2), (8, 8))


def test_normalise_and_constant_maps() -> None:
    np.testing.assert_allclose(normalise(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert not normalise(np.full(5, 0.2)).any()


def test_viridis_end_points_and_rising_lightness() -> None:
    assert tuple(viridis(np.array(0.0))) == (68, 1, 84)
    assert tuple(viridis(np.array(1.0))) == (253, 231, 37)
    assert np.abs(viridis(np.array(0.5)).astype(int) - (33, 145, 140)).max() <= 1  # #21908d
    ramp = viridis(np.linspace(0.0, 1.0, 64)).astype(float)
    lightness = ramp @ np.array([0.2126, 0.7152, 0.0722])
    assert np.all(np.diff(lightness) > 0)


def test_caption_band_and_text() -> None:
    assert caption_text(None, 6) == "model attention (mean of 6 heads)"
    assert caption_text(2, 6) == "model attention (head 2)"
    assert caption_text(None, what="rollout") == "model attention (rollout)"
    image = _base(100, 200)
    shown = captioned(image, caption_text(None, 6))
    band = max(14, min(48, 200 // 16))
    assert shown.size == (200, 100 + band)
    pixels = np.asarray(shown)
    assert np.array_equal(pixels[:100], image)
    text_area = pixels[100:]
    assert text_area.max() > 200
    assert text_area.min() < 30
    assert CAPTION == "model attention"
    narrow = captioned(_base(40, 96), caption_text(None, 6))
    assert narrow.size[1] >= 40 + 2 * 14  # wrapped onto more lines, nothing cut off


def test_save_overlay_writes_a_png(tmp_path: Path) -> None:
    base = _base(48, 64)
    attention = np.random.default_rng(2).random((4, 16))
    path = save_overlay(tmp_path / "x.png", base, attention, (4, 4), alpha=0.4)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] == 64
        assert image.size[1] > 48
        top = np.asarray(image.convert("RGB"))[:48]
    assert np.array_equal(top, attention_overlay(base, attention, (4, 4), alpha=0.4))
    with pytest.raises(ExportError, match="cannot be written"):
        save_overlay(tmp_path / "missing" / "x.png", base, attention, (4, 4))


def test_blend_refuses_bad_inputs() -> None:
    base = _base(8, 8)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        blend(base, base, 1.5)
    with pytest.raises(ConfigError, match="cannot blend"):
        blend(base, base[:4], 0.5)
