"""A DIMSE PACS that sends by Move, added in the real offscreen window: the choice and where this
computer receives are saved in pacs-servers.json, shown again on Edit, and an import by C-MOVE from
the real Orthanc lands in the gallery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from orthanc_support import Orthanc, _free_ports, move_destination
from PySide6.QtCore import QItemSelectionModel, QSettings
from pytestqt.qtbot import QtBot

from ept_studio.gui.main_window import MainWindow
from ept_studio.gui.pacs_dialog import PacsDialog
from ept_studio.gui.pacs_server_dialog import PacsServerDialog
from ept_studio.gui.settings import AppSettings
from ept_studio.services.project import CredentialStore, DimseServer, servers_file

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
    dialog.credentials = CredentialStore(use_keyring=False)
    return dialog


def _move_form(dialog: PacsDialog, orthanc: Orthanc, port: int) -> PacsServerDialog:
    """The Add a PACS form filled in for the Orthanc, by Move to this computer at ``port``."""
    form = PacsServerDialog(parent=dialog)
    form.name.setText("Move archive")
    form.kind.setCurrentIndex(form.kind.findData("dimse"))
    form.ae_title.setText("EPTTEST")
    form.host.setText("127.0.0.1")
    form.port.setValue(orthanc.dicom_port)
    assert not form.move_port.isEnabled()  # Get is the default
    form.retrieve.setCurrentIndex(form.retrieve.findData("move"))
    assert form.move_port.isEnabled()
    assert "must know this computer's AE title, address and port" in form.move_hint.text()
    form.move_ae_title.setText("EPTSTUDIO")
    form.move_port.setValue(port)
    return form


def test_a_move_server_is_saved_and_imports_by_c_move(
    qtbot: QtBot, window: MainWindow, orthanc: Orthanc
) -> None:
    (port,) = _free_ports(1)
    dialog = _dialog(window)
    form = _move_form(dialog, orthanc, port)
    form.use_tls.setChecked(True)
    form.accept()
    assert form.result() != PacsServerDialog.DialogCode.Accepted
    assert "Move cannot be encrypted" in form.error.text()
    form.use_tls.setChecked(False)
    form.accept()
    assert form.result() == PacsServerDialog.DialogCode.Accepted
    dialog.save_server(form.entry(), form.typed_secret())
    saved = json.loads(servers_file().read_text(encoding="utf-8"))["servers"][0]
    assert (saved["retrieve"], saved["move_ae_title"], saved["move_port"]) == (
        "move",
        "EPTSTUDIO",
        port,
    )
    entry = dialog.current_entry()
    assert entry is not None
    server = entry.server()
    assert isinstance(server, DimseServer)
    assert (server.retrieve, server.move_ae_title, server.move_port) == ("move", "EPTSTUDIO", port)
    edit = PacsServerDialog(entry, parent=dialog)
    assert edit.retrieve.currentData() == "move"
    assert (edit.move_ae_title.text(), edit.move_port.value()) == ("EPTSTUDIO", port)
    assert edit.entry() == entry

    dialog.modality.setCurrentIndex(dialog.modality.findData("CT"))
    with qtbot.waitSignal(dialog.searches.finished, timeout=30_000):
        assert dialog.search()
    studies = [row.study.study_uid for row in dialog.table.rows]
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    index = dialog.table.model().index(studies.index(CT_SMALL_STUDY), 0)
    dialog.table.selectionModel().select(index, flags)
    with (
        move_destination(orthanc, "EPTSTUDIO", port),
        qtbot.waitSignal(window.session.import_finished, timeout=60_000),
    ):
        assert dialog.import_selected()
    assert window.session.image_count() == 1
    assert dialog.message.text() == "Import done: 1 images added, 0 already there, 0 skipped."


def test_a_move_the_pacs_refuses_is_told_and_adds_nothing(
    qtbot: QtBot, window: MainWindow, orthanc: Orthanc
) -> None:
    (known, port) = _free_ports(2)
    dialog = _dialog(window)
    form = _move_form(dialog, orthanc, port)
    form.move_ae_title.setText("ELSEWHERE")
    dialog.save_server(form.entry(), None)
    dialog.modality.setCurrentIndex(dialog.modality.findData("CT"))
    with qtbot.waitSignal(dialog.searches.finished, timeout=30_000):
        assert dialog.search()
    dialog.table.selectRow(0)
    with (
        move_destination(orthanc, "EPTSTUDIO", known),  # the PACS knows another AE title only
        qtbot.waitSignal(window.session.import_failed, timeout=60_000),
    ):
        assert dialog.import_selected()
    assert dialog.message.text().startswith("Import failed, nothing was added: the PACS at")
    assert "does not know this computer as ELSEWHERE" in dialog.message.text()
    assert window.session.image_count() == 0
