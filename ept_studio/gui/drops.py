"""What travels in a drag: files from the file manager, or image ids from the gallery."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import QMimeData

IMAGE_IDS_MIME = "application/x-ept-studio-image-ids"


def dropped_paths(mime: QMimeData) -> list[Path]:
    """The local files and folders in a drop (other URLs, e.g. web links, are left out)."""
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


def image_ids_mime(image_ids: list[int]) -> QMimeData:
    mime = QMimeData()
    mime.setData(IMAGE_IDS_MIME, json.dumps(image_ids).encode("ascii"))
    return mime


def dropped_image_ids(mime: QMimeData) -> list[int]:
    """The gallery's image ids in a drop (empty when the drag came from elsewhere)."""
    if not mime.hasFormat(IMAGE_IDS_MIME):
        return []
    try:
        values = json.loads(bytes(mime.data(IMAGE_IDS_MIME).data()).decode("ascii"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return []
    return [int(v) for v in values if isinstance(v, int)]
