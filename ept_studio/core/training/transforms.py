"""Image tensors to model inputs: the paper's train augmentation and the plain test-time resize.

Samples arrive as RGB ``uint8`` tensors ``[3, H, W]`` of any size (the data layer renders them);
float tensors are taken to be in [0, 1] already. Random choices come from a ``torch.Generator``
the caller owns, never from the global RNG, so a run is reproducible whatever else draws random
numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from ept_studio.common.errors import ConfigError, DatasetError

ImageTransform = Callable[[torch.Tensor], torch.Tensor]
"""Turns one image ``[3, H, W]`` into a normalised float tensor ``[3, size, size]``."""

ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
"""RandomResizedCrop's standard range of crop aspect ratios (width / height)."""

_CROP_ATTEMPTS = 10


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A crop in pixels: top-left corner and size."""

    top: int
    left: int
    height: int
    width: int


def sample_crop(
    height: int,
    width: int,
    scale: tuple[float, float],
    generator: torch.Generator,
    ratio: tuple[float, float] = ASPECT_RATIO_RANGE,
) -> CropBox:
    """RandomResizedCrop's box: torchvision's algorithm, drawing from ``generator``.

    Up to ten tries at a box covering a ``scale`` share of the area with an aspect ratio in
    ``ratio``; if none fits, the largest centred box with an allowed aspect ratio.
    """
    area = height * width
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(_CROP_ATTEMPTS):
        area_draw, ratio_draw = torch.rand(2, generator=generator).tolist()
        target_area = area * (scale[0] + (scale[1] - scale[0]) * area_draw)
        aspect = math.exp(log_low + (log_high - log_low) * ratio_draw)
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
            return CropBox(top, left, crop_h, crop_w)
    return _central_crop(height, width, ratio)


def _central_crop(height: int, width: int, ratio: tuple[float, float]) -> CropBox:
    image_ratio = width / height
    if image_ratio < min(ratio):
        crop_w, crop_h = width, round(width / min(ratio))
    elif image_ratio > max(ratio):
        crop_w, crop_h = round(height * max(ratio)), height
    else:
        crop_w, crop_h = width, height
    return CropBox((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)


def train_transform(
    size: int,
    mean: Sequence[float],
    std: Sequence[float],
    crop_scale: tuple[float, float] = (0.08, 1.0),
    hflip: bool = True,
    *,
    generator: torch.Generator,
) -> ImageTransform:
    """RandomResizedCrop(size, crop_scale, bicubic, antialias), a random mirror, then normalise."""
    normalise = _normaliser(mean, std)

    def transform(image: torch.Tensor) -> torch.Tensor:
        image = _checked(image)
        box = sample_crop(int(image.shape[-2]), int(image.shape[-1]), crop_scale, generator)
        pixels = _resize(
            _to_unit_float(TF.crop(image, box.top, box.left, box.height, box.width)), size
        )
        if hflip and bool(torch.rand(1, generator=generator) < 0.5):
            pixels = TF.horizontal_flip(pixels)
        return normalise(pixels)

    return transform


def eval_transform(size: int, mean: Sequence[float], std: Sequence[float]) -> ImageTransform:
    """Resize the whole image to ``size`` x ``size`` (bicubic, antialiased), then normalise."""
    normalise = _normaliser(mean, std)

    def transform(image: torch.Tensor) -> torch.Tensor:
        return normalise(_resize(_to_unit_float(_checked(image)), size))

    return transform


def batch_tensors(samples: Sequence[torch.Tensor], transform: ImageTransform) -> torch.Tensor:
    """Transform each image and stack them into ``[B, 3, size, size]``."""
    if not samples:
        raise DatasetError("cannot make a batch from no images")
    return torch.stack([transform(image) for image in samples])


def _checked(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] not in (1, 3):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise DatasetError(f"an image must be an RGB tensor [3, H, W], got {shape}")
    if image.dtype != torch.uint8 and not image.is_floating_point():
        raise DatasetError(f"an image must be uint8 or float, got {image.dtype}")
    if image.shape[-1] < 1 or image.shape[-2] < 1:
        raise DatasetError(f"an image has no pixels: shape {tuple(image.shape)}")
    return image.expand(3, -1, -1) if image.shape[0] == 1 else image


def _to_unit_float(image: torch.Tensor) -> torch.Tensor:
    if image.dtype == torch.uint8:
        return image.float().div_(255.0)
    return image.float()


def _resize(pixels: torch.Tensor, size: int) -> torch.Tensor:
    resized = TF.resize(pixels, [size, size], InterpolationMode.BICUBIC, antialias=True)
    # Bicubic overshoots at edges; clamp as an 8-bit resize (PIL) would.
    return torch.clamp(resized, 0.0, 1.0)


def _normaliser(mean: Sequence[float], std: Sequence[float]) -> ImageTransform:
    if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
        raise ConfigError(f"normalisation needs 3 means and 3 positive stds, got {mean}, {std}")
    mean_t = torch.tensor([float(m) for m in mean]).view(3, 1, 1)
    std_t = torch.tensor([float(s) for s in std]).view(3, 1, 1)

    def normalise(pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - mean_t) / std_t

    return normalise
