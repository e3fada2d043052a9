"""The PACS dialog in a real offscreen main window against the real Orthanc: add a server, search,
pick studies, import in the background, the gallery refreshes; the password in no file written."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from orthanc_support import PASSWORD, USER, Orthanc
from phi_support import MARK, every_file
from PySide6.QtCore import QItemSelectionModel, QSettings
from pytestqt.qtbot import QtBot

from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.pacs_dialog import PacsDialog
from ept_studio.gui.pacs_server_dialog import PacsServerDialog
from ept_studio.gui.settings import AppSettings
from ept_studio.services.project import CredentialStore, PacsEntry, servers_file

pytestmark = pytest.mark.gui
CT_SMALL_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"


@pytest.fixture
def window(qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MainWindow]:
    """A main window with a new project, its settings and user data in the test's folder."""
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "app-data"))
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
        QSettings.setPath(QSettings.Format.IniFormat, scope, str(tmp_path / "settings"))
    settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
    main = MainWindow(settings)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitExposed(main)
    assert main.file_menu.new_project_at(tmp_path / "project")
    yield main
    main.session.close()


def _dialog(window: MainWindow) -> PacsDialog:
    dialog = window.file_menu.ask_import_pacs()
    assert dialog is not None
    dialog.credentials = CredentialStore(use_keyring=False)  # this machine's keyring stays out
    return dialog


def _add_web_server(dialog: PacsDialog, orthanc: Orthanc, password: str) -> None:
    """Fill in the Add a PACS dialog as a user would, and save it."""
    form = PacsServerDialog(parent=dialog)
    form.name.setText("Test archive")
    form.url.setText(orthanc.dicomweb_url)
    form.auth.setCurrentIndex(form.auth.findData("basic"))
    form.user.setText(USER)
    form.secret.setText(password)
    form.accept()
    assert form.result() == PacsServerDialog.DialogCode.Accepted
    dialog.save_server(form.entry(), form.typed_secret())


def _search(qtbot: QtBot, dialog: PacsDialog) -> None:
    with qtbot.waitSignal(dialog.searches.finished, timeout=30_000):
        assert dialog.search()


def _select(dialog: PacsDialog, rows: list[int]) -> None:
    model = dialog.table.selectionModel()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for row in rows:
        model.select(dialog.table.model().index(row, 0), flags)


def test_search_then_import_from_the_dialog(
    qtbot: QtBot, window: MainWindow, orthanc: Orthanc, tmp_path: Path
) -> None:
    dialog = _dialog(window)
    assert "Add the PACS" in dialog.message.text()
    assert not dialog.search_button.isEnabled()
    _add_web_server(dialog, orthanc, PASSWORD)
    assert dialog.server.currentText() == "Test archive"
    assert "in memory" in dialog.message.text()
    dialog.patient.setText(MARK[:6].lower())
    _search(qtbot, dialog)
    assert dialog.table.rowCount() == 2
    assert dialog.table.item(0, 0).text() == "1945-03-21"
    assert {dialog.table.item(row, 1).text() for row in range(2)} == {"CT / MR"}
    assert dialog.table.item(0, 3).text() == "4"
    assert dialog.message.text() == "2 studies found: pick the ones to import."
    dialog.patient.clear()
    dialog.modality.setCurrentIndex(dialog.modality.findData("CT"))
    _search(qtbot, dialog)
    studies = [row.study for row in dialog.table.rows]
    rows = [row for row, study in enumerate(studies) if study.study_uid == CT_SMALL_STUDY]
    assert dialog.table.item(rows[0], 2).text() == "e+1"  # CT_small.dcm's StudyDescription
    marked = [row for row, study in enumerate(studies) if study.date == "19450321"]
    assert len(marked) == 2
    assert not dialog.import_button.isEnabled()
    _select(dialog, [rows[0], marked[0]])
    assert dialog.import_button.isEnabled()
    shown_before = window.gallery.view.model().rowCount()
    with qtbot.waitSignal(window.session.import_finished, timeout=60_000):
        assert dialog.import_selected()
    qtbot.waitUntil(lambda: window.gallery.view.model().rowCount() == shown_before + 5)
    assert window.session.image_count() == 5
    assert dialog.message.text() == "Import done: 5 images added, 0 already there, 0 skipped."
    assert dialog.progress.isHidden()
    dialog.grab().save(str(Path(os.environ.get("EPT_PACS_SHOT", tmp_path)) / "pacs-dialog.png"))
    written = [servers_file(), *every_file(tmp_path)]
    assert servers_file().is_file()
    assert [p for p in written if p.is_file() and PASSWORD.encode() in p.read_bytes()] == []


