"""A DICOM file's header as a flat list of fields for people to read, each marked identifying or not.

The viewer's metadata panel lists these. Which fields identify a patient follows the spirit of the
Basic Application Level Confidentiality Profile (PS3.15 Annex E): names of people, dates and times,
instance UIDs, patient, institution, device and accession fields, free-text descriptions and
comments, and every private element. A field marked identifying is shown only when the user asks.

Pixel data is never read; sequences are summarised (their items may hold identifying fields of
their own); binary values are given as a byte count. Values are never logged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from ept_studio.common.errors import ImageDecodeError
from ept_studio.data.dicom import _check_part10, _header_failure, _quiet_pydicom
from ept_studio.data.images import open_for_decoding

__all__ = ["HeaderField", "is_identifying", "read_header_fields"]

MAX_VALUE_CHARACTERS = 160

IDENTIFYING_VRS = frozenset({"PN", "DA", "DT", "TM"})
"""Person names, dates, date-times and times."""

IDENTIFYING_WORDS = (
    "Patient",
    "Institution",
    "Physician",
    "Operator",
    "Accession",
    "Address",
    "Telephone",
    "Station",
    "SerialNumber",
    "Comments",
    "Description",
    "Identification",
    "Issuer",
    "Requesting",
    "Performing",
    "Scheduled",
    "Admitting",
    "Occupation",
    "Birth",
    "Ethnic",
    "Military",
    "Religious",
    "Insurance",
)
"""Keywords containing any of these words are identifying (with :data:`NOT_IDENTIFYING` excepted)."""

IDENTIFYING_KEYWORDS = frozenset(
    {
        "StudyID",
        "OtherPatientIDs",
        "DeviceUID",
        "ProtocolName",
        "ContentSequence",
        "ImageComments",
    }
)

NOT_IDENTIFYING = frozenset({"PatientPosition", "PatientOrientation", "PatientSpeciesDescription"})
"""Keywords that contain an identifying word but describe the acquisition, not the person."""

_PUBLIC_UIDS = ("ClassUID", "TransferSyntaxUID", "ImplementationClassUID", "CodingSchemeUID")


@dataclasses.dataclass(frozen=True)
class HeaderField:
    """One header element as text: ``tag`` like ``(0010,0010)``, its name and VR.

    The repr hides ``value`` of identifying fields, so a field never reaches a log by accident.
    """

    tag: str
    keyword: str
    name: str
    vr: str
    value: str
    identifying: bool

    def __repr__(self) -> str:
        shown = "<hidden>" if self.identifying else repr(self.value)
        return f"HeaderField({self.tag} {self.keyword or self.name}={shown})"

    __str__ = __repr__


def is_identifying(keyword: str, vr: str, *, private: bool = False) -> bool:
    """Whether an element may identify a patient (see the module docstring for the rules)."""
    if private or keyword in IDENTIFYING_KEYWORDS:
        return True
    if keyword in NOT_IDENTIFYING or _is_geometry(keyword):
        return False
    if vr in IDENTIFYING_VRS:
        return True
    if vr == "UI":
        return not keyword.endswith(_PUBLIC_UIDS)
    if not keyword:  # an element pydicom's dictionary does not know: treat as private
        return True
    return any(word in keyword for word in IDENTIFYING_WORDS)


def _is_geometry(keyword: str) -> bool:
    """``ImagePositionPatient``, ``DistanceSourceToPatient``: where, relative to the patient."""
    return keyword.endswith("Patient") and not keyword.startswith("Patient")


def read_header_fields(path: Path) -> tuple[HeaderField, ...]:
    """The file meta information and the top-level elements of the data set, in tag order."""
    path = Path(path)
    with open_for_decoding(path) as handle, _quiet_pydicom() as caught:
        _check_part10(handle, path)
        try:
            ds = pydicom.dcmread(handle, stop_before_pixels=True)
        except Exception as err:  # pydicom raises many types on damaged files
            raise ImageDecodeError(str(path), _header_failure(err, caught)) from err
        meta: Dataset = getattr(ds, "file_meta", Dataset())
        return tuple(_field(e) for source in (meta, ds) for e in _elements(source))


def _elements(ds: Dataset) -> list[DataElement]:
    elements = []
    for tag in sorted(ds.keys()):
        try:
            elements.append(ds[tag])
        except Exception:  # a damaged element is left out; its value is never quoted
            continue
    return elements


def _field(element: DataElement) -> HeaderField:
    keyword = element.keyword or ""
    vr = str(element.VR)
    return HeaderField(
        tag=f"({element.tag.group:04X},{element.tag.element:04X})",
        keyword=keyword,
        name=element.name if not element.tag.is_private else "Private element",
        vr=vr,
        value=_text(element, vr),
        identifying=is_identifying(keyword, vr, private=element.tag.is_private),
    )


def _text(element: DataElement, vr: str) -> str:
    """The value as one short line of text."""
    value = element.value
    if vr == "SQ":
        count = len(value) if value is not None else 0
        return f"(sequence of {count} item{'s' if count != 1 else ''})"
    if isinstance(value, (bytes, bytearray)):
        return f"(binary, {len(value)} bytes)"
    if value is None or value == "":
        return ""
    try:
        text = " ".join(str(value).split())
    except Exception:  # a value that does not convert; say so without quoting it
        return "(value cannot be read)"
    if len(text) > MAX_VALUE_CHARACTERS:
        return text[: MAX_VALUE_CHARACTERS - 1] + "…"
    return text
