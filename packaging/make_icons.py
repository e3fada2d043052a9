"""Render the application icon from ``resources/icons/ept-studio.svg``.

Writes ``resources/icons/ept-studio-{16..512}.png`` (the window icon and the Linux desktop entry's
hicolor icons), ``ept-studio.ico`` (Windows) and ``ept-studio.icns`` (macOS) with Pillow. Qt's SVG
renderer draws the source, so nothing but the project's own dependencies is needed; run it after
changing the SVG: ``.venv/bin/python packaging/make_icons.py``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PIL import Image

ICONS = Path(__file__).resolve().parents[1] / "resources" / "icons"
SOURCE = ICONS / "ept-studio.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render_png(size: int, out: Path) -> Path:
    """Draw the SVG at ``size`` x ``size`` pixels (antialiased, transparent corners)."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        raise SystemExit(f"{SOURCE} is not a valid SVG file")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out)):
        raise SystemExit(f"could not write {out}")
    return out


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    pngs = {size: render_png(size, ICONS / f"ept-studio-{size}.png") for size in SIZES}
    largest = Image.open(pngs[512]).convert("RGBA")
    largest.save(ICONS / "ept-studio.ico", sizes=[(s, s) for s in SIZES if s <= 256])
    largest.save(ICONS / "ept-studio.icns")
    del app
    for path in sorted(ICONS.iterdir()):
        sys.stdout.write(f"{path.relative_to(ICONS.parents[1])}  {path.stat().st_size:>7} bytes\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
