"""``ept-studio project search-pacs|import-pacs``: find studies on a PACS and import them.

The PACS is reached by DICOMweb (``--url``) or by DIMSE (``--dimse AE_TITLE@host:port``, C-FIND and
C-GET; ``--tls`` for DICOM TLS; ``--retrieve move`` for C-MOVE to ``--move-ae`` at this computer's
``--move-port``). ``--ca-file`` checks either's certificate with a hospital's own
certificate authority. A DICOMweb password or token is read from an environment variable (``--password-env`` / ``--token-env``)
or asked for at the prompt, never taken from the command line, where other users and the shell's
history would see it.
"""

from __future__ import annotations

import argparse
import getpass
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ept_studio.cli.console import Console
from ept_studio.cli.series_report import add_export_sr_command
from ept_studio.common.errors import EptStudioError


def add_pacs_commands(sub: Any, show_report: Callable[[Any, Console, str | None], None]) -> None:
    """Register ``search-pacs`` and ``import-pacs`` under ``project``; ``show_report`` tells an
    import's outcome (as ``project import`` does)."""
    search = sub.add_parser(
        "search-pacs", help="find studies on a PACS (DICOMweb QIDO-RS, or DIMSE C-FIND)"
    )
    search.add_argument("folder", type=Path, help="the project folder")
    _add_server_options(search)
    search.add_argument("--patient", help="part of the patient's name")
    search.add_argument("--patient-id", help="the patient ID, exactly")
    search.add_argument("--modality", help="a modality in the study, e.g. CT")
    search.add_argument(
        "--date", help="study date YYYYMMDD, or a range YYYYMMDD-YYYYMMDD (an end may be open)"
    )
    search.add_argument("--description", help="part of the study description")
    search.add_argument(
        "--series-of",
        metavar="STUDY_UID",
        help="list this study's series instead (the other filters are not used)",
    )
    search.set_defaults(handler=run_search_pacs)
    fetch = sub.add_parser(
        "import-pacs",
        help="retrieve studies from a PACS (DICOMweb WADO-RS, or DIMSE C-GET / C-MOVE) and add "
        "their images",
    )
    fetch.add_argument("folder", type=Path, help="the project folder")
    _add_server_options(fetch)
    _add_retrieve_options(fetch)
    fetch.add_argument("study_uids", nargs="+", metavar="STUDY_UID", help="see `search-pacs`")
    fetch.add_argument(
        "--series",
        action="append",
        metavar="SERIES_UID",
        help="only this series of the studies (repeat for more; see `search-pacs --series-of`)",
    )
    fetch.add_argument("--no-thumbnails", action="store_true", help="do not cache thumbnails")
    fetch.set_defaults(handler=run_import_pacs, show_report=show_report)
    add_export_sr_command(sub)


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the DICOMweb root, e.g. https://host/dicom-web")
    where.add_argument(
        "--dimse",
        metavar="AET@HOST:PORT",
        help="a PACS without DICOMweb: its AE title, host and DICOM port, e.g. ORTHANC@pacs:4242",
    )
    parser.add_argument(
        "--calling-aet",
        default="EPTSTUDIO",
        help="with --dimse: this computer's AE title, as the PACS knows it (default EPTSTUDIO)",
    )
    parser.add_argument("--user", help="user name (basic authentication; DICOMweb)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument(
        "--password-env",
        metavar="VAR",
        help="environment variable holding the password (default: ask at the prompt)",
    )
    secret.add_argument(
        "--token-env", metavar="VAR", help="environment variable holding a bearer token"
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="with --dimse: encrypt the connection (DICOM TLS); DICOMweb encrypts https:// URLs",
    )
    check = parser.add_mutually_exclusive_group()
    check.add_argument(
        "--ca-file",
        "--ca-bundle",
        dest="ca_file",
        metavar="FILE",
        type=Path,
        help="check the server's certificate with this certificate authority file (PEM), e.g. "
        "the hospital's own; default: this computer's trusted ones",
    )
    check.add_argument(
        "--no-verify-tls",
        action="store_true",
        help="DICOMweb: do not check the server's certificate (a test server only)",
    )
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds to wait per request")


def _add_retrieve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retrieve",
        choices=("get", "move"),
        default="get",
        help="with --dimse: how the PACS sends the images: get (C-GET, on the same connection; "
        "default) or move (C-MOVE: the PACS connects back to this computer, which it must know "
        "by --move-ae, address and --move-port)",
    )
    parser.add_argument(
        "--move-ae",
        metavar="AE_TITLE",
        help="with --retrieve move: this computer's AE title as the PACS's destination "
        "(default EPTSTUDIO)",
    )
    parser.add_argument(
        "--move-port",
        type=int,
        metavar="PORT",
        help="with --retrieve move: the port this computer receives the images on (default 11113)",
    )


