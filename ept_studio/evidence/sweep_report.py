"""``ept-studio bench sweep-report``: many ``bench accuracy`` results as one table that can choose a
recipe.

A sweep is a folder of ``results.json`` files, one per ``bench accuracy`` command (a dataset, some
K, one recipe preset, some methods). This module reads them all, groups the runs by (dataset, K,
recipe, method) and compares every trained method with the nearest-centroid ``prototype`` baseline
*on the same support draws*: the draws of a dataset depend only on the protocol seed, K and the
draw index, so run ``r`` of two methods saw the same support and query images, and the difference
of their accuracies is a paired measurement. The gain's 95 % interval is a bootstrap over the
draws (10,000 seeded resamples).

Nothing here imports torch: it reads JSON and does arithmetic with numpy.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ept_studio.common.errors import ConfigError

BASELINE = "prototype"
GAIN_RESAMPLES = 10_000
UNKNOWN_RECIPE = "custom"
_IGNORED_RECIPE_KEYS = frozenset({"seed", "device"})
_SELECTION_KEYS = frozenset({"early_stopping_patience", "tie_break"})
"""Settings that only act on a held-out set: they do not tell two runs without one apart."""


@dataclasses.dataclass(frozen=True)
class SweepCell:
    """One method at one K on one dataset with one recipe: its runs, by draw."""

    dataset: str
    title: str
    shots: int
    recipe: str
    method: str
    metric: str
    by_draw: dict[int, float]
    mean: float
    sd: float
    ci_low: float | None
    ci_high: float | None
    seconds_mean: float
    failed: int
    classes: int
    query_mean: float

    @property
    def runs(self) -> int:
        return len(self.by_draw)


@dataclasses.dataclass(frozen=True)
class BaselineGain:
    """A trained method's paired accuracy gain over ``prototype`` on the same draws (in 0..1)."""

    dataset: str
    shots: int
    recipe: str
    method: str
    draws: int
    gain: float
    ci_low: float
    ci_high: float
    wins: int

    @property
    def verdict(self) -> str:
        """``beats`` (interval above 0), ``below`` (interval under 0) or ``ties``."""
        if self.ci_low > 0:
            return "beats"
        if self.ci_high < 0:
            return "below"
        return "ties"


def results_files(paths: Iterable[Path]) -> list[Path]:
    """Every ``results.json`` given, or found under the given folders, sorted."""
    found: set[Path] = set()
    for path in paths:
        if path.is_dir():
            found.update(path.rglob("results.json"))
        elif path.is_file():
            found.add(path)
        else:
            raise ConfigError(f"{path} is neither a results.json nor a folder of them")
    if not found:
        raise ConfigError("no results.json found: point at bench accuracy output folders")
    return sorted(found)


def load_sweep(paths: Iterable[Path]) -> list[SweepCell]:
    """The cells of every results document found (see :func:`results_files`)."""
    cells: dict[tuple[str, int, str, str], SweepCell] = {}
    for path in results_files(paths):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: not a readable results document ({err})") from err
        for cell in document_cells(document):
            key = (cell.dataset, cell.shots, cell.recipe, cell.method)
            if key in cells and cells[key].by_draw == cell.by_draw:
                continue  # the same runs again (a baseline run beside each method): keep one
            if key in cells:
                raise ConfigError(
                    f"{path}: {cell.method} at K = {cell.shots} on {cell.dataset} with the "
                    f"{cell.recipe} recipe is in two results files with different numbers; keep one"
                )
            cells[key] = cell
    return sorted(cells.values(), key=lambda c: (c.dataset, c.shots, c.recipe, c.method))


