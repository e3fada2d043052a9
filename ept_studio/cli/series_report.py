"""``ept-studio project export-sr``: a run's per-series results as DICOM Structured Reports, one
file per DICOM series, stored on a PACS too when asked (``--store-to``, a saved PACS by name).

A report carries the patient and study of its series (it belongs to that study); nothing this
command prints does: series are named by the project's image ids, files by the run and image id.
"""

from __future__ import annotations

import argparse
import getpass
import os
from pathlib import Path
from typing import Any

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.cli.console import Console
from ept_studio.common.errors import EptStudioError
from ept_studio.common.files import display_path


def add_export_sr_command(sub: Any) -> None:
    """Register ``export-sr`` under ``project``."""
    export = sub.add_parser(
        "export-sr",
        help="write a run's result per series as DICOM structured reports (SR); optionally "
        "store them on a PACS",
    )
    export.add_argument("folder", type=Path, help="the project folder")
    export.add_argument("--run", type=int, required=True, help="run id (see `project runs`)")
    export.add_argument(
        "--out", type=Path, required=True, help="the folder to write the reports to"
    )
    export.add_argument(
        "--aggregate",
        choices=("mean", "max"),
        default="mean",
        help="a series' score from its slices' scores: their mean (default), or their maximum "
        "(for 'finding present' tasks)",
    )
    export.add_argument(
        "--store-to",
        metavar="SERVER_NAME",
        help="also store the reports on this saved PACS (STOW-RS or C-STORE, as it speaks)",
    )
    export.add_argument(
        "--password-env",
        metavar="VAR",
        help="with --store-to: environment variable holding the PACS password or token "
        "(default: the system keyring, else ask at the prompt)",
    )
    export.set_defaults(handler=run_export_sr)


def run_export_sr(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import Project, write_series_reports

    server = _server(args.store_to, args.password_env) if args.store_to else None
    with Project.open(args.folder) as project:
        written = write_series_reports(
            project,
            args.run,
            args.aggregate,
            args.out,
            progress=lambda done, total: console.progress(done, total, "reports written"),
        )
    console.line(f"reports           {len(written.paths)} in {display_path(args.out)}")
    if written.skipped:
        console.note(f"{written.skipped} series of non-DICOM images have no report")
    if server is not None:
        from ept_studio.services.project import store_to_pacs

        stored = store_to_pacs(server, written.paths)
        console.line(f"stored on PACS    {stored} on {args.store_to}")
    console.note(RESEARCH_USE_NOTICE)


def _server(name: str, password_env: str | None) -> Any:
    """The saved PACS named ``name``, with its password or token when it needs one."""
    from ept_studio.services.project import CredentialStore, load_pacs_entries

    entries = {entry.name: entry for entry in load_pacs_entries()}
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none saved yet"
        raise EptStudioError(f"no saved PACS is named {name!r} (saved: {known})")
    entry = entries[name]
    if not entry.needs_secret:
        return entry.server()
    if password_env:
        secret = os.environ.get(password_env)
        if not secret:
            raise EptStudioError(f"the environment variable {password_env} is not set (or empty)")
    else:
        secret = CredentialStore().get(entry) or getpass.getpass(f"password for {name}: ")
    return entry.server(secret)
