"""Rebuild the recipe sweep's tables and the evidence document's blocks that quote them.

``.venv/bin/python packaging/sweep_tables.py`` reads every ``results.json`` under
``resources/evidence/sweep/runs/`` (plus the textiles K = 5 paper-recipe runs), writes the tables of
``resources/evidence/sweep/`` with the same functions as ``ept-studio bench sweep-report``, and
replaces each block ``<!-- sweep: NAME -->`` ... ``<!-- /sweep -->`` of
``resources/docs/evidence.md`` with the table NAME
(``default-verdicts`` is the default recipe's lines of ``table.md``: where each method beats, ties
or falls below the prototype; ``calibration.md`` is the default recipe's ECE before and after
temperature scaling and its prediction sets' coverage, from the runs that measured them, quoted
in the block ``<!-- calibration -->`` ... ``<!-- /calibration -->``; ``detail`` is the
fine-detail check's tables, from ``packaging/detail_table.py``, also written to
``resources/evidence/detail/table.md``).
``--check`` writes nothing and exits 1 when a file would change. ``--recalibrate`` first measures
the calibration of every results file whose runs kept their query scores again, with the current
rules (no training again), and rewrites those files.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "resources" / "evidence" / "sweep"
RUNS = (SWEEP / "runs", ROOT / "resources" / "evidence" / "recipes-textiles-k5" / "paper")
EVIDENCE = ROOT / "resources" / "docs" / "evidence.md"
DETAIL_TABLE = ROOT / "resources" / "evidence" / "detail" / "table.md"
"""The fine-detail check's tables (the app's default), also quoted in the block ``detail``."""
CALIBRATION_RECIPE = "default + bf16=on"
"""The recipe whose runs the calibration table shows: the default, under bfloat16 autocast as the
app runs it on a CPU with AVX512-BF16 (these runs kept their query scores; see evidence.md)."""
CALIBRATION_RUNS = "calib-"
"""Folders of runs made for the calibration table: they repeat sweep cells (same draws, same
recipe), so the accuracy tables leave them out, and the calibration table checks that their
whole-query accuracies are the sweep's, run for run."""
"""The document whose marked blocks quote the sweep's tables."""
APP_RECIPE = "default + trained_share=0.5"
"""What the app trains with: the default preset keeping half of what training learned."""

VERSUS: dict[str, tuple[tuple[str, str], ...]] = {
    "head-init.md": (("default", "default + head_init=normal"),),
    "paper-vs-default.md": (("default", "paper"),),
    "full-rate.md": (("default", "default + lr=0.0003"), ("default", "default + lr=3e-05")),
    "hold-out.md": (
        ("default", "default + hold_out"),
        ("default", "default + tie_break=loss, hold_out"),
        ("default + hold_out", "default + tie_break=loss, hold_out"),
    ),
    "crop.md": (
        ("default", "default + crop_scale=0.08-1"),
        ("default", "default + crop_scale=0.8-1"),
    ),
    "bf16.md": (("default", "default + bf16=on"),),
    "trained-share.md": (("default", "default + trained_share=0.5"),),
}
"""Each table made of recipe-against-recipe comparisons, in the order they are printed."""

BLOCK = re.compile(r"(<!-- sweep: (?P<name>[\w.-]+) -->\n)(?:(?!<!--).)*?(<!-- /sweep -->)", re.S)
CALIBRATION_BLOCK = re.compile(
    r"(<!-- calibration -->\n)(?:(?!<!--).)*?(<!-- /calibration -->)", re.S
)
"""The evidence document's one block that quotes ``calibration.md``."""


def tables() -> dict[str, str]:
    """Every table of the sweep folder, by file name, as ``sweep-report`` writes them."""
    from ept_studio.evidence.calibration_report import (
        calibration_markdown,
        load_calibration,
        reproduction,
    )
    from ept_studio.evidence.sweep_report import (
        baseline_gains,
        load_sweep,
        recipe_gains,
        results_files,
        sweep_markdown,
        versus_markdown,
        wide_markdown,
    )

    files = results_files([path for path in RUNS if path.exists()])
    repeats = [f for f in files if f.parent.name.startswith(CALIBRATION_RUNS)]
    cells = load_sweep([f for f in files if f not in repeats])
    gains = baseline_gains(cells)
    out = {
        "table.md": sweep_markdown(cells, gains),
        "default-wide.md": wide_markdown(cells, gains, "default"),
        "calibration.md": calibration_markdown(
            load_calibration(files),
            recipe=CALIBRATION_RECIPE,
            reproduced=reproduction(load_sweep(repeats), cells) if repeats else [],
        ),
    }
    for name, pairs in VERSUS.items():
        parts = [
            versus_markdown(cells, recipe_gains(cells, ref, other), ref, other).strip()
            for ref, other in pairs
        ]
        out[name] = "\n\n".join(parts) + "\n"
    return out


def default_verdicts(table: str, recipe: str = "default") -> str:
    """``recipe``'s beats / ties / below lines of ``table.md``."""
    lines = [
        line
        for line in table.splitlines()
        if line.startswith("- ") and f"({recipe} recipe)" in line
    ]
    return "\n".join(lines) + "\n"


def fill_blocks(document: str, blocks: dict[str, str]) -> str:
    """``document`` with each marked block replaced by its table; an unknown name is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in blocks:
            raise SystemExit(f"block {name!r} names no sweep table ({', '.join(blocks)})")
        return match.group(1) + blocks[name].strip() + "\n" + match.group(3)

    return BLOCK.sub(replace, document)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 on a change")
    parser.add_argument(
        "--recalibrate",
        action="store_true",
        help="first measure calibration again from the query scores the runs kept",
    )
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.recalibrate:
        from ept_studio.evidence.accuracy import recalibrate_results
        from ept_studio.evidence.sweep_report import results_files

        for path in results_files([p for p in RUNS if p.exists()]):
            if recalibrate_results(path.parent):
                sys.stdout.write(f"recalibrated {path.relative_to(ROOT)}\n")
    made = tables()
    detail = detail_markdown()
    blocks = dict(
        made,
        **{
            "default-verdicts": default_verdicts(made["table.md"]),
            "share-verdicts": default_verdicts(made["table.md"], APP_RECIPE),
            "detail": detail,
        },
    )
    targets: dict[Path, str] = {SWEEP / name: text for name, text in made.items()}
    targets[DETAIL_TABLE] = detail
    document = fill_blocks(EVIDENCE.read_text(encoding="utf-8"), blocks)
    targets[EVIDENCE] = CALIBRATION_BLOCK.sub(
        lambda match: match.group(1) + made["calibration.md"].strip() + "\n" + match.group(2),
        document,
    )
    changed = [path for path, text in targets.items() if _differs(path, text)]
    for path in changed:
        if not args.check:
            path.write_text(targets[path], encoding="utf-8")
        verb = "would change" if args.check else "wrote"
        sys.stdout.write(f"{verb} {path.relative_to(ROOT)}\n")
    return 1 if args.check and changed else 0


def detail_markdown() -> str:
    """The fine-detail tables (``packaging/detail_table.py``, beside this file)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import detail_table

    return str(detail_table.markdown())


def _differs(path: Path, text: str) -> bool:
    return not path.exists() or path.read_text(encoding="utf-8") != text


if __name__ == "__main__":
    raise SystemExit(main())
