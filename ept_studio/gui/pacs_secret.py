"""A saved PACS made ready to use: its password or token from the credential store, or asked for once
(and then kept there), shared by the import dialog and the Results tab's *Send to PACS…*."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QInputDialog, QLineEdit, QWidget

from ept_studio.services.project import CredentialStore, DimseServer, PacsEntry, PacsServer

SecretQuestion = Callable[[PacsEntry], "str | None"]
"""Asks the user for an entry's password or token; None when they cancel."""


def ask_pacs_secret(parent: QWidget, entry: PacsEntry) -> str | None:
    """Ask for ``entry``'s token or password in a masked field; None when cancelled or empty."""
    what = "token" if entry.auth == "bearer" else f"password for {entry.user}"
    secret, ok = QInputDialog.getText(
        parent, entry.name, f"The {what} at {entry.where}:", QLineEdit.EchoMode.Password
    )
    return secret if ok and secret else None


def server_with_secret(
    entry: PacsEntry, credentials: CredentialStore, ask: SecretQuestion
) -> PacsServer | DimseServer | None:
    """The server of ``entry``, its secret from ``credentials`` or asked for once with ``ask`` (and
    then kept); None when the user cancels. A setting the server refuses raises EptStudioError."""
    secret = credentials.get(entry) if entry.needs_secret else None
    if entry.needs_secret and secret is None:
        secret = ask(entry)
        if not secret:
            return None
        credentials.put(entry, secret)
    return entry.server(secret)