def document_cells(document: dict[str, Any]) -> list[SweepCell]:
    """One results document's cells (one per method and K)."""
    dataset = document["dataset"]
    preset = document.get("preset") or preset_in_command(str(document.get("command", "")))
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for run in document["runs"]:
        groups[(run["method"], int(run["shots"]))].append(run)
    summaries = {(s["method"], int(s["shots"])): s for s in document["summaries"]}
    cells = []
    for (method, shots), runs in groups.items():
        summary = summaries[(method, shots)]
        metric = str(summary["metric"])
        per_draw: dict[int, list[float]] = defaultdict(list)
        for run in runs:
            value = run["metrics"].get(metric)
            per_draw[int(run["draw"])].append(math.nan if value is None else float(value))
        by_draw = {draw: float(np.mean(values)) for draw, values in sorted(per_draw.items())}
        held_out = bool(document.get("protocol", {}).get("hold_out"))
        recipe = recipe_name(document["recipe"], preset, method, held_out)
        if held_out:
            recipe = with_hold_out(recipe)
        values = np.array(list(by_draw.values()))
        cells.append(
            SweepCell(
                dataset=str(dataset["name"]),
                title=str(dataset["title"]),
                shots=shots,
                recipe=recipe,
                method=method,
                metric=metric,
                by_draw=by_draw,
                mean=float(np.mean(values)),
                sd=float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                ci_low=summary.get("ci_low"),
                ci_high=summary.get("ci_high"),
                seconds_mean=float(np.mean([r["train_seconds"] for r in runs])),
                failed=sum(1 for r in runs if r.get("failure")),
                classes=int(max(r["classes"] for r in runs)),
                query_mean=float(np.mean([r["query_size"] for r in runs])),
            )
        )
    return cells


def preset_in_command(command: str) -> str | None:
    """The ``--recipe`` of a recorded command line (documents older than the ``preset`` field);
    ``bench accuracy`` starts from ``paper`` when the option is absent."""
    words = command.split()
    for index, word in enumerate(words):
        if word == "--recipe" and index + 1 < len(words):
            return words[index + 1]
        if word.startswith("--recipe="):
            return word.split("=", 1)[1]
    return "paper" if "bench accuracy" in command else None


def recipe_name(
    recipe: dict[str, Any], preset: str | None = None, method: str = "", held_out: bool = False
) -> str:
    """The preset a results document's recipe is for ``method`` (seed and device do not count),
    else the starting ``preset`` and what differs from it (``default + head_lr=0.0003``), else
    ``custom``.

    Recipes are compared as the method reads them (:func:`method_settings`), so a setting added
    later, or one the method ignores, does not split one recipe in two; without a held-out set
    (``held_out``) nothing reads the selection settings either.
    """
    from ept_studio.core.training.recipe import RECIPES

    ignored = _IGNORED_RECIPE_KEYS if held_out else _IGNORED_RECIPE_KEYS | _SELECTION_KEYS

    def key(data: dict[str, Any]) -> dict[str, Any]:
        settings = method_settings(data, method)
        return {k: v for k, v in settings.items() if k not in ignored}

    for name, candidate in RECIPES.items():
        if key(candidate.to_dict()) == key(recipe):
            return name
    if preset not in RECIPES:
        return UNKNOWN_RECIPE
    base = key(RECIPES[str(preset)].to_dict())
    changes = [f"{k}={_setting(v)}" for k, v in sorted(key(recipe).items()) if base.get(k) != v]
    return f"{preset} + {', '.join(changes)}"


def with_hold_out(recipe: str) -> str:
    """The name of ``recipe`` run with a held-out fifth for model selection (``--hold-out``)."""
    return f"{recipe}, hold_out" if " + " in recipe else f"{recipe} + hold_out"


def method_settings(recipe: dict[str, Any], method: str) -> dict[str, Any]:
    """A recipe's settings as ``method`` uses them.

    A setting a document lacks (it was written before the setting existed) takes the value that
    behaves as the older version did: the dataclass default. ``full_lr`` goes: under full
    fine-tuning it becomes ``lr`` (the rate the method's tensors train at; the head keeps its
    own), elsewhere nothing reads it.
    """
    from ept_studio.core.training.recipe import TrainRecipe

    settings = {**TrainRecipe().to_dict(), **recipe}
    full_lr = settings.pop("full_lr")
    if method == "full" and full_lr is not None:
        if settings["head_lr"] is None:
            settings["head_lr"] = settings["lr"]
        settings["lr"] = full_lr
    return settings