def test_a_wrong_password_is_told_and_asked_again(
    qtbot: QtBot, window: MainWindow, orthanc: Orthanc
) -> None:
    dialog = _dialog(window)
    _add_web_server(dialog, orthanc, "not-the-password")
    entry = dialog.current_entry()
    assert entry is not None
    with qtbot.waitSignal(dialog.searches.failed, timeout=30_000):
        assert dialog.search()
    assert "refused the credentials (HTTP 401)" in dialog.message.text()
    assert dialog.credentials.get(entry) is None  # forgotten: asked for at the next search
    assert dialog.table.rowCount() == 0
    assert window.session.image_count() == 0


def test_a_dimse_server_is_searched_and_a_bad_entry_is_refused(
    qtbot: QtBot, window: MainWindow, orthanc: Orthanc
) -> None:
    dialog = _dialog(window)
    form = PacsServerDialog(parent=dialog)
    form.name.setText("Old archive")
    form.kind.setCurrentIndex(form.kind.findData("dimse"))
    assert form.host.isVisibleTo(form)
    assert not form.url.isVisibleTo(form)
    form.ae_title.setText("A TITLE LONGER THAN 16")
    form.host.setText("127.0.0.1")
    form.port.setValue(orthanc.dicom_port)
    form.accept()
    assert form.result() != PacsServerDialog.DialogCode.Accepted
    assert "AE title 'A TITLE LONGER THAN 16' is not valid" in form.error.text()
    form.ae_title.setText("EPTTEST")
    form.accept()
    assert form.result() == PacsServerDialog.DialogCode.Accepted
    dialog.save_server(form.entry(), form.typed_secret())
    assert dialog.where.text() == f"EPTTEST@127.0.0.1:{orthanc.dicom_port}"
    dialog.modality.setCurrentIndex(dialog.modality.findData("US"))
    _search(qtbot, dialog)
    assert dialog.table.rowCount() == 3
    assert all("US" in dialog.table.item(row, 1).text() for row in range(3))


def test_series_are_listed_and_only_those_picked_are_imported(
    qtbot: QtBot, window: MainWindow, orthanc: Orthanc, tmp_path: Path
) -> None:
    dialog = _dialog(window)
    _add_web_server(dialog, orthanc, PASSWORD)
    dialog.patient_id.setText(f"{MARK}-0")
    dialog.by_series.setChecked(True)
    _search(qtbot, dialog)
    assert dialog.table.rowCount() == 4
    assert dialog.message.text() == "4 series found: pick the ones to import."
    assert {row.series.instances for row in dialog.table.rows if row.series} == {1}
    assert dialog.table.item(0, 2).text() == f"{MARK} chest — unnamed series"
    _select(dialog, [1, 2])
    chosen = dialog.table.choice()
    assert len(chosen.study_uids) == 1
    picked = [dialog.table.rows[i].series for i in (1, 2)]
    assert chosen.series_uids == {series.series_uid for series in picked if series}
    dialog.grab().save(str(Path(os.environ.get("EPT_PACS_SHOT", tmp_path)) / "pacs-series.png"))
    with qtbot.waitSignal(window.session.import_finished, timeout=60_000):
        assert dialog.import_selected()
    assert window.session.image_count() == 2
    assert dialog.message.text() == "Import done: 2 images added, 0 already there, 0 skipped."


def test_closing_the_window_during_a_search_waits_for_it(qtbot: QtBot, window: MainWindow) -> None:
    with socket.socket() as silent:  # accepts connections but never answers: the search waits
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        dialog = _dialog(window)
        entry = PacsEntry(
            "Silent",
            "dimse",
            ae_title="SILENT",
            host="127.0.0.1",
            port=silent.getsockname()[1],
            timeout_s=1,
        )
        dialog.save_server(entry, None)
        assert dialog.search()
        assert dialog.searches.busy
        window.close()
        assert not dialog.searches.busy