def _retrieve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The DIMSE retrieve options given (none for ``search-pacs``); options that do not fit are
    told."""
    retrieve = getattr(args, "retrieve", "get")
    move_ae, move_port = getattr(args, "move_ae", None), getattr(args, "move_port", None)
    if retrieve != "move":
        if move_ae is not None or move_port is not None:
            raise EptStudioError("--move-ae and --move-port go with --retrieve move")
        return {}
    if args.url:
        raise EptStudioError("--retrieve move is for --dimse: DICOMweb retrieves by WADO-RS")
    given = {"move_ae_title": move_ae, "move_port": move_port}
    return {"retrieve": "move", **{key: value for key, value in given.items() if value is not None}}


def _server(args: argparse.Namespace) -> Any:
    from ept_studio.services.project import DimseServer, PacsServer

    retrieve = _retrieve_settings(args)
    if args.dimse:
        if args.user or args.password_env or args.token_env:
            raise EptStudioError("a DIMSE PACS takes no user, password or token (only --url does)")
        if args.no_verify_tls:
            raise EptStudioError("--no-verify-tls is for --url only: DICOM TLS always checks")
        if args.ca_file and not args.tls:
            raise EptStudioError("--ca-file with --dimse needs --tls")
        ca_file = str(args.ca_file) if args.ca_file else None
        return DimseServer.parse(
            args.dimse, args.calling_aet, args.timeout, tls=args.tls, ca_file=ca_file, **retrieve
        )
    if args.tls:
        raise EptStudioError("--tls is for --dimse: a DICOMweb URL is encrypted when https://")
    verify: bool | str = str(args.ca_file) if args.ca_file else not args.no_verify_tls
    common = {"verify_tls": verify, "timeout_s": args.timeout}
    if args.token_env:
        return PacsServer(args.url, "bearer", secret=_from_env(args.token_env), **common)
    if args.user:
        if args.password_env:
            password = _from_env(args.password_env)
        else:
            password = getpass.getpass(f"password for {args.user} at the PACS: ")
        return PacsServer(args.url, "basic", args.user, password, **common)
    if args.password_env:
        raise EptStudioError("--password-env needs --user")
    return PacsServer(args.url, **common)


def _from_env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise EptStudioError(f"the environment variable {name} is not set (or empty)")
    return value


def _check_project(folder: Path) -> None:
    from ept_studio.services.project import is_project_folder

    if not is_project_folder(folder):
        raise EptStudioError(f"{folder} is not an EPT Studio project (create one: `project new`)")


def run_search_pacs(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import search_pacs

    _check_project(args.folder)
    server = _server(args)
    if args.series_of:
        _list_series(server, args.series_of, console)
        return
    studies = search_pacs(
        server,
        patient=args.patient,
        patient_id=args.patient_id,
        date_range=args.date,
        modality=args.modality,
        description=args.description,
    )
    for study in studies:
        instances = "?" if study.instances is None else str(study.instances)
        console.line(
            "\t".join(
                (
                    study.study_uid,
                    study.date or "-",
                    "/".join(study.modalities) or "-",
                    f"{instances} instances",
                    study.description or "-",
                    study.patient_name or "-",
                    study.patient_id or "-",
                )
            )
        )
    console.note(
        f"{len(studies)} studies (study UID, date, modalities, instances, description, patient)"
    )


def _list_series(server: Any, study_uid: str, console: Console) -> None:
    from ept_studio.services.project import search_pacs_series

    found = search_pacs_series(server, study_uid)
    for series in found:
        number = "-" if series.number is None else str(series.number)
        instances = "?" if series.instances is None else str(series.instances)
        fields = (series.series_uid, number, series.modality or "-", f"{instances} instances")
        console.line("\t".join((*fields, series.description or "-")))
    console.note(f"{len(found)} series (series UID, number, modality, instances, description)")


def run_import_pacs(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import (
        ImportFinished,
        PacsRetrieved,
        Project,
        iter_import_from_pacs,
        missing_key_message,
    )

    server = _server(args)
    with Project.open(args.folder) as project:
        without_key = None if project.has_key else missing_key_message(project.project_id)
        events = iter_import_from_pacs(
            project,
            server,
            args.study_uids,
            series_uids=set(args.series) if args.series else None,
            thumbnails=not args.no_thumbnails,
        )
        for event in events:
            if isinstance(event, ImportFinished):
                args.show_report(event.report, console, without_key)
            elif isinstance(event, PacsRetrieved):
                console.progress(event.done, event.total, "instances retrieved")
            else:
                console.progress(event.done, event.total, "files imported")
