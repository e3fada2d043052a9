"""The demo commands: ``ept-studio demo create FOLDER`` (headless) and ``ept-studio --demo``.

The demo is a small project of de-identified DICOM test files that ship with pydicom (see
:mod:`ept_studio.services.project.demo`); ``--demo`` builds it once under the user's data folder (or the
folder given) and opens the desktop app on it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.cli.console import Console


def add_commands(commands: Any) -> None:
    """Register ``demo`` and its sub-command ``create``."""
    demo = commands.add_parser("demo", help="the demo project (DICOM samples shipped with pydicom)")
    sub = demo.add_subparsers(dest="demo_command", required=True)
    create = sub.add_parser("create", help="build the demo project in a folder")
    create.add_argument("folder", type=Path, help="the folder to build it in (project + images)")
    create.add_argument("--no-thumbnails", action="store_true", help="do not cache thumbnails")
    create.set_defaults(handler=run_create)


def add_demo_option(parser: argparse.ArgumentParser) -> None:
    """``--demo [FOLDER]``: open the desktop app on the demo project (built if it is not there)."""
    parser.add_argument(
        "--demo",
        nargs="?",
        const="",
        metavar="FOLDER",
        help="open the desktop app on the demo project, building it first if needed (default "
        "folder: 'demo' in the user data folder or $EPT_STUDIO_DATA)",
    )


def run_create(args: argparse.Namespace, console: Console) -> None:
    from ept_studio.services.project import create_demo_project

    summary = create_demo_project(args.folder, thumbnails=not args.no_thumbnails)
    show_summary(summary, console)


def prepare_demo(folder: str, console: Console) -> Path:
    """Build (or find) the demo for ``--demo``; returns the project folder to open."""
    from ept_studio.services.project import create_demo_project, default_demo_folder

    summary = create_demo_project(Path(folder) if folder else default_demo_folder(), exist_ok=True)
    show_summary(summary, console)
    return summary.project_folder


def show_summary(summary: Any, console: Console) -> None:
    console.line(f"demo project: {summary.project_folder}")
    console.line(f"demo images:  {summary.images_folder}")
    for name in summary.classes:
        train, test = summary.train_counts.get(name, 0), summary.test_counts.get(name, 0)
        console.line(f"  {name}: {train} train, {test} test")
    console.line(f"  unlabelled: {summary.unlabelled}")
    for item in summary.skipped:
        console.note(f"left out {item}")
    console.note(RESEARCH_USE_NOTICE)
