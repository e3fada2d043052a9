"""The sweep's tables, and the evidence document's blocks that quote them, are what the committed
runs give."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _sweep_tables() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sweep_tables", ROOT / "packaging" / "sweep_tables.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_tables_and_evidence_document_match_the_committed_runs() -> None:
    assert _sweep_tables().main(["--check"]) == 0, "run .venv/bin/python packaging/sweep_tables.py"


def test_a_block_is_replaced_between_its_markers_only() -> None:
    fill = _sweep_tables().fill_blocks
    document = "a\n<!-- sweep: t.md -->\nold\nrows\n<!-- /sweep -->\nb <!-- other -->\n"
    assert fill(document, {"t.md": "| new |\n"}) == (
        "a\n<!-- sweep: t.md -->\n| new |\n<!-- /sweep -->\nb <!-- other -->\n"
    )
    with pytest.raises(SystemExit, match="names no sweep table"):
        fill(document, {"u.md": ""})


def test_the_default_verdicts_are_the_default_recipes_lines() -> None:
    table = (
        "| row |\n- ept (default recipe): beats 1\n- ept (paper recipe): beats 0\n"
        "- linear (default recipe): ties 2\n"
    )
    verdicts = _sweep_tables().default_verdicts(table)
    assert verdicts == "- ept (default recipe): beats 1\n- linear (default recipe): ties 2\n"


def test_the_evidence_document_quotes_every_sweep_table_and_the_readme_none() -> None:
    module = _sweep_tables()
    quoted = module.BLOCK.findall(module.EVIDENCE.read_text(encoding="utf-8"))
    names = [match[1] for match in quoted]
    expected = ["default-wide.md", "default-verdicts", "share-verdicts", "detail", *module.VERSUS]
    assert sorted(names) == sorted(expected)
    assert "<!-- sweep:" not in (ROOT / "README.md").read_text(encoding="utf-8")
