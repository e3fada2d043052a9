"""Thumbnails: the rendered image, scaled to fit a square, cached as PNG in the project's folder.

The cache key is the source file's sha256, the rendering spec and the size, so a changed file (or
a changed window) gets a new thumbnail and an unchanged one is never rendered twice. Files are
written atomically (a temporary file in the cache folder, then a rename), and only inside the cache
folder: never next to the source, which is opened read-only.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from ept_studio.common.errors import ConfigError, ProjectError
from ept_studio.common.files import file_sha256
from ept_studio.data.images import DEFAULT_MAX_PIXELS, DecodedImage, read_failure
from ept_studio.data.render import RenderingSpec, decode_file, render

THUMBNAIL_VERSION = 1
"""Bump when the way thumbnails are drawn changes, so that old cache entries are not reused."""


def thumbnail_name(content_sha256: str, spec: RenderingSpec, size: int) -> str:
    """``<file sha256>-<spec hash>-<size>.png``: the sha256 first, so a file's thumbnails are
    found (and cleaned up) by prefix."""
    spec_text = f"v{THUMBNAIL_VERSION}:{spec.to_json()}"
    spec_hash = hashlib.sha256(spec_text.encode("utf-8")).hexdigest()[:16]
    return f"{content_sha256}-{spec_hash}-{size}.png"


def thumbnail_for(
    path: Path,
    spec: RenderingSpec,
    cache_dir: Path,
    size: int = 256,
    *,
    content_sha256: str | None = None,
    decoded: DecodedImage | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Path:
    """The path of the cached PNG thumbnail of ``path`` (rendered with ``spec``), made if needed.

    A caller that has just hashed the file, or decoded it (frame ``spec.frame``), passes
    ``content_sha256`` / ``decoded`` so that neither is done twice. Decoding failures are
    :class:`ImageDecodeError`.
    """
    path, cache_dir = Path(path), Path(cache_dir)
    if isinstance(size, bool) or not isinstance(size, int) or not 16 <= size <= 4096:
        raise ConfigError(f"thumbnail size must be a whole number from 16 to 4096, got {size!r}")
    if _same_folder(cache_dir, path.parent):
        raise ConfigError(
            "the thumbnail cache folder must not be the source image's folder "
            "(sources are never written to)"
        )
    sha = content_sha256 or _hash(path)
    target = cache_dir / thumbnail_name(sha, spec, size)
    if target.is_file():
        return target
    if decoded is None:
        decoded = decode_file(path, frame=spec.frame, max_pixels=max_pixels)
    image = _fit(render(decoded, spec), decoded, size)
    _write_atomically(image, target)
    return target


def _hash(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError as err:
        raise read_failure(path, err) from err


def _same_folder(first: Path, second: Path) -> bool:
    try:
        return first.resolve() == second.resolve()
    except OSError:
        return False


def _fit(pixels: np.ndarray, decoded: DecodedImage, size: int) -> Image.Image:
    """Scale to fit ``size x size``, keeping the physical aspect ratio (pixel spacing) if known."""
    rows, columns = pixels.shape[:2]
    height, width = float(rows), float(columns)
    if decoded.pixel_spacing is not None:
        row_mm, column_mm = decoded.pixel_spacing
        height *= row_mm / column_mm
    scale = size / max(height, width)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = Image.fromarray(pixels)
    if shape == image.size:
        return image
    # Shrinking averages (Lanczos); enlarging a tiny image keeps its pixels visible as blocks.
    resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
    return image.resize(shape, resample)


def _write_atomically(image: Image.Image, target: Path) -> None:
    """Write to a temporary file beside ``target``, then rename it over: never a half PNG."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".thumb-", suffix=".tmp")
    except OSError as err:
        raise ProjectError(
            f"{target.parent}: the thumbnail cache folder cannot be written "
            f"({err.strerror or type(err).__name__})"
        ) from err
    try:
        with os.fdopen(handle, "wb") as stream:
            image.save(stream, format="PNG")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
