"""A dropped file's preview in the viewer: its attention colours (to blend at the viewer's opacity)
against the preview's own overlay, and its caption."""

from __future__ import annotations

import numpy as np

from ept_studio.data.overlay import attention_heatmap, attention_overlay
from ept_studio.data.render import RenderingSpec
from ept_studio.services.project.preview import OVERLAY_OPACITY, ImagePreview
from ept_studio.services.project.viewer_caption import DROPPED
from ept_studio.services.project.viewer_preview import (
    blend_heatmap,
    preview_caption,
    preview_heatmap,
)


def _preview(seed: int = 0) -> tuple[ImagePreview, np.ndarray]:
    """A preview as services.preview makes it, and the attention colours it blended in."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    attention = rng.random((3, 16)).astype(np.float32)
    colours = attention_heatmap(attention, (4, 4), (40, 48))
    overlay = attention_overlay(image, attention, (4, 4), alpha=OVERLAY_OPACITY)
    scores = {"fundus": 0.27, "histology": 0.73}
    preview = ImagePreview(1, "scan.png", image, colours, scores, "histology", RenderingSpec())
    np.testing.assert_array_equal(preview.overlay, overlay)
    return preview, colours


def test_the_attention_colours_come_back_to_one_grey_level() -> None:
    preview, colours = _preview()
    recovered = preview_heatmap(preview)
    assert recovered.shape == colours.shape
    assert recovered.dtype == np.uint8
    assert np.abs(recovered.astype(int) - colours.astype(int)).max() <= 1
    # blended back at the preview's own opacity they give its overlay (to rounding)
    again = blend_heatmap(preview.image, recovered, OVERLAY_OPACITY)
    assert np.abs(again.astype(int) - preview.overlay.astype(int)).max() <= 1
    np.testing.assert_array_equal(blend_heatmap(preview.image, recovered, 0.0), preview.image)


def test_the_caption_of_a_dropped_file() -> None:
    preview, _ = _preview()
    caption = preview_caption(preview)
    assert caption.label_text == DROPPED
    assert caption.model_text == "Model: histology 73 % (model score)"
