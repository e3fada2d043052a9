"""Plots of an accuracy run: metric vs K per method with 95 % CIs, and reliability diagrams.

matplotlib is imported inside the functions with the non-interactive Agg backend, so importing
this module is free and no window ever opens. Both plots read the plain results document
(``results.json``), so they can be redrawn from a saved run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_METRIC_LABEL = {"accuracy": "accuracy", "map": "mAP"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_vs_shots(document: dict[str, Any], path: Path) -> Path:
    """One line per method: mean metric (%) vs K, with its 95 % bootstrap interval as error bars."""
    plt = _pyplot()
    summaries = document["summaries"]
    shots = sorted({s["shots"] for s in summaries})
    methods = list(dict.fromkeys(s["method"] for s in summaries))
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    width = 0.06 * (len(methods) - 1)
    for offset, method in enumerate(methods):
        rows = sorted((s for s in summaries if s["method"] == method), key=lambda s: s["shots"])
        rows = [r for r in rows if r["mean"] is not None]
        if not rows:
            continue
        x = [shots.index(r["shots"]) - width / 2 + 0.06 * offset for r in rows]
        y = [100 * r["mean"] for r in rows]
        low = [
            100 * (r["mean"] - (r["ci_low"] if r["ci_low"] is not None else r["mean"]))
            for r in rows
        ]
        high = [
            100 * ((r["ci_high"] if r["ci_high"] is not None else r["mean"]) - r["mean"])
            for r in rows
        ]
        axes.errorbar(x, y, yerr=[low, high], marker="o", capsize=3, label=method)
    metric = _METRIC_LABEL[summaries[0]["metric"]] if summaries else "accuracy"
    axes.set_xticks(range(len(shots)), [f"{k}-shot" for k in shots])
    axes.set_ylabel(f"{metric} (%), mean and 95 % CI")
    axes.set_title(_title(document), fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, ncols=2)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def plot_reliability(document: dict[str, Any], path: Path, shots: int | None = None) -> Path:
    """Reliability diagrams at one K (default: the largest), one panel per method."""
    plt = _pyplot()
    summaries = document["summaries"]
    k = shots if shots is not None else max((s["shots"] for s in summaries), default=0)
    rows = [s for s in summaries if s["shots"] == k]
    columns = max(1, min(3, len(rows)))
    lines = max(1, -(-len(rows) // columns))
    figure, grid = plt.subplots(
        lines, columns, figsize=(3.2 * columns, 3.0 * lines), dpi=110, squeeze=False
    )
    for panel, summary in zip(grid.ravel(), rows, strict=False):
        _reliability_panel(panel, summary)
    for panel in grid.ravel()[len(rows) :]:
        panel.axis("off")
    figure.suptitle(
        f"Reliability at {k}-shot (pooled query predictions): {_title(document)}", fontsize=9
    )
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _reliability_panel(panel: Any, summary: dict[str, Any]) -> None:
    bins = summary["reliability"]
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    accuracy = [b["accuracy"] if b["accuracy"] is not None else 0.0 for b in bins]
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.1
    panel.bar(centres, accuracy, width=width * 0.95, alpha=0.75, edgecolor="black", linewidth=0.4)
    panel.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    ece = summary["ece_mean"]
    ece_text = "n/a" if ece is None else f"{100 * ece:.1f} %"
    panel.set_title(f"{summary['method']} (ECE {ece_text})", fontsize=9)
    panel.set_xlim(0, 1)
    panel.set_ylim(0, 1)
    panel.set_xlabel("confidence", fontsize=8)
    panel.set_ylabel("accuracy", fontsize=8)


def _title(document: dict[str, Any]) -> str:
    return f"{document['dataset']['title']} — {document['backbone']['name']}"
