"""File helpers every layer may use (the bottom layer, next to ``errors``)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from ept_studio.common.errors import ConfigError, ExportError

_CHUNK = 1 << 20
PARTIAL_SUFFIX = ".partial"


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (weight files are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def display_path(path: Path | str) -> str:
    """A path as text that any terminal, CSV or database takes.

    On Linux a file name is bytes and need not be UTF-8: Python keeps such bytes as lone
    surrogates, which no UTF-8 writer accepts. They are shown as replacement characters (U+FFFD).
    """
    return os.fsencode(path).decode("utf-8", errors="replace")


def is_utf8_name(path: Path | str) -> bool:
    """Whether the path's text encodes as UTF-8 (a file name made of other bytes does not)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_output_file(path: Path, what: str) -> Path:
    """Refuse, before any work, an output file that could not be written; ``path`` when fine.

    A missing folder is fine (:func:`atomic_write_text` creates it); an existing folder where the
    file should go, or a file where a folder is needed, is not.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{display_path(path)} is a folder: give a file name for the {what}")
    _check_creatable_folder(path.parent, what)
    return path


def check_output_folder(path: Path, what: str) -> Path:
    """Refuse, before any work, an output folder that is an existing file or cannot be made."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{display_path(path)} is a file: give a folder for the {what}")
    _check_creatable_folder(path, what)
    return path


def _check_creatable_folder(folder: Path, what: str) -> None:
    """The nearest existing folder at or above ``folder`` must be a writable folder."""
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"{display_path(existing)} is a file, so the folder for the {what} cannot be made"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{display_path(existing)}: no permission to write the {what} there")


def make_parent_folder(path: Path, what: str) -> Path:
    """Make the folder an output file goes into (for writers that refuse a missing one)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(
            f"{display_path(path.parent)}: the folder for the {what} cannot be made "
            f"({err.strerror or err})"
        ) from err
    return path


def atomic_write_text(path: Path, text: str, what: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all; its folders are made if missing.

    The text goes to ``<name>.partial`` first and replaces ``path`` only once complete, so a
    failure (a full disk, an interrupted run) never leaves a half-written file for a reader.
    """
    return _atomic_write(
        path, lambda partial: partial.write_text(text, encoding="utf-8", newline=""), what
    )


def atomic_write_bytes(path: Path, data: bytes, what: str) -> Path:
    """:func:`atomic_write_text` for bytes."""
    return _atomic_write(path, lambda partial: partial.write_bytes(data), what)


def _atomic_write(path: Path, write: Callable[[Path], object], what: str) -> Path:
    path = Path(path)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        partial.replace(path)
    except (OSError, UnicodeEncodeError) as err:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
        reason = err.strerror if isinstance(err, OSError) else None
        raise ExportError(
            f"{display_path(path)}: the {what} cannot be written ({reason or err})"
        ) from err
    return path
