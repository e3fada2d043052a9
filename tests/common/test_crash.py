"""Crash reports: a crash at start leaves a readable report without PHI, offered once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest

from ept_studio.common import crash
from ept_studio.common.appdata import DATA_ENV
from ept_studio.common.crash import CRASH_TEST_ENV, CRASH_TEST_MARKERS, pending_report


def _run(code_or_module: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full_env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        HOME=str(home),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        **{DATA_ENV: str(tmp_path / "data")},
        **env,
    )
    return subprocess.run(
        [sys.executable, *code_or_module],
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
        check=False,
    )


def _assert_clean(text: str, tmp_path: Path) -> None:
    for marker in (*CRASH_TEST_MARKERS, str(tmp_path)):
        assert marker not in text


def test_a_crash_at_start_leaves_a_report_without_phi(tmp_path: Path) -> None:
    done = _run(["-m", "ept_studio"], tmp_path, **{CRASH_TEST_ENV: "1"})
    assert done.returncode == 1
    assert "CrashTestError" in done.stderr  # Python's own report still reaches the terminal
    report = pending_report(tmp_path / "data" / "crash-reports")
    assert report is not None
    text = report.read_text(encoding="utf-8")
    _assert_clean(text, tmp_path)
    assert "ept_studio.common.crash.CrashTestError: crash test" in text
    assert "EPT Studio 0.1.0" in text
    assert 'File "ept_studio/gui/app.py"' in text  # the app's own frames, package-relative
    assert "crash.raise_if_crash_test()" in text
    log = (tmp_path / "data" / "logs" / "ept-studio.log").read_text(encoding="utf-8")
    assert report.name in log
    _assert_clean(log, tmp_path)


def test_a_report_is_offered_once(tmp_path: Path) -> None:
    folder = tmp_path / "crashes"
    assert pending_report(folder) is None
    try:
        json.loads("{not json")
    except ValueError as err:
        older = crash.write_report(err, folder=folder)
    os.utime(older, (1, 1))
    try:
        raise RuntimeError("outer") from KeyError("inner")
    except RuntimeError as err:
        newest = crash.write_report(err, folder=folder)
    assert pending_report(folder) == newest
    text = newest.read_text(encoding="utf-8")
    assert text.index("KeyError") < text.index("which led to:") < text.index("RuntimeError")
    assert "library json/decoder.py" in older.read_text(encoding="utf-8")
    crash.mark_seen(newest)
    assert pending_report(folder) is None  # the older one was marked too


def test_a_crash_in_a_worker_thread_is_reported(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import threading
        from ept_studio.common import crash
        crash.install_crash_hooks()
        def work():
            raise ValueError("worker failed on {CRASH_TEST_MARKERS[0]}")
        thread = threading.Thread(target=work, name="import-worker")
        thread.start()
        thread.join()
        """
    )
    done = _run(["-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    report = pending_report(tmp_path / "data" / "crash-reports")
    assert report is not None
    text = report.read_text(encoding="utf-8")
    assert "thread    import-worker" in text
    assert "builtins.ValueError: worker failed on <name>" in text
    assert "(a frame outside EPT Studio and its libraries)" in text  # the -c script
    _assert_clean(text, tmp_path)


@pytest.mark.gui
def test_the_next_start_offers_the_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from ept_studio.gui.app import application, offer_crash_report

    monkeypatch.setenv(DATA_ENV, str(tmp_path / "data"))
    application()
    try:
        raise RuntimeError("boom")
    except RuntimeError as err:
        report = crash.write_report(err)
    seen: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox)
        seen.append(box.informativeText())
        box.done(QMessageBox.StandardButton.Close)

    QTimer.singleShot(0, answer)
    assert offer_crash_report() == report
    assert report.name in seen[0]
    assert offer_crash_report() is None  # asked once only


@pytest.mark.parametrize(
    ("filename", "shown"),
    [
        ("ept_studio/gui/app.py", '  File "ept_studio/gui/app.py", line 7, in f'),  # in a bundle
        ("torch/library.py", "  library torch/library.py, in f"),
        ("<frozen importlib._bootstrap>", "  library <frozen importlib._bootstrap>, in f"),
        ("/home/jo/DOE_JOHN/script.py", "  (a frame outside EPT Studio and its libraries)"),
        ("<string>", "  (a frame outside EPT Studio and its libraries)"),
    ],
)
def test_frames_show_only_code_paths(filename: str, shown: str) -> None:
    frame = traceback.FrameSummary(filename, 7, "f", line="")
    assert crash._frame_lines(frame, crash._library_roots())[0] == shown


def test_relative_paths_of_the_command_line_are_hidden_in_report_and_log(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import logging, sys
        from ept_studio.common import crash
        sys.argv = ["ept-studio", "predict", "m.onnx", "Patient X", "--csv", "Patient X/s.csv"]
        crash.install_reporting(sys.argv[1:])
        logging.getLogger("ept_studio.test").warning("skipped Patient X/a.png and m.onnx")
        raise FileNotFoundError(2, "No such file or directory", "Patient X/s.csv")
        """
    )
    done = _run(["-c", code], tmp_path)
    assert done.returncode == 1
    report = pending_report(tmp_path / "data" / "crash-reports")
    assert report is not None
    text = report.read_text(encoding="utf-8")
    assert "builtins.FileNotFoundError: [Errno 2] No such file or directory: '<path>'" in text
    log = (tmp_path / "data" / "logs" / "ept-studio.log").read_text(encoding="utf-8")
    assert "skipped <path><path> and <path>" in log
    for written in (text, log):
        assert "Patient X" not in written
        assert "m.onnx" not in written


def test_scrub_hides_given_paths_and_bytes_that_are_not_utf8() -> None:
    from ept_studio.common.applog import given_paths, scrub

    known = given_paths(["train", "Patient X/data", "--out", "Doe.safetensors", "--lr", "0.5"])
    assert known == (
        os.path.abspath("Doe.safetensors"),
        os.path.abspath("Patient X/data"),
        "Doe.safetensors",
        "Patient X/data",
        "Patient X",
        "data",
    )
    assert scrub("read Patient X/data/a.txt, wrote Doe.safetensors at lr 0.5", known) == (
        "read <path><path> wrote <path> at lr 0.5"
    )
    assert scrub("metadata of the train run", known) == "metadata of the train run"
    assert scrub(os.fsdecode(b"name \xff\xfe here")) == "name ?? here"
