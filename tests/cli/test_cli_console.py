"""The CLI's output layer: reports go to stdout and, when asked, to a file."""

from __future__ import annotations

import io
from pathlib import Path

from ept_studio.cli.console import Console


def test_a_report_is_printed_and_written_once_with_a_final_newline(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err)
    target = tmp_path / "new" / "table.md"
    console.report("| a |\n|---|", target)
    assert out.getvalue() == "| a |\n|---|\n"
    assert target.read_text(encoding="utf-8") == "| a |\n|---|\n"
    assert err.getvalue() == f"wrote {target}\n"
    console.report("| b |\n")
    assert out.getvalue().endswith("| b |\n\n")
    assert target.read_text(encoding="utf-8") == "| a |\n|---|\n"
