"""The CLI's output layer."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO


class Console:
    """The CLI's output layer: results to stdout, progress and notes to stderr."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._progress_shown = False

    def line(self, text: str = "") -> None:
        self._end_progress()
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self._end_progress()
        self.err.write(text + "\n")
        self.err.flush()

    def report(self, markdown: str, out: Path | None = None) -> None:
        """Print a report, and write it to ``out`` too when one is given (its folder made)."""
        self.line(markdown)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(markdown if markdown.endswith("\n") else markdown + "\n", "utf-8")
            self.note(f"wrote {out}")

    def progress(self, done: int, total: int, text: str) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.err.write(f"\r[{bar}] {done}/{total} {text}")
        self.err.flush()
        self._progress_shown = True

    def _end_progress(self) -> None:
        if self._progress_shown:
            self.err.write("\n")
            self._progress_shown = False
