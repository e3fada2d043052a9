"""The import worker on its own: events relayed as signals, cancel, and a failure message."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from ept_studio.gui.tasks import WorkerThread
from ept_studio.gui.workers import ImportWorker
from ept_studio.services.project import ImportReport, create_project

pytestmark = pytest.mark.gui


def test_worker_relays_progress_and_report(qtbot: QtBot, samples: Path, tmp_path: Path) -> None:
    create_project(tmp_path / "project").close()
    worker = ImportWorker(tmp_path / "project", [samples / "dicom"])
    progress: list[tuple[int, int]] = []
    reports: list[ImportReport] = []
    worker.progress.connect(lambda done, total: progress.append((done, total)))
    worker.finished.connect(reports.append)
    worker.run()  # in this thread: the signals are delivered at once
    assert progress == [(1, 2), (2, 2)]
    assert len(reports[0].added) == 2


def test_a_cancelled_worker_adds_nothing_more(qtbot: QtBot, samples: Path, tmp_path: Path) -> None:
    create_project(tmp_path / "project").close()
    worker = ImportWorker(tmp_path / "project", [samples])
    reports: list[ImportReport] = []
    worker.finished.connect(reports.append)
    worker.cancel()
    worker.run()
    assert reports[0].added == []


def test_a_worker_on_a_folder_that_is_no_project_says_so(qtbot: QtBot, tmp_path: Path) -> None:
    worker = ImportWorker(tmp_path / "nothing-here", [tmp_path])
    with qtbot.waitSignal(worker.failed, timeout=5_000) as blocker:
        worker.run()
    assert "is not an EPT Studio project" in blocker.args[0]


def test_the_worker_thread_runs_the_import_off_the_gui_thread(
    qtbot: QtBot, samples: Path, tmp_path: Path
) -> None:
    create_project(tmp_path / "project").close()
    worker = ImportWorker(tmp_path / "project", [samples / "dicom"])
    threads: set[int] = set()
    direct = Qt.ConnectionType.DirectConnection  # runs where the signal is emitted
    worker.progress.connect(lambda _d, _t: threads.add(threading.get_ident()), direct)
    thread = WorkerThread(worker)
    with qtbot.waitSignal(thread.finished, timeout=20_000):
        thread.start()
    assert threads
    assert threading.get_ident() not in threads


def test_the_task_runner_runs_its_job_off_the_gui_thread(qtbot: QtBot) -> None:
    from ept_studio.gui.tasks import TaskRunner

    runner = TaskRunner()

    def job(cancel: object) -> Iterator[object]:
        yield threading.get_ident()

    with qtbot.waitSignal(runner.finished, timeout=10_000) as blocker:
        assert runner.start("probe", job)
    name, job_thread = blocker.args
    assert name == "probe"
    assert job_thread != threading.get_ident()
    assert not runner.busy
