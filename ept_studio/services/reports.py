"""Exports of a run's results: the per-image predictions as CSV, and a markdown model card.

Neither carries patient data: images are named as the gallery names them (``#12 CT 512×512``) and by
the first 12 hex digits of their content hash, never by path or file name; the model card counts
images per class, role and modality and describes the method, the backbone (name and sha256), the
metrics with their intervals, the warnings and the library versions. Both start with the
research-use notice, and every export is recorded in the project (its file name only).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.data.store import ImageRecord, Project, Role, RunRecord
from ept_studio.errors import ExportError
from ept_studio.files import file_sha256
from ept_studio.services.results import Interval, RunResults, load_run_record, run_results

SHA_PREFIX = 12
CSV_KIND = "predictions-csv"
CARD_KIND = "model-card"


def image_caption(image: ImageRecord) -> str:
    """How an image is named outside the app: id, modality and size (as in the gallery)."""
    kind = image.modality or ("DICOM" if image.kind == "dicom" else "image")
    size = f"{image.columns}×{image.rows}" if image.rows and image.columns else ""
    return f"#{image.id} {kind} {size}".strip()


def export_predictions_csv(
    folder_or_project: Path | Project,
    run_id: int,
    destination: Path,
    *,
    locations_dir: Path | None = None,
) -> Path:
    """Write run ``run_id``'s predictions to ``destination`` (CSV, UTF-8) and record the export.

    Columns: ``image``, ``sha256_prefix``, ``role``, ``label`` (``;``-joined, empty when none),
    ``predicted_class``, then ``score_<class>`` per class. The first line is the research-use
    notice, commented with ``#``.
    """
    with _opened(folder_or_project, locations_dir) as project:
        results = run_results(project, run_id)
        _write(project, run_id, destination, CSV_KIND, lambda: _csv_text(project, results))
    return destination


def write_model_card(
    folder_or_project: Path | Project,
    run_id: int,
    destination: Path,
    *,
    locations_dir: Path | None = None,
) -> Path:
    """Write a markdown model card for run ``run_id`` to ``destination`` and record the export."""
    with _opened(folder_or_project, locations_dir) as project:
        results = run_results(project, run_id)
        _write(project, run_id, destination, CARD_KIND, lambda: _card_text(project, results))
    return destination


@contextmanager
def _opened(folder_or_project: Path | Project, locations_dir: Path | None) -> Iterator[Project]:
    if isinstance(folder_or_project, Project):
        yield folder_or_project
        return
    with Project.open(Path(folder_or_project), locations_dir=locations_dir) as project:
        yield project


def _write(
    project: Project, run_id: int, destination: Path, kind: str, text: Callable[[], str]
) -> None:
    destination = Path(destination)
    partial = destination.with_name(destination.name + ".partial")
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(text(), encoding="utf-8", newline="")
        partial.replace(destination)
    except OSError as err:
        raise ExportError(f"{destination}: the {kind} cannot be written ({err})") from err
    project.record_export(run_id, kind, destination.name, file_sha256(destination))


def _csv_text(project: Project, results: RunResults) -> str:
    images = {image.id: image for image in project.images()}
    roles = {label.image_id: label.role.value for label in project.labels()}
    out = io.StringIO()
    out.write(f"# {RESEARCH_USE_NOTICE}\n")
    writer = csv.writer(out, lineterminator="\n")
    header = ["image", "sha256_prefix", "role", "label", "predicted_class"]
    writer.writerow(header + [f"score_{name}" for name in results.classes])
    for item in results.images:
        writer.writerow(
            [
                image_caption(images[item.image_id]),
                item.sha256[:SHA_PREFIX],
                roles.get(item.image_id, ""),
                ";".join(item.labels or ()),
                item.predicted_class,
                *(f"{item.scores.get(name, math.nan):.6f}" for name in results.classes),
            ]
        )
    return out.getvalue()


def _card_text(project: Project, results: RunResults) -> str:
    run = project.run(results.run_id)
    sections = [
        f"# Model card: run {run.id} ({results.kind})",
        f"> **{RESEARCH_USE_NOTICE}**",
        _intended_use(results),
        _data_section(project, run, results),
        _method_section(run),
        _results_section(results),
        _warnings_section(results),
        _versions_section(run),
    ]
    return "\n\n".join(sections) + "\n"


def _intended_use(results: RunResults) -> str:
    return (
        "## Intended use\n\n"
        f"Research into few-shot classification of medical images into {len(results.classes)} "
        f"classes ({', '.join(results.classes)}), {results.label_mode}-label. The outputs are "
        "model scores and a predicted class, not findings: the model is not a medical device, "
        "has not been validated clinically and must not inform diagnosis or treatment."
    )


def _data_section(project: Project, run: RunRecord, results: RunResults) -> str:
    """Counts per class and role, and per modality: nothing that names an image or a patient."""
    by_sha = {image.sha256: image for image in project.images()}
    record = load_run_record(project, run)
    rows: list[tuple[str, str, str]] = []  # (role, class, sha256)
    if record is not None:
        classes = record["data"]["classes"]
        for role in (Role.TRAIN.value, Role.TEST.value):
            for image in record["data"].get(role, []):
                for name in _target_names(image["target"], classes):
                    rows.append((role, name, image["sha256"]))
    else:
        for item in results.images:
            for name in item.labels or ("(no label)",):
                rows.append(("evaluated", name, item.sha256))
    roles = sorted({role for role, _, _ in rows})
    counts = Counter((role, name) for role, name, _ in rows)
    table = ["| class | " + " | ".join(roles) + " |", "|---" * (len(roles) + 1) + "|"]
    names = list(results.classes) + sorted({n for _, n, _ in rows} - set(results.classes))
    for name in names:
        table.append(f"| {name} | " + " | ".join(str(counts[(r, name)]) for r in roles) + " |")
    modalities = Counter(
        (by_sha[sha].modality or by_sha[sha].kind) if sha in by_sha else "unknown"
        for sha in {sha for _, _, sha in rows}
    )
    listed = ", ".join(f"{m}: {n}" for m, n in sorted(modalities.items()))
    return (
        "## Data\n\nImages per class and role (content hashes are kept in the project; no file "
        "name, path or header value is reproduced here):\n\n"
        + "\n".join(table)
        + f"\n\nModalities: {listed or 'none'}."
    )


def _target_names(target: Any, classes: list[str]) -> list[str]:
    if isinstance(target, list):
        return [c for c, flag in zip(classes, target, strict=True) if flag]
    return [classes[int(target)]]


def _method_section(run: RunRecord) -> str:
    config = run.config
    method = json.dumps(config.get("method", {}), sort_keys=True)
    lines = [
        "## Method",
        "",
        f"- Tuning method: `{method}`",
        f"- Backbone: {run.backbone}, weights sha256 `{run.backbone_sha256}`",
        f"- Seed: {run.seed}",
    ]
    if "recipe" in config:
        recipe = ", ".join(f"{k} = {v}" for k, v in sorted(config["recipe"].items()))
        lines.append(f"- Recipe: {recipe}")
    prompt = run.artifacts.get("prompt_sha256") or config.get("prompt_sha256")
    if prompt:
        lines.append(f"- Prompt file sha256: `{prompt}`")
    if run.device:
        lines.append(f"- Device: {run.device}")
    return "\n".join(lines)


def _fmt(interval: Interval) -> str:
    if not interval.defined:
        return "n/a"
    if math.isnan(interval.low):
        return f"{interval.value:.3f}"
    return f"{interval.value:.3f} ({interval.low:.3f}-{interval.high:.3f})"


def _results_section(results: RunResults) -> str:
    scores = results.scores
    if scores is None:
        return "## Results\n\nNo evaluated image: no metric can be reported."
    level = f"{100 * scores.confidence:.0f} %"
    lines = [
        "## Results",
        "",
        f"{scores.evaluated} evaluated images; intervals are {level} percentile bootstrap "
        f"intervals ({scores.resamples} resamples, seed {scores.seed}).",
        "",
        f"- Accuracy: {_fmt(scores.accuracy)}",
        f"- Expected calibration error (10 bins): {scores.ece:.3f}",
        "",
        "| class | test images | precision | recall | F1 | AUC |",
        "|---|---|---|---|---|---|",
    ]
    for c in scores.per_class:
        lines.append(
            f"| {c.name} | {c.support} | {_fmt(c.precision)} | {_fmt(c.recall)} | "
            f"{_fmt(c.f1)} | {_fmt(c.auc)} |"
        )
    if scores.confusion_matrix is not None:
        names = results.classes
        lines += ["", "Confusion matrix (rows: label, columns: predicted class):", ""]
        lines += ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for name, row in zip(names, scores.confusion_matrix, strict=True):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def _warnings_section(results: RunResults) -> str:
    items = [f"- {w}" for w in results.warnings] or ["- none"]
    return "## Warnings\n\n" + "\n".join(items)


def _versions_section(run: RunRecord) -> str:
    versions = {"ept_studio (this card)": __version__, **run.versions}
    return "## Versions\n\n" + "\n".join(f"- {k}: {v}" for k, v in sorted(versions.items()))