def _setting(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(_setting(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def baseline_gains(cells: Sequence[SweepCell], seed: int = 0) -> list[BaselineGain]:
    """Every trained cell against the ``prototype`` cell of the same dataset, K and recipe.

    A recipe without prototype runs of its own is paired with another recipe's (the ``default``
    if there is one): the prototype does not train, so it saw the same support draws and scored
    them the same way whatever the recipe."""
    prototypes: dict[tuple[str, int], list[SweepCell]] = defaultdict(list)
    for cell in sorted(cells, key=lambda c: (c.recipe != "default", c.recipe)):
        if cell.method == BASELINE:
            prototypes[(cell.dataset, cell.shots)].append(cell)
    gains = []
    for cell in cells:
        same = prototypes.get((cell.dataset, cell.shots), [])
        if cell.method == BASELINE or not same:
            continue
        baseline = next((b for b in same if b.recipe == cell.recipe), same[0])
        gain = paired_gain(cell, baseline, seed)
        if gain is not None:
            gains.append(gain)
    return gains


def recipe_gains(
    cells: Sequence[SweepCell], reference: str, other: str, seed: int = 0
) -> list[BaselineGain]:
    """Every trained method of recipe ``other`` against the same method, dataset and K of recipe
    ``reference``, paired by draw (the gain is ``other`` minus ``reference``)."""
    recipes = {c.recipe for c in cells}
    for name in (reference, other):
        if name not in recipes:
            raise ConfigError(f"no runs with the {name} recipe; there are: {sorted(recipes)}")
    references = {(c.dataset, c.shots, c.method): c for c in cells if c.recipe == reference}
    gains = []
    for cell in cells:
        base = references.get((cell.dataset, cell.shots, cell.method))
        if cell.recipe != other or cell.method == BASELINE or base is None:
            continue
        gain = paired_gain(cell, base, seed)
        if gain is not None:
            gains.append(gain)
    return gains


def paired_gain(cell: SweepCell, reference: SweepCell, seed: int = 0) -> BaselineGain | None:
    """``cell`` minus ``reference`` on the draws both ran; None if they share none."""
    draws = sorted(set(cell.by_draw) & set(reference.by_draw))
    if not draws:
        return None
    differences = np.array([cell.by_draw[d] - reference.by_draw[d] for d in draws])
    low, high = paired_interval(differences, seed)
    return BaselineGain(
        dataset=cell.dataset,
        shots=cell.shots,
        recipe=cell.recipe,
        method=cell.method,
        draws=len(draws),
        gain=float(differences.mean()),
        ci_low=low,
        ci_high=high,
        wins=int((differences > 0).sum()),
    )


def paired_interval(differences: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of the mean of paired differences."""
    if len(differences) == 1:
        value = float(differences[0])
        return value, value
    generator = np.random.default_rng(seed)
    picks = generator.integers(0, len(differences), size=(GAIN_RESAMPLES, len(differences)))
    means = differences[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def _pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _gain_text(gain: BaselineGain | None) -> str:
    if gain is None:
        return "-"
    return (
        f"{100 * gain.gain:+.1f} ({100 * gain.ci_low:+.1f} to {100 * gain.ci_high:+.1f}), "
        f"{gain.wins}/{gain.draws} draws, {gain.verdict}"
    )


def sweep_markdown(cells: Sequence[SweepCell], gains: Sequence[BaselineGain]) -> str:
    """The long table (every cell) and the summary of where a method does not beat prototype."""
    by_key = {(g.dataset, g.shots, g.recipe, g.method): g for g in gains}
    lines = [
        "| dataset | K | recipe | method | runs | accuracy mean ± sd (%) | 95 % CI (%) "
        "| gain over prototype, pp (95 % CI), draws won | train s/run | diverged |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        gain = by_key.get((c.dataset, c.shots, c.recipe, c.method))
        lines.append(
            f"| {c.dataset} ({c.classes} classes) | {c.shots} | {c.recipe} | {c.method} | {c.runs} "
            f"| {_pct(c.mean)} ± {_pct(c.sd)} | {_pct(c.ci_low)}-{_pct(c.ci_high)} "
            f"| {_gain_text(gain)} | {c.seconds_mean:.1f} | {c.failed} |"
        )
    lines += ["", *verdict_lines(gains)]
    return "\n".join(lines) + "\n"


def wide_markdown(cells: Sequence[SweepCell], gains: Sequence[BaselineGain], recipe: str) -> str:
    """One recipe as dataset x method rows and K columns: accuracy mean ± sd, the gain over
    prototype in brackets, the mean train seconds a run and the classes left at that K."""
    chosen = [c for c in cells if c.recipe == recipe]
    if not chosen:
        raise ConfigError(f"no runs with the {recipe} recipe")
    by_key = {(g.dataset, g.shots, g.method): g for g in gains if g.recipe == recipe}
    shots = sorted({c.shots for c in chosen})
    table = {(c.dataset, c.method, c.shots): c for c in chosen}
    rows = sorted({(c.dataset, c.method) for c in chosen}, key=_row_order)
    head = " | ".join(f"K = {k}: accuracy % (gain, pp), s/run" for k in shots)
    lines = [f"| dataset | method | {head} |", "|---|---|" + "---|" * len(shots)]
    for dataset, method in rows:
        texts = []
        for k in shots:
            cell = table.get((dataset, method, k))
            if cell is None:
                texts.append("not run")
                continue
            gain = by_key.get((dataset, k, method))
            bracket = "" if gain is None else f" ({100 * gain.gain:+.1f})"
            texts.append(
                f"{_pct(cell.mean)} ± {_pct(cell.sd)}{bracket}, {cell.seconds_mean:.0f}"
                f" [{cell.classes} cl.]"
            )
        lines.append(f"| {dataset} | {method} | {' | '.join(texts)} |")
    return "\n".join(lines) + "\n"


def _row_order(row: tuple[str, str]) -> tuple[str, int, str]:
    dataset, method = row
    return (dataset, 0 if method == BASELINE else 1, method)


def verdict_lines(gains: Sequence[BaselineGain]) -> list[str]:
    """One line per (recipe, method): how often it beats, ties or falls below prototype."""
    grouped: dict[tuple[str, str], list[BaselineGain]] = defaultdict(list)
    for gain in gains:
        grouped[(gain.recipe, gain.method)].append(gain)
    return [
        f"- {method} ({recipe} recipe): beats prototype in {_tally(items)}"
        for (recipe, method), items in sorted(grouped.items())
    ]


def _tally(items: Sequence[BaselineGain]) -> str:
    """``B of N dataset x K cells, ties in T, below in W; mean gain ...; worst ... (where).``"""
    counts = {v: sum(1 for g in items if g.verdict == v) for v in ("beats", "ties", "below")}
    mean_gain = 100 * float(np.mean([g.gain for g in items]))
    worst = min(items, key=lambda g: g.gain)
    return (
        f"{counts['beats']} of {len(items)} dataset x K cells, ties in {counts['ties']}, below in "
        f"{counts['below']}; mean gain {mean_gain:+.1f} pp; worst {100 * worst.gain:+.1f} pp "
        f"({worst.dataset}, K = {worst.shots})."
    )


def _on_draws(cell: SweepCell, draws: Sequence[int]) -> str:
    """``cell``'s mean ± sd, over ``draws`` only (and saying so) when it ran others too."""
    if len(draws) == cell.runs:
        return f"{_pct(cell.mean)} ± {_pct(cell.sd)}"
    values = np.array([cell.by_draw[d] for d in draws])
    sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return f"{_pct(float(values.mean()))} ± {_pct(sd)} ({len(draws)} of {cell.runs} draws)"


def versus_markdown(
    cells: Sequence[SweepCell], gains: Sequence[BaselineGain], reference: str, other: str
) -> str:
    """Recipe ``other`` against ``reference``, method by method on the same draws: both means,
    the paired gain with its interval, draws won; then one line per method."""
    table = {(c.dataset, c.shots, c.recipe, c.method): c for c in cells}
    lines = [
        f"| dataset | K | method | {reference} % | {other} % "
        "| gain, pp (95 % CI), draws won | s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in sorted(gains, key=lambda g: (g.method, g.dataset, g.shots)):
        ref, new = (
            table[(g.dataset, g.shots, reference, g.method)],
            table[(g.dataset, g.shots, other, g.method)],
        )
        shared = sorted(set(ref.by_draw) & set(new.by_draw))
        lines.append(
            f"| {g.dataset} | {g.shots} | {g.method} | {_on_draws(ref, shared)} "
            f"| {_on_draws(new, shared)} | {_gain_text(g)} "
            f"| {ref.seconds_mean:.0f} / {new.seconds_mean:.0f} |"
        )
    lines.append("")
    grouped: dict[str, list[BaselineGain]] = defaultdict(list)
    for gain in gains:
        grouped[gain.method].append(gain)
    for method, items in sorted(grouped.items()):
        lines.append(f"- {method}: {other} beats {reference} in {_tally(items)}")
    return "\n".join(lines) + "\n"
