"""The accuracy protocol's tables: plain dicts for JSON, a markdown report, the paper's layout.

Everything here works on the results document (plain JSON data), so a report can be rebuilt from a
saved ``results.json`` without torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from ept_studio.evidence.datasets import PAPER_TABLE1, TASKS

METRIC_LABEL = {"accuracy": "accuracy", "map": "mAP"}


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a metric that could not be computed is ``null``."""
    return None if value is None or math.isnan(value) else round(float(value), 6)


def summary_dicts(summaries: Sequence[Any]) -> list[dict[str, Any]]:
    """:class:`~ept_studio.evidence.protocol_stats.MethodSummary` objects as JSON-ready dicts."""
    rows = []
    for summary in summaries:
        row = dataclasses.asdict(summary)
        row["reliability"] = [
            {key: finite_or_none(v) if isinstance(v, float) else v for key, v in b.items()}
            for b in row["reliability"]
        ]
        rows.append({k: finite_or_none(v) if isinstance(v, float) else v for k, v in row.items()})
    return rows


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f}"


def _pm(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{100.0 * mean:.1f} ± {100.0 * (sd or 0.0):.1f}"


def results_markdown(document: dict[str, Any], plots: Sequence[str]) -> str:
    """The report: what ran, on what, and one row per method and K."""
    dataset, protocol = document["dataset"], document["protocol"]
    summaries = document["summaries"]
    metric = METRIC_LABEL[summaries[0]["metric"]] if summaries else "accuracy"
    counts = ", ".join(f"{name} {n}" for name, n in dataset["counts"].items())
    recipe = document["recipe"]
    lines = [
        f"# Few-shot {metric}: {dataset['title']}",
        "",
        f"> {document['notice']}",
        "",
        f"- Command: `{document['command']}`" if document["command"] else "- Command: (API call)",
        f"- Machine: {document['machine']['device']}, {document['machine']['platform']}, "
        f"{document['machine']['cpu_count']} CPUs; torch {document['versions']['torch']}, "
        f"timm {document['versions']['timm']}; wall time {document['wall_seconds'] / 60:.1f} min",
        f"- Backbone: {document['backbone']['name']} (sha256 {document['backbone']['sha256'][:16]}...)",
        f"- Data: {counts} ({dataset['skipped_files']} files skipped). Source: {dataset['source']}; "
        f"licence: {dataset['licence']}; labels: {dataset['labels']}",
        f"- Limits: {dataset['limits']}",
        f"- Protocol: K in {protocol['shots']}, {protocol['draws']} support draws x "
        f"{protocol['seeds']} seeds, queries per class {protocol['queries_per_class'] or 'all'}, "
        f"{protocol['resamples']} bootstrap resamples ({protocol['confidence']:.0%} CI), seed "
        f"{protocol['seed']}",
        f"- Recipe (identical for every method): {recipe['optimizer']} lr {recipe['lr']}, "
        f"{recipe['epochs']} epochs, batch {recipe['batch_size']}, crop scale "
        f"{tuple(recipe['crop_scale'])}, flip {recipe['hflip']}",
        "",
        *_wide_table(summaries, protocol["shots"], metric),
        "",
        *_long_table(summaries, metric),
        *_calibration_table(summaries, protocol),
    ]
    for note in document["draw_notes"] + document["dataset"]["notes"]:
        lines.append(f"- Note: {note}")
    lines += ["", *(f"![{name}]({name})" for name in plots), ""]
    return "\n".join(lines)


def _wide_table(summaries: list[dict[str, Any]], shots: list[int], metric: str) -> list[str]:
    """Methods x K, mean ± sd in percent (the shape of the paper's Table 1)."""
    methods = list(dict.fromkeys(s["method"] for s in summaries))
    header = f"| method | {' | '.join(f'{k}-shot {metric} (%)' for k in shots)} |"
    lines = [header, "|---|" + "---|" * len(shots)]
    for method in methods:
        cells = []
        for k in shots:
            found = [s for s in summaries if s["method"] == method and s["shots"] == k]
            cells.append(_pm(found[0]["mean"], found[0]["sd"]) if found else "not run")
        lines.append(f"| {method} | {' | '.join(cells)} |")
    return lines


def _long_table(summaries: list[dict[str, Any]], metric: str) -> list[str]:
    lines = [
        f"| method | K | runs | {metric} mean ± sd (%) | 95 % CI (%) | AUC (%) | ECE (%) | "
        "classes | query | train s/run | trainable params |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        failed = f" ({s['failed_runs']} diverged)" if s["failed_runs"] else ""
        classes = (
            str(s["classes_min"])
            if s["classes_min"] == s["classes_max"]
            else f"{s['classes_min']}-{s['classes_max']}"
        )
        lines.append(
            f"| {s['method']} | {s['shots']} | {s['runs']}{failed} | {_pm(s['mean'], s['sd'])} | "
            f"{_pct(s['ci_low'])}-{_pct(s['ci_high'])} | {_pm(s['auc_mean'], s['auc_sd'])} | "
            f"{_pm(s['ece_mean'], s['ece_sd'])} | {classes} | {s['query_size_mean']:.0f} | "
            f"{s['train_seconds_mean']:.1f} | {s['trainable_parameters']:,} |"
        )
    return lines


def _calibration_table(summaries: list[dict[str, Any]], protocol: dict[str, Any]) -> list[str]:
    """ECE before and after temperature scaling and the prediction sets, per method and K."""
    rows = [s for s in summaries if s.get("calibration")]
    if not rows:
        return []
    fraction = protocol.get("calibration_fraction", 0.5)
    coverage = protocol.get("set_coverage", 0.9)
    lines = [
        "",
        f"Calibration and {coverage:.0%} prediction sets: in each run, {fraction:g} of each "
        "class's query images (rounded down) fit the temperature and the sets; every number "
        "below, accuracy included, is measured on the rest (the evaluation part).",
        "",
        "| method | K | runs | accuracy on evaluation (%) | ECE before -> after (%) | T | "
        "coverage (%) | bound (%) | set size | n calibration | guaranteed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        c = s["calibration"]
        temperature = "n/a" if c["temperature_mean"] is None else f"{c['temperature_mean']:.2f}"
        size = "n/a" if c["set_size_mean"] is None else f"{c['set_size_mean']:.2f}"
        lines.append(
            f"| {s['method']} | {s['shots']} | {c['runs']} | {_pct(c['accuracy_mean'])} | "
            f"{_pct(c['ece_before_mean'])} -> {_pct(c['ece_after_mean'])} | {temperature} | "
            f"{_pct(c['coverage_mean'])} | {_pct(c['coverage_low'])}-{_pct(c['coverage_high'])} | "
            f"{size} | {c['calibration_size_mean']:.0f} | "
            f"{c['guaranteed_runs']}/{c['runs_with_sets']} |"
        )
    return lines


def medfmc_table(document: dict[str, Any], task_key: str) -> str:
    """Our numbers next to the paper's Table 1 for one MedFMC task (percent)."""
    task = TASKS[task_key]
    summaries = document["summaries"]
    methods = list(dict.fromkeys([*PAPER_TABLE1, *(s["method"] for s in summaries)]))
    lines = [
        f"## {task.title} ({task.metric}, %): this run vs Zu et al. 2024 Table 1 (ViT-B/16 in21k)",
        "",
        "| method | 1-shot ours (paper) | 5-shot ours (paper) | 10-shot ours (paper) |",
        "|---|---|---|---|",
    ]
    for method in methods:
        cells = []
        for column, k in enumerate((1, 5, 10)):
            found = [s for s in summaries if s["method"] == method and s["shots"] == k]
            ours = _pm(found[0]["mean"], found[0]["sd"]) if found else "-"
            paper = PAPER_TABLE1.get(method, {}).get(task_key)
            cells.append(f"{ours} ({paper[column]:.2f})" if paper else f"{ours} (-)")
        lines.append(f"| {method} | {' | '.join(cells)} |")
    lines.append("")
    return "\n".join(lines)
