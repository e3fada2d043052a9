"""The app's log files: rotating, and scrubbed of anything that could identify a patient.

File and folder names often carry patient names or IDs, and DICOM person names (``DOE^JOHN``) can
reach a message through an error text. Every record written to the log file passes
:class:`PhiScrubber` first: absolute paths outside EPT Studio's own code, image file names, person
names and identifying DICOM keywords with their values are replaced by placeholders.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
from pathlib import Path

from ept_studio import __version__
from ept_studio.appdata import app_dirs, package_dir

LOG_FILE = "ept-studio.log"
MAX_BYTES = 1_000_000
BACKUP_COUNT = 5
PATH_PLACEHOLDER = "<path>"
FILE_PLACEHOLDER = "<image file>"
NAME_PLACEHOLDER = "<name>"
_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"

_IMAGE_SUFFIXES = "dcm|dicom|dic|ima|png|jpe?g|tiff?|bmp|gif|webp|nii|nrrd|mha|mhd|svs|ndpi"
_IMAGE_FILE = re.compile(rf"[^\s'\"<>|*?/\\]+\.(?:{_IMAGE_SUFFIXES})(?:\.gz)?\b", re.IGNORECASE)
# An absolute path (POSIX, Windows drive, UNC, ~). A quoted one keeps its spaces; a bare one runs
# to the next space, and on across a space while the next word still holds a separator
# (``/home/jo/Patient Doe/ct 1.dcm``).
_PATH_START = r"(?:(?<![\w.~])[A-Za-z]:[\\/]|(?<![\w.:/\\])\\\\|(?<![\w.:/~<])/|(?<![\w.])~[\\/])"
_QUOTED_PATH = re.compile(rf"(['\"])({_PATH_START}[^'\"\n]*)\1")
_BARE_PATH = re.compile(rf"{_PATH_START}[^\s'\"<>|]+(?: [^\s'\"<>|/\\]*[/\\][^\s'\"<>|]*)*")
_PERSON_NAME = re.compile(r"[^\s'\"=:,;()\[\]{}<>^]*\^+\w[^\s'\",;()\[\]{}<>]*")
_IDENTIFYING_KEYWORD = re.compile(
    r"\b(Patient\w*|OtherPatient\w*|ReferringPhysician\w*|PerformingPhysician\w*|"
    r"OperatorsName|InstitutionName|InstitutionAddress|AccessionNumber|"
    r"(?:Study|Series|SOPInstance)InstanceUID|StudyID|(?:Study|Series|Acquisition|Content)Date)"
    r"(\s*[=:]\s*)('[^']*'|\"[^\"]*\"|[^\s,;)\]}]+)",
)


def _hide_path(text: str) -> str:
    """A path inside EPT Studio's package keeps its package-relative form; any other is hidden."""
    if text.startswith("~"):
        return PATH_PLACEHOLDER
    try:
        relative = Path(text).resolve().relative_to(package_dir().parent)
    except (ValueError, OSError):
        return PATH_PLACEHOLDER
    return relative.as_posix() if relative.parts[:1] == ("ept_studio",) else PATH_PLACEHOLDER


def scrub(text: str) -> str:
    """``text`` with paths, image file names, person names and identifying DICOM values removed."""
    text = _IDENTIFYING_KEYWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}<removed>", text)
    text = _QUOTED_PATH.sub(lambda m: f"{m.group(1)}{_hide_path(m.group(2))}{m.group(1)}", text)
    text = _BARE_PATH.sub(lambda m: _hide_path(m.group(0)), text)
    text = _IMAGE_FILE.sub(FILE_PLACEHOLDER, text)
    text = _PERSON_NAME.sub(NAME_PLACEHOLDER, text)
    home = str(Path.home())
    return text.replace(home, PATH_PLACEHOLDER) if len(home) > 1 else text


class PhiScrubber(logging.Filter):
    """Rewrites each record (message, arguments, traceback) through :func:`scrub`; drops none."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage())
        record.args = None
        if record.exc_info:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


class _AppLogHandler(logging.handlers.RotatingFileHandler):
    """EPT Studio's own handler class, so a second set-up finds and replaces it."""


def setup_logging(folder: Path | None = None, *, level: int = logging.INFO) -> Path:
    """Log EPT Studio's records (and Python warnings) to a rotating file; its path.

    Idempotent: called again (the CLI, then the desktop app) it keeps one handler, moved to the
    current log folder if that changed. Third-party libraries still log only warnings and worse.
    """
    folder = folder or app_dirs().logs
    path = folder / LOG_FILE
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _AppLogHandler)]:
        if Path(handler.baseFilename) == path.absolute():
            return path
        root.removeHandler(handler)
        handler.close()
    folder.mkdir(parents=True, exist_ok=True)
    handler = _AppLogHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(PhiScrubber())
    root.addHandler(handler)
    logging.getLogger("ept_studio").setLevel(
        min(level, logging.getLogger("ept_studio").level or level)
    )
    logging.captureWarnings(True)
    logging.getLogger("ept_studio").info("EPT Studio %s started", __version__)
    return path
