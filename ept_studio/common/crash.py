"""Crash reports: an uncaught exception leaves a readable text file, offered at the next start.

A report holds the time, the app and Python versions, the platform, the exception type with its
message passed through :func:`ept_studio.common.applog.scrub`, and the traceback: file, line and code for
frames in EPT Studio's own package, the module path for library frames, and nothing at all for any
other file (a user's script or data folder can carry a patient's name). No local variables. The
paths on the command line are hidden too, relative ones included (``Patient X/scores.csv``).
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from ept_studio import __version__
from ept_studio.common.appdata import app_dirs, is_frozen, package_dir
from ept_studio.common.applog import given_paths, scrub, setup_logging

REPORT_PREFIX = "crash-"
REPORT_SUFFIX = ".txt"
SEEN_SUFFIX = ".seen"
CRASH_TEST_ENV = "EPT_STUDIO_CRASH_TEST"
MAX_MESSAGE = 500
MAX_CHAIN = 5
# What the crash test's message carries: a DICOM person name, a folder and an image file name.
CRASH_TEST_MARKERS = ("DOE^JOHN", "Patient Doe", "IM0001.dcm")

logger = logging.getLogger(__name__)


class CrashTestError(RuntimeError):
    """Raised on purpose at start when ``EPT_STUDIO_CRASH_TEST=1`` (tests of the crash path)."""


def raise_if_crash_test() -> None:
    """Fail like a real crash would, with PHI-like text in the message, when the test asks."""
    if os.environ.get(CRASH_TEST_ENV) == "1":
        folder = Path.home() / CRASH_TEST_MARKERS[1]
        raise CrashTestError(
            f"crash test ({CRASH_TEST_ENV}=1) while reading '{folder / CRASH_TEST_MARKERS[2]}' "
            f"for {CRASH_TEST_MARKERS[0]}"
        )


def _library_roots() -> list[Path]:
    names = ("stdlib", "platstdlib", "purelib", "platlib")
    roots = {Path(path) for name in names if (path := sysconfig.get_paths().get(name))}
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.add(Path(bundle))
    return sorted(roots, key=lambda root: len(root.parts), reverse=True)


def _frame_lines(frame: traceback.FrameSummary, roots: list[Path]) -> list[str]:
    """One frame as the report shows it: own code in full, a library by module path, else hidden."""
    path = Path(frame.filename)
    if frame.filename.startswith("<frozen "):  # the interpreter's own import machinery
        return [f"  library {frame.filename}, in {frame.name}"]
    relative: Path | None
    if not path.is_absolute() and not frame.filename.startswith("<"):
        relative = path  # a PyInstaller bundle names its modules by package-relative path
    elif path.is_relative_to(package_dir()):
        relative = Path("ept_studio") / path.relative_to(package_dir())
    else:
        relative = next((path.relative_to(r) for r in roots if path.is_relative_to(r)), None)
    if relative is None:
        return ["  (a frame outside EPT Studio and its libraries)"]
    if relative.parts[:1] != ("ept_studio",):
        return [f"  library {relative.as_posix()}, in {frame.name}"]
    lines = [f'  File "{relative.as_posix()}", line {frame.lineno}, in {frame.name}']
    return lines + ([f"    {frame.line.strip()}"] if frame.line else [])


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """The exception and the ones that caused it, outermost first, as Python prints them reversed."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen and len(seen) < MAX_CHAIN:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)


def format_report(
    exc: BaseException,
    *,
    thread: str | None = None,
    when: float | None = None,
    known: Sequence[str] = (),
) -> str:
    """The report's text (see the module docstring for what it leaves out).

    ``known``: the path texts of :func:`ept_studio.common.applog.given_paths` to hide.
    """
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(when))
    lines = [
        "EPT Studio crash report",
        f"time      {stamp}",
        f"version   EPT Studio {__version__}{' (bundle)' if is_frozen() else ''}",
        f"python    {platform.python_version()} ({platform.python_implementation()})",
        f"platform  {platform.platform()}",
        f"thread    {thread or threading.current_thread().name}",
        "",
    ]
    roots = _library_roots()
    for index, error in enumerate(reversed(list(_chain(exc)))):
        if index:
            lines += ["", "which led to:"]
        message = scrub(str(error), known)[:MAX_MESSAGE]
        lines.append(f"{type(error).__module__}.{type(error).__qualname__}: {message}")
        lines.append("Traceback (most recent call last):")
        for frame in traceback.extract_tb(error.__traceback__):
            lines += _frame_lines(frame, roots)
    lines += ["", "No patient data, file names or folder names are written to this report."]
    return "\n".join(lines) + "\n"


