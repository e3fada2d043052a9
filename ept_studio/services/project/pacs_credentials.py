"""Passwords and tokens for the PACS servers: in the OS keyring where one works, else only in memory.

Where the system has a usable keyring (Secret Service on Linux, the macOS Keychain, the Windows
Credential Locker) a secret entered once is kept there. Where it has none (a headless machine, or
keyring's ``fail`` or ``null`` backend), secrets live in this :class:`CredentialStore` only, so
each is asked once per run of the app. Never written to the project, the settings or the log: the
log says where secrets are kept and, when the keyring fails, the error's kind, nothing more.
"""

from __future__ import annotations

import logging
from typing import Any

from ept_studio.services.project.pacs_servers import PacsEntry

logger = logging.getLogger(__name__)

SERVICE = "EPT Studio PACS"


class CredentialStore:
    """The secrets of :class:`PacsEntry` servers for this run, backed by the OS keyring if usable.

    ``backend``: a keyring backend to use (default: ``keyring.get_keyring()`` when it is usable);
    ``use_keyring=False`` keeps everything in memory.
    """

    def __init__(self, backend: Any | None = None, *, use_keyring: bool = True) -> None:
        self._memory: dict[str, str] = {}
        self._keyring = (backend or _usable_keyring()) if use_keyring else None
        logger.info("PACS passwords are kept %s", self.kept_where)

    @property
    def persistent(self) -> bool:
        """Whether a secret outlives this run (kept in the OS keyring)."""
        return self._keyring is not None

    @property
    def kept_where(self) -> str:
        """Where secrets go, in words for the user."""
        if self._keyring is None:
            return "in memory until EPT Studio closes (no system keyring here)"
        return "in the system keyring"

    def get(self, entry: PacsEntry) -> str | None:
        """The entry's password or token, if one was given (this run or, with a keyring, before)."""
        key = entry.secret_key
        if key in self._memory:
            return self._memory[key]
        if self._keyring is None:
            return None
        try:
            secret = self._keyring.get_password(SERVICE, key)
        except Exception as err:  # any keyring backend error: fall back to asking
            self._fail(err)
            return None
        return str(secret) if secret is not None else None

    def put(self, entry: PacsEntry, secret: str) -> None:
        """Keep the entry's password or token (in the keyring, else for this run)."""
        key = entry.secret_key
        self._memory[key] = secret
        if self._keyring is None:
            return
        try:
            self._keyring.set_password(SERVICE, key, secret)
        except Exception as err:  # keep it for this run at least
            self._fail(err)

    def forget(self, entry: PacsEntry) -> None:
        """Drop the entry's secret (after the PACS refused it, or when the entry is removed)."""
        key = entry.secret_key
        self._memory.pop(key, None)
        if self._keyring is None:
            return
        try:
            if self._keyring.get_password(SERVICE, key) is not None:
                self._keyring.delete_password(SERVICE, key)
        except Exception as err:
            self._fail(err)

    def _fail(self, err: Exception) -> None:
        logger.warning(
            "the system keyring failed (%s): PACS passwords are kept in memory from now on",
            type(err).__name__,
        )
        self._keyring = None


def _usable_keyring() -> Any | None:
    """The OS keyring, or None where there is none that keeps secrets (fail / null backends)."""
    try:
        import keyring

        backend = keyring.get_keyring()
        priority = float(type(backend).priority)
    except Exception as err:  # a broken keyring set-up is the same as none
        logger.info("no system keyring (%s)", type(err).__name__)
        return None
    name = type(backend).__module__
    if priority <= 0 or name.endswith((".fail", ".null")):
        return None
    return backend
