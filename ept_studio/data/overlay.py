"""Attention overlays: a model's per-patch attention, drawn over the rendered image.

attention ``[heads, patches]`` (or a ``[patches]`` map such as the rollout) -> mean over heads (or one
head) -> the patch grid -> min-max to 0..1 -> bilinear upsampling to the displayed image (half-pixel
centres, so each value sits at the centre of its patch's cell) -> viridis, a perceptually uniform
colormap readable by colour-blind people -> alpha blend over the rendered (windowed) image.

numpy and Pillow only. The GUI keeps :func:`attention_heatmap` once per image and calls
:func:`blend` as its opacity slider moves; the CLI saves :func:`captioned` PNGs. The caption says
"model attention": a description of the model, not a finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ept_studio.common.errors import ConfigError, ExportError

CAPTION = "model attention"

# Matplotlib's viridis (CC0, van der Walt & Smith), entries 0, 16, ..., 240 and 255 of its 256.
_VIRIDIS_INDEX = np.array(
    [0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240, 255]
)
_VIRIDIS_RGB = np.array(
    [
        [0.267004, 0.004874, 0.329415],
        [0.282327, 0.094955, 0.417331],
        [0.278826, 0.175490, 0.483397],
        [0.258965, 0.251537, 0.524736],
        [0.229739, 0.322361, 0.545706],
        [0.199430, 0.387607, 0.554642],
        [0.172719, 0.448791, 0.557885],
        [0.149039, 0.508051, 0.557250],
        [0.127568, 0.566949, 0.550556],
        [0.120638, 0.625828, 0.533488],
        [0.157851, 0.683765, 0.501686],
        [0.246070, 0.738910, 0.452024],
        [0.369214, 0.788888, 0.382914],
        [0.515992, 0.831158, 0.294279],
        [0.678489, 0.863742, 0.189503],
        [0.845561, 0.887322, 0.099702],
        [0.993248, 0.906157, 0.143936],
    ]
)


def head_mean(attention: np.ndarray, head: int | None = None) -> np.ndarray:
    """``[patches]``: the mean over heads of ``[heads, patches]``, or one head; a 1-D map as is."""
    values = np.asarray(attention, dtype=np.float64)
    if values.ndim == 1:
        if head is not None:
            raise ConfigError("this attention map has no heads to choose from")
        return values
    if values.ndim != 2:
        raise ConfigError(f"attention must be [heads, patches] or [patches], got {values.shape}")
    if head is None:
        mean: np.ndarray = values.mean(axis=0)
        return mean
    if not 0 <= head < values.shape[0]:
        raise ConfigError(
            f"head {head} does not exist: this model has heads 0..{values.shape[0] - 1}"
        )
    single: np.ndarray = values[head]
    return single


def patch_grid(values: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """``[patches]`` -> ``[rows, columns]`` (patches in raster order, as the ViT embeds them)."""
    rows, columns = grid
    if values.shape != (rows * columns,):
        raise ConfigError(
            f"{values.shape[0]} attention values do not fill a {rows} x {columns} grid"
        )
    return values.reshape(rows, columns)


def normalise(values: np.ndarray) -> np.ndarray:
    """Min-max to 0..1; a constant map (no preference) becomes all zeros."""
    low, high = float(values.min()), float(values.max())
    if not high > low:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) / (high - low)


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` linear-interpolation weights, half-pixel centres, edges held (no wrap)."""
    source = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    source = np.clip(source, 0.0, n_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    fraction = source - low
    matrix = np.zeros((n_out, n_in))
    rows = np.arange(n_out)
    np.add.at(matrix, (rows, low), 1.0 - fraction)
    np.add.at(matrix, (rows, high), fraction)
    return matrix


def upsample_bilinear(grid_values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A ``[rows, columns]`` grid bilinearly resized to ``size`` = (height, width)."""
    height, width = size
    rows, columns = grid_values.shape
    resized: np.ndarray = (
        bilinear_matrix(rows, height) @ grid_values @ bilinear_matrix(columns, width).T
    )
    return resized


def attention_map(
    attention: np.ndarray, grid: tuple[int, int], size: tuple[int, int], head: int | None = None
) -> np.ndarray:
    """``[height, width]`` in 0..1: the (head-mean) attention on the patch grid, upsampled."""
    return upsample_bilinear(normalise(patch_grid(head_mean(attention, head), grid)), size)


def viridis(values: np.ndarray) -> np.ndarray:
    """Values in 0..1 -> ``[..., 3]`` uint8 RGB (linear between the table's entries)."""
    position = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0) * 255.0
    channels = [np.interp(position, _VIRIDIS_INDEX, _VIRIDIS_RGB[:, c]) for c in range(3)]
    return np.rint(np.stack(channels, axis=-1) * 255.0).astype(np.uint8)


def attention_heatmap(
    attention: np.ndarray, grid: tuple[int, int], size: tuple[int, int], head: int | None = None
) -> np.ndarray:
    """``[height, width, 3]`` uint8: :func:`attention_map` in viridis, ready to :func:`blend`."""
    return viridis(attention_map(attention, grid, size, head))


def blend(base: np.ndarray, heatmap: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * base + alpha * heatmap``, rounded; alpha 0 gives ``base`` back exactly."""
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"the overlay opacity must be between 0 and 1, got {alpha}")
    if base.shape != heatmap.shape or base.dtype != np.uint8 or heatmap.dtype != np.uint8:
        raise ConfigError(f"cannot blend a {heatmap.shape} heatmap over a {base.shape} image")
    mixed = base.astype(np.float64) * (1.0 - alpha) + heatmap.astype(np.float64) * alpha
    return np.rint(mixed).astype(np.uint8)


def attention_overlay(
    base: np.ndarray,
    attention: np.ndarray,
    grid: tuple[int, int],
    *,
    alpha: float = 0.5,
    head: int | None = None,
) -> np.ndarray:
    """The rendered image (``H x W x 3`` uint8) with the attention heatmap blended over it."""
    if base.ndim != 3 or base.shape[2] != 3:
        raise ConfigError(f"the base image must be H x W x 3, got {base.shape}")
    heatmap = attention_heatmap(attention, grid, (base.shape[0], base.shape[1]), head)
    return blend(base, heatmap, alpha)


def caption_text(head: int | None, heads: int | None = None, what: str = "") -> str:
    """``model attention (mean of 6 heads)``, ``model attention (head 2)`` or with ``what``."""
    if what:
        return f"{CAPTION} ({what})"
    if head is not None:
        return f"{CAPTION} (head {head})"
    return f"{CAPTION} (mean of {heads} heads)" if heads else CAPTION


def captioned(image: np.ndarray, caption: str = CAPTION) -> Image.Image:
    """The image with a dark band below it holding ``caption`` in light text, wrapped to fit."""
    height, width = image.shape[:2]
    line = max(14, min(48, width // 16))
    margin = max(2, line // 4)
    font = ImageFont.load_default(size=max(9, int(line * 0.65)))
    lines = _wrap(caption, font, width - 2 * margin)
    canvas = Image.new("RGB", (width, height + line * len(lines)), (16, 16, 16))
    canvas.paste(Image.fromarray(image, mode="RGB"), (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, text in enumerate(lines):
        position = (margin, height + line * index + line // 2)
        draw.text(position, text, fill=(235, 235, 235), font=font, anchor="lm")
    return canvas


def _wrap(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Words in lines no wider than ``width`` pixels (a single long word keeps its own line)."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) <= width:
            lines[-1] = candidate
        else:
            lines.append(word)
    return lines or [""]


def save_overlay(
    path: Path,
    base: np.ndarray,
    attention: np.ndarray,
    grid: tuple[int, int],
    *,
    alpha: float = 0.5,
    head: int | None = None,
    caption: str | None = None,
) -> Path:
    """Write the captioned overlay as a PNG; an unwritable place is an :class:`ExportError`."""
    overlay = attention_overlay(base, attention, grid, alpha=alpha, head=head)
    heads = attention.shape[0] if np.ndim(attention) == 2 else None
    text = caption if caption is not None else caption_text(head, heads)
    try:
        captioned(overlay, text).save(path, format="PNG")
    except OSError as err:
        raise ExportError(
            f"{path}: the overlay image cannot be written ({err.strerror or err})"
        ) from err
    return Path(path)


def grid_cell(index: int, grid: tuple[int, int], size: tuple[int, int]) -> tuple[slice, slice]:
    """The rows and columns of the displayed image that patch ``index``'s cell covers."""
    rows, columns = grid
    row, column = divmod(index, columns)
    height, width = size
    return (
        slice(row * height // rows, (row + 1) * height // rows),
        slice(column * width // columns, (column + 1) * width // columns),
    )


__all__: Sequence[str] = [
    "CAPTION",
    "attention_heatmap",
    "attention_map",
    "attention_overlay",
    "bilinear_matrix",
    "blend",
    "caption_text",
    "captioned",
    "grid_cell",
    "head_mean",
    "normalise",
    "patch_grid",
    "save_overlay",
    "upsample_bilinear",
    "viridis",
]
