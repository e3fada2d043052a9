"""Where EPT Studio keeps its per-user files: settings, logs, crash reports, the backbone cache.

Each lives in the platform's standard place (platformdirs: XDG folders on Linux, ``~/Library`` on
macOS, ``%LOCALAPPDATA%`` on Windows). ``$EPT_STUDIO_DATA`` puts all of them in one folder instead
(tests, portable installs). Qt-free and torch-free: every layer and the packaging scripts import it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import platformdirs

DATA_ENV = "EPT_STUDIO_DATA"
APP_NAME = "ept-studio"
SETTINGS_FILE = "settings.ini"
MANIFEST_FILENAME = "manifest.json"


@dataclasses.dataclass(frozen=True)
class AppDirs:
    """The folders of one user's EPT Studio files (none is created until something is written)."""

    data: Path
    """Location indexes, the demo project."""
    config: Path
    """The desktop app's settings (notice accepted, recent projects)."""
    cache: Path
    """Downloaded and converted files that can be made again."""
    logs: Path
    """Rotating log files (scrubbed of paths and names)."""
    crashes: Path
    """Crash reports, offered at the next start."""

    @property
    def backbones(self) -> Path:
        """The user's backbone cache (weights fetched or converted on this machine)."""
        return self.cache / "models"

    @property
    def settings_file(self) -> Path:
        return self.config / SETTINGS_FILE


def app_dirs() -> AppDirs:
    """The folders for this user now: ``$EPT_STUDIO_DATA`` if set, else the platform's."""
    override = os.environ.get(DATA_ENV)
    if override:
        root = Path(override)
        return AppDirs(root, root / "config", root / "cache", root / "logs", root / "crash-reports")
    data = platformdirs.user_data_path(APP_NAME)
    return AppDirs(
        data=data,
        config=platformdirs.user_config_path(APP_NAME),
        cache=platformdirs.user_cache_path(APP_NAME),
        logs=platformdirs.user_log_path(APP_NAME),
        crashes=data / "crash-reports",
    )


def is_frozen() -> bool:
    """True inside a PyInstaller bundle (``sys.frozen`` is set by its boot loader)."""
    return bool(getattr(sys, "frozen", False))


def package_dir() -> Path:
    """The folder of the ``ept_studio`` package (inside the bundle when frozen).

    This module lives in ``ept_studio/common/``, one folder below the package.
    """
    return Path(__file__).resolve().parents[1]


def resources_dir() -> Path:
    """``resources/`` (icons): next to the package in a checkout, at the bundle's root when frozen."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return package_dir().parent / "resources"


def app_icon_file() -> Path | None:
    """The largest rendered application icon there is (None when the icons were not made)."""
    folder = resources_dir() / "icons"
    for size in (256, 512, 128, 64):
        candidate = folder / f"ept-studio-{size}.png"
        if candidate.is_file():
            return candidate
    return None


def repository_models_dir() -> Path:
    """The ``models/`` folder of a source checkout (it may not exist in an installed package)."""
    return package_dir().parent / "models"


def user_cache_dir() -> Path:
    """Where downloaded or converted weights go for this user (``EPT_STUDIO_CACHE`` overrides).

    Else the backbone cache of :func:`app_dirs` (so ``EPT_STUDIO_DATA`` too).
    """
    override = os.environ.get("EPT_STUDIO_CACHE")
    if override:
        return Path(override)
    return app_dirs().backbones


def models_dir() -> Path:
    """The local models folder: ``EPT_STUDIO_MODELS``, else the checkout's ``models/``.

    Without either (an installed package run outside a checkout) this is the user cache.
    """
    override = os.environ.get("EPT_STUDIO_MODELS")
    if override:
        return Path(override)
    repo = repository_models_dir()
    return repo if repo.is_dir() else user_cache_dir()


def default_manifest_path() -> Path:
    """``manifest.json`` in :func:`models_dir`, falling back to the checkout's copy."""
    local = models_dir() / MANIFEST_FILENAME
    return local if local.is_file() else repository_models_dir() / MANIFEST_FILENAME
