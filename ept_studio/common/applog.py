"""The app's log files: rotating, and scrubbed of anything that could identify a patient.

File and folder names often carry patient names or IDs, and DICOM person names (``DOE^JOHN``) can
reach a message through an error text. Every record written to the log file passes
:class:`PhiScrubber` first: absolute paths outside EPT Studio's own code, image file names, person
names and identifying DICOM keywords with their values are replaced by placeholders. A relative
path looks like any other word, so the paths the process was given (:func:`given_paths` of its
command line) are hidden wherever they appear, whole or by their file and folder names.
"""

from __future__ import annotations

import functools
import logging
import logging.handlers
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from ept_studio import __version__
from ept_studio.common.appdata import app_dirs, package_dir

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


def given_paths(arguments: Iterable[str]) -> tuple[str, ...]:
    """The texts to hide for the path-like command-line arguments: each path as given, absolute,
    and each of its file and folder names (longest first, so a whole path goes before its parts).

    An option (``--csv``) is not a path; a number or a one-word value is one only when it names
    something on disk, since a project or output name can be any word.
    """
    found: set[str] = set()
    for argument in arguments:
        text = str(argument)
        if not text or text.startswith("-") or not _looks_like_path(text):
            continue
        found.add(text)
        found.add(os.path.abspath(text))
        found.update(part for part in Path(text).parts if len(part.strip("/\\.")) >= 2)
    return tuple(sorted(found, key=lambda t: (-len(t), t)))


def _looks_like_path(text: str) -> bool:
    try:
        float(text)
        return False  # an option's value such as 0.5
    except ValueError:
        pass
    if any(sep in text for sep in ("/", "\\")) or "." in text.strip("."):
        return True
    try:
        return os.path.lexists(text)
    except (OSError, ValueError):
        return False


@functools.lru_cache(maxsize=8)
def _known_paths_pattern(known: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for every known path text, longest first, never matching inside a word."""
    ordered = sorted(known, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)")


def scrub(text: str, known: Sequence[str] = ()) -> str:
    """``text`` with paths, image file names, person names and identifying DICOM values removed.

    ``known``: texts of the paths this process was given (:func:`given_paths`), hidden as
    ``<path>`` wherever they appear. A file name that is not UTF-8 leaves no raw byte behind.
    """
    if known:
        text = _known_paths_pattern(tuple(known)).sub(PATH_PLACEHOLDER, text)
    text = _IDENTIFYING_KEYWORD.sub(lambda m: f"{m.group(1)}{m.group(2)}<removed>", text)
    text = _QUOTED_PATH.sub(lambda m: f"{m.group(1)}{_hide_path(m.group(2))}{m.group(1)}", text)
    text = _BARE_PATH.sub(lambda m: _hide_path(m.group(0)), text)
    text = _IMAGE_FILE.sub(FILE_PLACEHOLDER, text)
    text = _PERSON_NAME.sub(NAME_PLACEHOLDER, text)
    home = str(Path.home())
    text = text.replace(home, PATH_PLACEHOLDER) if len(home) > 1 else text
    return text.encode("utf-8", errors="replace").decode("utf-8")


class PhiScrubber(logging.Filter):
    """Rewrites each record (message, arguments, traceback) through :func:`scrub`; drops none."""

    def __init__(self, known: Sequence[str] = ()) -> None:
        super().__init__()
        self.known = tuple(known)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = scrub(record.getMessage(), self.known)
        record.args = None
        if record.exc_info:
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub(formatted, self.known)
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, self.known)
        return True


class _AppLogHandler(logging.handlers.RotatingFileHandler):
    """EPT Studio's own handler class, so a second set-up finds and replaces it."""


def setup_logging(
    folder: Path | None = None, *, level: int = logging.INFO, known: Sequence[str] = ()
) -> Path:
    """Log EPT Studio's records (and Python warnings) to a rotating file; its path.

    Idempotent: called again (the CLI, then the desktop app) it keeps one handler, moved to the
    current log folder if that changed. Third-party libraries still log only warnings and worse.
    ``known``: path texts to hide (see :func:`scrub`).
    """
    folder = folder or app_dirs().logs
    path = folder / LOG_FILE
    root = logging.getLogger()
    for handler in [h for h in root.handlers if isinstance(h, _AppLogHandler)]:
        if Path(handler.baseFilename) == path.absolute():
            for scrubber in handler.filters:
                if known and isinstance(scrubber, PhiScrubber):
                    scrubber.known = tuple(known)
            return path
        root.removeHandler(handler)
        handler.close()
    folder.mkdir(parents=True, exist_ok=True)
    handler = _AppLogHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8")
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(PhiScrubber(known))
    root.addHandler(handler)
    logging.getLogger("ept_studio").setLevel(
        min(level, logging.getLogger("ept_studio").level or level)
    )
    logging.captureWarnings(True)
    logging.getLogger("ept_studio").info("EPT Studio %s started", __version__)
    return path
