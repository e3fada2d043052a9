"""The model card: a markdown description of one tuned model (a training run), for a reader.

It is always built from the training run, whatever results view was on screen, so its numbers are
the model's test-set numbers; predictions of a later inference run are added only on the images the
model was not trained on. It counts images per class and role and per modality (nothing that names
an image or a patient), describes the method in words, the training as it actually ran (epochs and
steps done, not only those asked for), the backbone (name and sha256), the metrics with their
intervals, whether its scores are calibrated and what its prediction sets promise, the warnings and
the library versions, under the research-use notice.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common.errors import ExportError
from ept_studio.core.conformal import ConformalSets
from ept_studio.core.temperature import Calibration
from ept_studio.data.store import Project, Role, RunRecord
from ept_studio.services.model.metric_names import plain_metric_name
from ept_studio.services.model.run_record import Target, TrainingRecord
from ept_studio.services.project.results import (
    Interval,
    RunResults,
    load_run_record,
    model_run_of,
    run_kind,
    run_results,
    scope_summary,
)

__all__ = ["card_runs", "card_text", "method_description", "training_description"]


def card_runs(project: Project, run_id: int, predictions_run: int | None) -> tuple[int, int | None]:
    """(the training run the card describes, the inference run it adds or None).

    An inference run given as ``run_id`` stands for its model's training run and its own
    predictions; an inference run of another model is refused.
    """
    run = project.run(run_id)
    if run_kind(run) == "inference":
        model = model_run_of(project, run)
        if model is None:
            raise ExportError(
                f"run {run_id} used a model from outside this project: a model card needs the "
                "training run of the model; choose it in the Model list"
            )
        return card_runs(project, model.id, predictions_run or run_id)
    if predictions_run is not None:
        later = project.run(predictions_run)
        if later.id == run.id:
            return run.id, None
        if later.config.get("source_run") != run.id:
            raise ExportError(
                f"run {predictions_run} was not predicted with the model of run {run.id}: "
                "choose predictions made with this model"
            )
    return run.id, predictions_run


def card_text(project: Project, model_run: int, predictions_run: int | None = None) -> str:
    run = project.run(model_run)
    results = run_results(project, model_run)
    later = run_results(project, predictions_run) if predictions_run is not None else None
    record = load_run_record(project, run)
    method = run.config.get("method", {})
    sections = [
        f"# Model card: run {run.id} ({_method_name(method)})",
        f"> **{RESEARCH_USE_NOTICE}**",
        _intended_use(results),
        _data_section(project, record, results),
        _method_section(run, record),
        _calibration_section(record),
        _results_section("Results on the test images", results),
    ]
    if later is not None:
        sections.append(_later_section(later))
    sections += [_warnings_section(results, later), _versions_section(run)]
    return "\n\n".join(sections) + "\n"


def _intended_use(results: RunResults) -> str:
    return (
        "## Intended use\n\n"
        f"Research into few-shot classification of medical images into {len(results.classes)} "
        f"classes ({', '.join(results.classes)}), {results.label_mode}-label. The outputs are "
        "model scores and a predicted class, not findings: the model is not a medical device, "
        "has not been validated clinically and must not inform diagnosis or treatment."
    )


def _data_section(project: Project, record: TrainingRecord | None, results: RunResults) -> str:
    """Counts per class and role, and per modality: nothing that names an image or a patient."""
    by_sha = {image.sha256: image for image in project.images()}
    rows: list[tuple[str, str, str]] = []  # (role, class, sha256)
    if record is not None:
        classes = record.data.classes
        for role, images in (
            (Role.TRAIN.value, record.data.train),
            (Role.TEST.value, record.data.test),
        ):
            for image in images:
                for name in _target_names(image.target, classes):
                    rows.append((role, name, image.sha256))
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
    held = record.training.validation_size if record is not None else 0
    held_text = (
        f" {held} of the training images were held out of the updates to choose the epoch."
        if held
        else ""
    )
    return (
        "## Data\n\nImages per class and role (content hashes are kept in the project; no file "
        "name, path or header value is reproduced here):\n\n"
        + "\n".join(table)
        + f"\n\nModalities: {listed or 'none'}.{held_text}"
    )


def _target_names(target: Target, classes: tuple[str, ...]) -> list[str]:
    if isinstance(target, tuple):
        return [c for c, flag in zip(classes, target, strict=True) if flag]
    return [classes[target]]


_METHOD_NAMES = {
    "ept": "Embedded Prompt Tuning (EPT)",
    "vpt": "Visual Prompt Tuning (VPT)",
    "lora": "Low-rank adaptation (LoRA)",
    "linear": "Linear probe",
    "bias": "Bias tuning (BitFit)",
    "full": "Full fine-tuning",
}


def _method_name(method: Mapping[str, Any]) -> str:
    name = str(method.get("method", "?"))
    return _METHOD_NAMES.get(name, name)


def _blocks_text(blocks: Any) -> str:
    if blocks is None:
        return "in every block"
    numbers = [int(b) + 1 for b in blocks]
    if numbers == [1]:
        return "in the first block only"
    return f"in blocks {', '.join(str(n) for n in numbers)} (counted from 1)"


def method_description(method: Mapping[str, Any]) -> str:
    """A tuning method's config in words: ``Embedded Prompt Tuning (EPT), 100 prompts in every
    block``."""
    name = str(method.get("method", "?"))
    title = _method_name(method)
    if name == "ept":
        text = f"{title}, {method.get('length', '?')} prompts {_blocks_text(method.get('blocks'))}"
        embedding = method.get("embedding", "pure_cat")
        if embedding != "pure_cat":
            text += f" (embedding: {embedding})"
        return text
    if name == "vpt":
        where = "in every block" if method.get("deep", True) else "at the input only"
        return f"{title}, {method.get('length', '?')} prompt tokens {where}"
    if name == "lora":
        blocks = _blocks_text(method.get("blocks"))
        return f"{title}, rank {method.get('rank', '?')}, alpha {method.get('alpha', '?')} {blocks}"
    if name == "linear":
        return f"{title}: only the classification head is trained"
    if name == "bias":
        return f"{title}: the backbone's bias terms and the classification head are trained"
    if name == "full":
        return f"{title}: every weight of the backbone and the head is trained"
    return title


def training_description(record: TrainingRecord) -> str:
    """The training as it ran: ``13 epochs, 26 optimiser steps (batch size 8); 40 epochs asked for,
    stopped early; the weights of epoch 12 were kept``."""
    recipe = record.recipe
    summary = record.training
    asked = int(recipe.get("epochs", 0) or 0)
    epochs = summary.epochs_run
    batch = int(recipe.get("batch_size", 1) or 1)
    fitted = len(record.data.train) - summary.validation_size
    steps = epochs * math.ceil(max(fitted, 0) / batch)
    text = f"{epochs} epochs, {steps} optimiser steps (batch size {batch})"
    notes = []
    minimum = int(recipe.get("min_steps", 0) or 0)
    if asked and epochs > asked and minimum:
        notes.append(f"{asked} epochs asked for, raised to reach {minimum} steps")
    elif asked and asked != epochs:
        notes.append(f"{asked} epochs asked for")
    if summary.stopped_early:
        notes.append("stopped early: the held-out images stopped improving")
    if summary.validation_size:
        notes.append(f"the weights of epoch {summary.best_epoch} were kept")
    return text + ("; " + "; ".join(notes) if notes else "")


_RECIPE_SHOWN = ("optimizer", "lr", "head_lr", "weight_decay", "schedule", "seed")


def _method_section(run: RunRecord, record: TrainingRecord | None) -> str:
    config = run.config
    lines = [
        "## Method",
        "",
        f"- Tuning method: {method_description(config.get('method', {}))}",
        f"- Backbone: {run.backbone}, weights sha256 `{run.backbone_sha256}`",
    ]
    if record is not None:
        lines.append(f"- Trainable parameters: {record.trainable_parameters:,}")
        lines.append(f"- Training as it ran: {training_description(record)}")
    detail = config.get("detail_size")
    if detail:
        lines.append(
            f"- Scores: the tuned model's averaged with those of the untrained class centres of "
            f"the training images seen at {detail} px (the fine-detail check); every score and "
            "metric here is of the two together"
        )
    recipe = config.get("recipe", {})
    settings = [f"{k} = {recipe[k]}" for k in _RECIPE_SHOWN if recipe.get(k) is not None]
    if settings:
        lines.append(f"- Settings: {', '.join(settings)}")
    prompt = run.artifacts.get("prompt_sha256") or config.get("prompt_sha256")
    if prompt:
        lines.append(f"- Prompt file sha256: `{prompt}`")
    if run.device:
        lines.append(f"- Device: {run.device}")
    return "\n".join(lines)


def _calibration_section(record: TrainingRecord | None) -> str:
    """Calibrated or not (on how many images, from where, the temperature, ECE before and after
    on those images), and the prediction sets: coverage, what they promise, per class or not."""
    lines = ["## Calibration and prediction sets", ""]
    calibration = record.calibration if record is not None else None
    if isinstance(calibration, Calibration):
        lines.append(
            f"- Calibrated on {calibration.images} {calibration.source} the model was not "
            f"trained on: temperature {calibration.temperature:.3f}; expected calibration error "
            f"on those images {calibration.ece_before:.3f} before, {calibration.ece_after:.3f} "
            "after."
        )
    else:
        reason = getattr(calibration, "reason", None) or "the run records no calibration"
        lines.append(
            f"- The scores are uncalibrated: {reason.removeprefix('scores are uncalibrated: ')}."
        )
    if record is not None and record.data.calibration:
        lines.append(
            f"- {len(record.data.calibration)} test images were used to calibrate and are not "
            "scored as test images."
        )
    conformal = record.conformal if record is not None else None
    if isinstance(conformal, ConformalSets):
        rule = (
            "class-conditional (Mondrian): one threshold per class"
            if conformal.mondrian
            else "one threshold for every class (not Mondrian)"
        )
        promise = "guaranteed" if conformal.guaranteed else "not guaranteed"
        lines += [
            f"- Prediction sets at {conformal.coverage * 100:g} % coverage, {rule}; "
            f"{promise} with n = {conformal.n} calibration images "
            f"(at least {conformal.needed} needed).",
            f"- {conformal.statement}",
        ]
    else:
        reason = getattr(conformal, "reason", None) or "the run records no prediction sets"
        lines.append(f"- No prediction sets: {reason.removeprefix('no prediction sets: ')}.")
    return "\n".join(lines)


def _fmt(interval: Interval) -> str:
    if not interval.defined:
        return "n/a"
    if math.isnan(interval.low):
        return f"{interval.value:.3f}"
    return f"{interval.value:.3f} ({interval.low:.3f}-{interval.high:.3f})"


def _results_section(title: str, results: RunResults) -> str:
    scores = results.scores
    if scores is None:
        return f"## {title}\n\nNo labelled image the model was not trained on: no metric."
    level = f"{100 * scores.confidence:.0f} %"
    lines = [
        f"## {title}",
        "",
        f"Scored {scope_summary(results)}; intervals are {level} percentile bootstrap "
        f"intervals ({scores.resamples} resamples, seed {scores.seed}).",
        "",
        f"- {plain_metric_name('accuracy')}: {_fmt(scores.accuracy)}",
        f"- {plain_metric_name('ece')} (10 bins): {scores.ece:.3f}",
        "",
        "| class | images | precision | recall | F1 | AUC |",
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


def _later_section(later: RunResults) -> str:
    title = f"Later predictions (run {later.run_id}, images not trained on)"
    intro = (
        f"Run {later.run_id} predicted {len(later.images)} images with this model; the "
        f"{later.trained_on} it was trained on are not scored here."
    )
    return _results_section(title, later).replace("\n\n", f"\n\n{intro}\n\n", 1)


def _warnings_section(results: RunResults, later: RunResults | None) -> str:
    items = [f"- {w}" for w in results.warnings]
    if later is not None:
        items += [f"- run {later.run_id}: {w}" for w in later.warnings]
    return "## Warnings\n\n" + "\n".join(items or ["- none"])


def _versions_section(run: RunRecord) -> str:
    versions = {"ept_studio (this card)": __version__, **run.versions}
    return "## Versions\n\n" + "\n".join(f"- {k}: {v}" for k, v in sorted(versions.items()))
