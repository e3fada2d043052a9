"""``models list`` and ``models get``: the backbones, their licences, and getting one.

``models get`` shows the backbone's licence and downloads only once it is accepted: by
``--accept-licence``, or by answering yes at a terminal. Where nobody can answer (no terminal)
and the flag is missing it refuses, naming the licence.
"""

from __future__ import annotations

import argparse
import sys

from ept_studio.cli.console import Console
from ept_studio.common.errors import ConfigError

_COLUMNS = "{here:<8} {name:<28} {licence:<11} {size:>8}  {pin:<11} {note}"


def run_list(console: Console) -> None:
    """One line per backbone: here or missing, name, licence, size, whether its sha256 is pinned."""
    from ept_studio.services.model import list_backbones

    console.line(
        _COLUMNS.format(
            here="", name="name", licence="licence", size="size", pin="sha256", note=""
        ).rstrip()
    )
    for status in list_backbones():
        notes = ["(default)"] if status.default else []
        if status.registers:
            notes.append(f"{status.registers} register tokens")
        console.line(
            _COLUMNS.format(
                here="here" if status.available else "missing",
                name=status.name,
                licence=status.licence,
                size=_size(status.size_mb),
                pin="pinned" if status.pinned else "not pinned",
                note=" ".join(notes),
            ).rstrip()
        )


def run_get(args: argparse.Namespace, console: Console) -> None:
    """Show the licence, have it accepted, then download (or install ``--from-file``)."""
    from ept_studio.services.model import backbone_licence, get_backbone

    notice = backbone_licence(args.name)
    console.note(f"{notice.name}: {notice.licence} licence. {notice.text}")
    if not args.accept_licence:
        _ask_to_accept(notice.name, notice.licence, console)
    if args.from_file is None:
        console.note(f"downloading {notice.name} from {notice.source} (asked for explicitly)")
    if not notice.pinned:
        console.note(
            "its sha256 is not pinned in the backbone list: the sha256 received is recorded "
            "beside the weights and checked on every load"
        )
    console.line(str(get_backbone(notice.name, accept_licence=True, file=args.from_file)))


def _ask_to_accept(name: str, licence: str, console: Console) -> None:
    if not sys.stdin.isatty():
        raise ConfigError(
            f"the backbone {name} is under the {licence} licence and nobody here can accept "
            f"it: read it above, then run `ept-studio models get {name} --accept-licence`"
        )
    console.note(f"Accept the {licence} licence and get {name}? [y/N] ")
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise ConfigError(f"the {licence} licence of {name} was not accepted: nothing downloaded")


def _size(megabytes: float | None) -> str:
    return "?" if megabytes is None else f"{megabytes:.0f} MB"