def write_report(
    exc: BaseException,
    *,
    thread: str | None = None,
    folder: Path | None = None,
    known: Sequence[str] = (),
) -> Path:
    """Write one report into the crash folder; its path."""
    folder = folder or app_dirs().crashes
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    name = f"{REPORT_PREFIX}{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}-{os.getpid()}"
    path = folder / f"{name}{REPORT_SUFFIX}"
    count = 1
    while path.exists():  # two crashes within a second (a thread's and then the main one's)
        count += 1
        path = folder / f"{name}-{count}{REPORT_SUFFIX}"
    text = format_report(exc, thread=thread, when=now, known=known)
    path.write_text(text, encoding="utf-8")
    return path


def _report_safely(exc: BaseException, thread: str | None, known: Sequence[str]) -> None:
    """Write a report; a failure to write one must not hide the original exception."""
    if isinstance(exc, KeyboardInterrupt):
        return
    try:
        path = write_report(exc, thread=thread, known=known)
        logger.critical("uncaught %s; crash report %s", type(exc).__name__, path.name)
    except Exception:  # the disk may be full or read-only: the traceback still reaches stderr
        logger.exception("could not write a crash report")


def install_crash_hooks(known: Sequence[str] = ()) -> None:
    """Report uncaught exceptions of the main thread and of other threads (idempotent).

    ``known``: path texts to hide in the reports (see :func:`ept_studio.common.applog.given_paths`).
    """
    if getattr(sys.excepthook, "_ept_studio", False):
        return
    previous_sys, previous_thread = sys.excepthook, threading.excepthook

    def on_exception(
        kind: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        _report_safely(exc.with_traceback(tb), None, known)
        previous_sys(kind, exc, tb)

    def on_thread_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None:
            thread = args.thread.name if args.thread else None
            _report_safely(args.exc_value, thread, known)
        previous_thread(args)

    on_exception._ept_studio = True  # type: ignore[attr-defined]
    sys.excepthook = on_exception
    threading.excepthook = on_thread_exception


def _seen_marker(report: Path) -> Path:
    return report.with_name(report.name + SEEN_SUFFIX)


def pending_report(folder: Path | None = None) -> Path | None:
    """The newest report not yet offered to the user, if any."""
    folder = folder or app_dirs().crashes
    if not folder.is_dir():
        return None
    reports = sorted(
        folder.glob(f"{REPORT_PREFIX}*{REPORT_SUFFIX}"), key=lambda p: p.stat().st_mtime
    )
    unseen = [report for report in reports if not _seen_marker(report).exists()]
    return unseen[-1] if unseen else None


def mark_seen(report: Path) -> None:
    """Remember that ``report`` (and every older one) was offered: the next start stays quiet."""
    newest = report.stat().st_mtime
    for other in report.parent.glob(f"{REPORT_PREFIX}*{REPORT_SUFFIX}"):
        if other.stat().st_mtime <= newest:
            _seen_marker(other).touch()


def install_reporting(arguments: Sequence[str] = ()) -> None:
    """At app start: the rotating, scrubbed log file and the crash hooks (idempotent).

    ``arguments``: the command line; the paths in it are hidden from the log and the reports.
    A log folder that cannot be written (read-only home) costs the log, not the app.
    """
    known = given_paths(arguments)
    try:
        setup_logging(known=known)
    except OSError as err:
        sys.stderr.write(f"EPT Studio: no log file ({scrub(str(err), known)})\n")
    install_crash_hooks(known)
