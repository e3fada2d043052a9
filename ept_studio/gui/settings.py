"""What the app remembers between sessions (QSettings): the notice accepted, the recent projects,
the project open when the app last closed, where new projects were last put and whether the gallery
shows one tile per series."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

ORGANISATION = "EPT Studio"
APPLICATION = "EPT Studio"
MAX_RECENT = 8
_NOTICE_KEY = "notice/accepted"
_RECENT_KEY = "projects/recent"
_LAST_KEY = "projects/last"
_PARENT_KEY = "projects/new_parent"
_SERIES_TILES_KEY = "gallery/series_tiles"


class AppSettings:
    """Typed access to the app's QSettings (tests point QSettings at a temporary folder)."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self._settings = settings or QSettings(
            QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANISATION, APPLICATION
        )

    @property
    def notice_accepted(self) -> bool:
        return str(self._settings.value(_NOTICE_KEY, "false")).lower() == "true"

    def accept_notice(self) -> None:
        self._settings.setValue(_NOTICE_KEY, "true")
        self._settings.sync()

    def recent_projects(self) -> list[Path]:
        """Recently used project folders, newest first (folders since deleted are left out)."""
        value = self._settings.value(_RECENT_KEY, [])
        if isinstance(value, str):
            names = [value]
        elif isinstance(value, (list, tuple)):
            names = [str(v) for v in value]
        else:
            names = []
        return [Path(name) for name in names if Path(name).is_dir()]

    def add_recent_project(self, folder: Path) -> None:
        folder = Path(folder).absolute()
        kept = [p for p in self.recent_projects() if p != folder]
        self._settings.setValue(_RECENT_KEY, [str(p) for p in [folder, *kept][:MAX_RECENT]])
        self._settings.sync()

    @property
    def last_project(self) -> Path | None:
        """The project open last (reopened at start), even if its folder is gone since."""
        value = self._settings.value(_LAST_KEY, "")
        return Path(str(value)) if value else None

    def set_last_project(self, folder: Path | None) -> None:
        self._settings.setValue(_LAST_KEY, str(Path(folder).absolute()) if folder else "")
        self._settings.sync()

    @property
    def new_project_parent(self) -> Path | None:
        """Where the user last put a new project (the New project dialog starts there)."""
        value = self._settings.value(_PARENT_KEY, "")
        return Path(str(value)) if value else None

    def set_new_project_parent(self, parent: Path) -> None:
        self._settings.setValue(_PARENT_KEY, str(Path(parent).absolute()))
        self._settings.sync()

    @property
    def gallery_series_tiles(self) -> bool:
        """Whether the gallery shows one tile per series (off: one per image)."""
        return str(self._settings.value(_SERIES_TILES_KEY, "false")).lower() == "true"

    def set_gallery_series_tiles(self, on: bool) -> None:
        self._settings.setValue(_SERIES_TILES_KEY, "true" if on else "false")
        self._settings.sync()
