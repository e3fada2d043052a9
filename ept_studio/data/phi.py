"""Patient identifiers, kept only as salted hashes.

A project needs to know which images come from the same patient (or study) so that a patient's
images stay on one side of a train / test split, but it must never hold the identifier itself. Each
project draws its own random salt, so the same PatientID hashes differently in two projects and a
hash cannot be looked up in a table of likely IDs computed elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SALT_BYTES = 32
HASH_HEX_DIGITS = 32
"""128 bits of an HMAC-SHA256: collisions between a project's patients are out of reach."""


def new_salt() -> str:
    """A fresh random project salt, as hexadecimal text (stored in the project's meta table)."""
    return secrets.token_hex(SALT_BYTES)


def salted_hash(identifier: object, salt: str) -> str | None:
    """HMAC-SHA256 of ``identifier`` under the project ``salt``; None for a missing or blank value.

    Surrounding spaces and the NUL padding DICOM allows are ignored, so ``"123 "`` and ``"123"``
    (the same PatientID written by two devices) give the same hash.
    """
    if identifier is None:
        return None
    text = str(identifier).strip(" \x00")
    if not text:
        return None
    key = bytes.fromhex(salt)
    digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:HASH_HEX_DIGITS]


def describe_file(index: int, suffix: str) -> str:
    """A file named without its path, for logs: ``"file #12 (.dcm)"`` (paths often carry PHI)."""
    shown = suffix.lower()[:10] if suffix else "no suffix"
    return f"file #{index} ({shown})"
