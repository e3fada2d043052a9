"""``ept-studio``: the headless command line over the same services the desktop app uses.

Each command module registers its sub-commands with a ``handler(args, console)``; nothing here
imports torch, so ``--help`` and torch-free commands stay fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.cli import demo, engine, onnx, project
from ept_studio.cli.console import Console
from ept_studio.errors import EptStudioError, TrainingCancelled

COMMAND_MODULES = (engine, project, onnx, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ept-studio",
        description=(
            "Embedded Prompt Tuning for few-shot medical images. Without a command, the desktop "
            "app opens; the commands below work headless."
        ),
        epilog=RESEARCH_USE_NOTICE,
    )
    parser.add_argument("--version", action="version", version=f"EPT Studio {__version__}")
    demo.add_demo_option(parser)
    commands = parser.add_subparsers(dest="command")
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ept-studio`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console()
    if args.command is None and args.demo is None:
        return _run_desktop_app()
    try:
        if args.command is None:
            return _run_desktop_app(demo.prepare_demo(args.demo, console))
        args.handler(args, console)
    except TrainingCancelled as err:
        console.note(f"cancelled: {err}")
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        return 0
    except KeyboardInterrupt:
        console.note("interrupted")
        return 130
    except EptStudioError as err:
        console.note(f"error: {err}")
        return 2
    return 0


def _run_desktop_app(open_folder: Path | None = None) -> int:
    """No command: open the desktop app. Qt is imported only here, so the commands stay Qt-free."""
    from ept_studio.gui.app import run_app

    return int(run_app(open_folder=open_folder))
