"""Add or edit a PACS: a name, where it is (a web address, or a DICOM network address) and how to
log in. The password or token typed here goes to the credential store, never to the saved list."""

from __future__ import annotations

from PySide6.QtCore import Slot
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ept_studio.common.errors import EptStudioError
from ept_studio.services.project import PacsEntry

_KINDS = (
    ("Web address (DICOMweb)", "dicomweb"),
    ("DICOM network (DIMSE)", "dimse"),
)
_AUTHS = (("No log-in", "none"), ("User name and password", "basic"), ("Access token", "bearer"))
_RETRIEVES = (
    ("Get (one connection)", "get"),
    ("Move (the archive connects back to this computer)", "move"),
)


class PacsServerDialog(QDialog):
    """The fields of one :class:`PacsEntry`, and its password or token; ``entry()`` checks them."""

    def __init__(self, entry: PacsEntry | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Edit the PACS" if entry else "Add a PACS")
        self.name = QLineEdit()
        self.name.setPlaceholderText("e.g. Hospital archive")
        self.kind = QComboBox()
        for text, value in _KINDS:
            self.kind.addItem(text, value)
        self.kind.setToolTip(
            "How EPT Studio talks to the PACS: DICOMweb (QIDO-RS search, WADO-RS retrieve) over "
            "HTTP(S), or the classic DICOM network protocol (DIMSE: C-FIND search, C-GET or "
            "C-MOVE retrieve)"
        )
        self.form = QFormLayout()
        self.form.addRow("Name:", self.name)
        self.form.addRow("Connect by:", self.kind)
        self.web_rows = self._web_rows()
        self.dimse_rows = self._dimse_rows()
        self.form.addRow("Certificate authority file:", self._ca_row())
        self.error = QLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet("QLabel { color: #a33; }")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(self.form)
        layout.addWidget(self.error)
        layout.addWidget(self.buttons)
        self.kind.currentIndexChanged.connect(self._on_kind)
        self.auth.currentIndexChanged.connect(self._on_auth)
        self.retrieve.currentIndexChanged.connect(self._on_retrieve)
        self.setMinimumWidth(520)
        if entry is not None:
            self._fill(entry)
        self._on_kind()
        self._on_auth()
        self._on_retrieve()

    def _web_rows(self) -> list[QWidget]:
        self.url = QLineEdit()
        self.url.setPlaceholderText("https://pacs.example.org/dicom-web")
        self.url.setToolTip("The DICOMweb root of the PACS, as its administrator gives it")
        self.auth = QComboBox()
        for text, value in _AUTHS:
            self.auth.addItem(text, value)
        self.auth.setToolTip("Basic authentication (user and password) or a bearer token")
        self.user = QLineEdit()
        self.secret = QLineEdit()
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.secret.setToolTip(
            "Kept in the system keyring where there is one, else only until EPT Studio closes; "
            "never in the project, the settings or the log"
        )
        self.check_tls = QCheckBox("Check the server's certificate")
        self.check_tls.setChecked(True)
        self.check_tls.setToolTip(
            "TLS certificate check for https:// addresses; turn off only for a test server"
        )
        self.secret_label = QLabel("Password:")
        self.form.addRow("Address:", self.url)
        self.form.addRow("Log-in:", self.auth)
        self.form.addRow("User name:", self.user)
        self.form.addRow(self.secret_label, self.secret)
        self.form.addRow("", self.check_tls)
        return [self.url, self.auth, self.user, self.secret, self.check_tls]

    def _dimse_rows(self) -> list[QWidget]:
        self.ae_title = QLineEdit()
        self.ae_title.setPlaceholderText("e.g. ORTHANC")
        self.ae_title.setToolTip("The PACS's AE title (application entity title), up to 16 letters")
        self.host = QLineEdit()
        self.host.setPlaceholderText("pacs.example.org")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(104)
        self.calling = QLineEdit("EPTSTUDIO")
        self.calling.setToolTip(
            "This computer's AE title, as the PACS knows it: the PACS must admit it"
        )
        self.form.addRow("PACS name (AE title):", self.ae_title)
        self.form.addRow("Host:", self.host)
        self.form.addRow("Port:", self.port)
        self.form.addRow("This computer (AE title):", self.calling)
        self.use_tls = QCheckBox("Use TLS (encrypted connection)")
        self.use_tls.setToolTip(
            "DICOM TLS: encrypts the connection and checks the PACS's certificate; the PACS must "
            "have TLS on at this port"
        )
        self.form.addRow("", self.use_tls)
        return [self.ae_title, self.host, self.port, self.calling, self.use_tls, *self._move_rows()]

    def _move_rows(self) -> list[QWidget]:
        """How the archive sends the images, and where this computer receives them by Move."""
        self.retrieve = QComboBox()
        for text, value in _RETRIEVES:
            self.retrieve.addItem(text, value)
        self.retrieve.setToolTip(
            "Get (C-GET): the images come back on the connection EPT Studio opens; nothing to set "
            "on the archive. Move (C-MOVE), for an archive that does not offer Get: the archive "
            "opens a connection to this computer, so it must know this computer's AE title, "
            "address and port (its administrator adds them); not with TLS"
        )
        self.move_ae_title = QLineEdit("EPTSTUDIO")
        self.move_ae_title.setToolTip(
            "The AE title (application entity title) the archive knows this computer by, as "
            "where to send the images (C-MOVE destination)"
        )
        self.move_port = QSpinBox()
        self.move_port.setRange(1, 65535)
        self.move_port.setValue(11113)
        self.move_port.setToolTip(
            "The port this computer listens on while it receives images; the archive must have "
            "this port, and no firewall may block it"
        )
        self.move_hint = QLabel(
            "By Move, the archive connects back to this computer: it must know this computer's "
            "AE title, address and port."
        )
        self.move_hint.setWordWrap(True)
        self.form.addRow("How the archive sends images:", self.retrieve)
        self.form.addRow("Receive as (AE title):", self.move_ae_title)
        self.form.addRow("Receive on port:", self.move_port)
        self.form.addRow("", self.move_hint)
        return [self.retrieve, self.move_ae_title, self.move_port, self.move_hint]

    def _ca_row(self) -> QWidget:
        """The optional certificate authority file: a path, and a button to choose it."""
        self.ca_file = QLineEdit()
        self.ca_file.setPlaceholderText("none: this computer's trusted ones")
        self.ca_file.setToolTip(
            "For a hospital's own certificate authority: a PEM file of the CA certificates that "
            "sign the PACS's TLS certificate. Empty = this computer's trusted ones"
        )
        choose = QPushButton("Certificate authority file…")
        choose.setToolTip(self.ca_file.toolTip())
        choose.clicked.connect(self._choose_ca_file)
        row = QWidget()
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.ca_file)
        layout.addWidget(choose)
        return row

    @Slot()
    def _choose_ca_file(self) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self,
            "Certificate authority file",
            self.ca_file.text(),
            "Certificates (*.pem *.crt *.cer);;All files (*)",
        )
        if path:
            self.ca_file.setText(path)

    def _fill(self, entry: PacsEntry) -> None:
        self.name.setText(entry.name)
        self.kind.setCurrentIndex(self.kind.findData(entry.protocol))
        self.url.setText(entry.url)
        self.auth.setCurrentIndex(self.auth.findData(entry.auth))
        self.user.setText(entry.user)
        self.check_tls.setChecked(entry.verify_tls)
        self.ae_title.setText(entry.ae_title)
        self.host.setText(entry.host)
        self.port.setValue(entry.port or 104)
        self.calling.setText(entry.calling_ae_title)
        self.use_tls.setChecked(entry.tls)
        self.retrieve.setCurrentIndex(self.retrieve.findData(entry.retrieve))
        self.move_ae_title.setText(entry.move_ae_title)
        self.move_port.setValue(entry.move_port)
        self.ca_file.setText(entry.ca_file)
        self.secret.setPlaceholderText("unchanged")

    @Slot()
    def _on_kind(self) -> None:
        dimse = self.kind.currentData() == "dimse"
        for widget in self.web_rows:
            self.form.setRowVisible(widget, not dimse)
        for widget in self.dimse_rows:
            self.form.setRowVisible(widget, dimse)

    @Slot()
    def _on_retrieve(self) -> None:
        move = self.retrieve.currentData() == "move"
        for widget in (self.move_ae_title, self.move_port, self.move_hint):
            widget.setEnabled(move)

    @Slot()
    def _on_auth(self) -> None:
        auth = self.auth.currentData()
        self.user.setEnabled(auth == "basic")
        self.secret.setEnabled(auth != "none")
        self.secret_label.setText("Token:" if auth == "bearer" else "Password:")

    def entry(self) -> PacsEntry:
        """The PACS as typed; a PacsError says what is wrong."""
        if self.kind.currentData() == "dimse":
            return PacsEntry(
                self.name.text().strip(),
                "dimse",
                ae_title=self.ae_title.text().strip(),
                host=self.host.text().strip(),
                port=self.port.value(),
                calling_ae_title=self.calling.text().strip(),
                tls=self.use_tls.isChecked(),
                ca_file=self.ca_file.text().strip(),
                retrieve=self.retrieve.currentData(),
                move_ae_title=self.move_ae_title.text().strip(),
                move_port=self.move_port.value(),
            )
        return PacsEntry(
            self.name.text().strip(),
            "dicomweb",
            url=self.url.text().strip(),
            auth=self.auth.currentData(),
            user=self.user.text().strip() if self.auth.currentData() == "basic" else "",
            verify_tls=self.check_tls.isChecked(),
            ca_file=self.ca_file.text().strip(),
        )

    def typed_secret(self) -> str | None:
        """The password or token typed (None when left empty: unchanged, or asked for later)."""
        return self.secret.text() or None

    def accept(self) -> None:
        try:
            self.entry()
        except EptStudioError as err:
            self.error.setText(str(err))
            return
        super().accept()
