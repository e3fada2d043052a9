"""The README stays a user's page: short, its links and its documents' links lead somewhere, and its
results table quotes the evidence document."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "resources" / "docs"
MAX_README_BYTES = 15_360
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
"""Markdown links and images; the target is group 1 (no titles are used)."""


def _relative_targets(document: Path) -> list[str]:
    targets = LINK.findall(document.read_text(encoding="utf-8"))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def _documents() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_the_readme_is_at_most_15_kib() -> None:
    assert len(README.read_bytes()) <= MAX_README_BYTES


@pytest.mark.parametrize("document", _documents(), ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file_that_exists(document: Path) -> None:
    missing = [
        target
        for target in _relative_targets(document)
        if not (document.parent / target.split("#", 1)[0]).is_file()
    ]
    assert missing == []


def test_the_readme_links_every_document() -> None:
    linked = {(ROOT / t.split("#", 1)[0]).resolve() for t in _relative_targets(README)}
    assert [p.name for p in sorted(DOCS.glob("*.md")) if p.resolve() not in linked] == []


def test_the_readme_results_table_quotes_the_evidence_document() -> None:
    readme = README.read_text(encoding="utf-8")
    evidence = (DOCS / "evidence.md").read_text(encoding="utf-8")
    figures = re.findall(r"\d+\.\d ± \d+\.\d", readme.split("## Results", 1)[1])
    assert len(figures) == 16
    assert [f for f in figures if f not in evidence] == []


def test_the_link_finder_sees_links_and_images_and_skips_urls(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "![shot](a.png) [doc](b.md#part) [web](https://x.org) [here](#top)\n", encoding="utf-8"
    )
    assert _relative_targets(page) == ["a.png", "b.md#part"]


def test_every_feature_of_the_where_is_what_table_opens_in_one_click() -> None:
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    section = text.split("## Where is what", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    files = [row.split(" | ", 1)[1] for row in rows[1:]]
    assert len(files) >= 30
    unlinked = [cell for cell in files if not LINK.search(cell)]
    bare = [cell for cell in files if re.sub(r"\[`[^`]+`\]\([^)]+\)", "", cell).count("`")]
    assert unlinked == []
    assert bare == []
