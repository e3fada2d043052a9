"""Patient identifiers, kept only as salted hashes.

A project needs to know which images come from the same patient (or study) so that a patient's
images stay on one side of a train / test split, but it must never hold the identifier itself. Each
project draws its own random key, so the same PatientID hashes differently in two projects and a
hash cannot be looked up in a table of likely IDs computed elsewhere. The key itself is kept on the
user's machine, never in the project folder (:mod:`ept_studio.data.project_key`): with it, a guessed
ID could be confirmed against the stored hashes.
"""

from __future__ import annotations

import hashlib
import hmac

HASH_HEX_DIGITS = 32
"""128 bits of an HMAC-SHA256: collisions between a project's patients are out of reach."""


def normalised_identifier(identifier: object) -> str | None:
    """The identifier as hashed: surrounding spaces and DICOM's NUL padding dropped; None if blank.

    So ``"123 "`` and ``"123"`` (the same PatientID written by two devices) give the same hash.
    """
    if identifier is None:
        return None
    text = str(identifier).strip(" \x00")
    return text or None


def salted_hash(identifier: object, salt: str) -> str | None:
    """HMAC-SHA256 of ``identifier`` under the project key ``salt`` (hexadecimal text).

    None for a missing or blank value (see :func:`normalised_identifier`).
    """
    text = normalised_identifier(identifier)
    if text is None:
        return None
    key = bytes.fromhex(salt)
    digest = hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:HASH_HEX_DIGITS]


def describe_file(index: int, suffix: str) -> str:
    """A file named without its path, for logs: ``"file #12 (.dcm)"`` (paths often carry PHI)."""
    shown = suffix.lower()[:10] if suffix else "no suffix"
    return f"file #{index} ({shown})"
