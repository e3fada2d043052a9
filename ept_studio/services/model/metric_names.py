"""Metric names a clinician reads, with the technical key kept for a tooltip.

Run records and the engine name metrics by short keys (``balanced_accuracy``, ``ece``,
``macro_auc``); those keys are exact but opaque to a reader who did not write the code. Every view
that shows a metric (Results and Train tabs, the model list, the model card) names it with
:func:`plain_metric_name` and explains it with :func:`metric_tooltip`. Qt-free, so any view and
any export can use the same words.
"""

from __future__ import annotations

import dataclasses

__all__ = ["MetricName", "metric_tooltip", "plain_metric_name"]


@dataclasses.dataclass(frozen=True)
class MetricName:
    """A metric's plain name and what it measures, in one sentence."""

    plain: str
    meaning: str


_NAMES: dict[str, MetricName] = {
    "accuracy": MetricName(
        "Accuracy",
        "the share of images whose predicted class is the labelled one "
        "(multi-label: the share of image-class decisions that are right)",
    ),
    "balanced_accuracy": MetricName(
        "Balanced accuracy (mean of per-class recall)",
        "the recall of each class, averaged with equal weight, so a rare class counts as much "
        "as a common one",
    ),
    "macro_auc": MetricName(
        "AUC (mean over classes)",
        "for each class, how often an image of that class scores higher than one without it "
        "(0.5: chance, 1: always), averaged over the classes",
    ),
    "auc": MetricName(
        "AUC",
        "how often an image of this class scores higher than one without it (0.5: chance)",
    ),
    "ece": MetricName(
        "Calibration error",
        "expected calibration error: how far the model scores are from the observed accuracy, "
        "averaged over 10 score bins (0: scores match accuracy)",
    ),
    "map": MetricName(
        "Average precision (mean over classes)",
        "mean average precision: the area under each class's precision-recall curve, averaged",
    ),
    "precision": MetricName(
        "Precision", "of the images predicted as this class, the share that carry it"
    ),
    "recall": MetricName(
        "Recall (sensitivity)", "of the images that carry this class, the share predicted as it"
    ),
    "f1": MetricName("F1", "the harmonic mean of precision and recall"),
    "loss": MetricName("Loss", "the cross-entropy the optimiser lowers; lower is better"),
    "images": MetricName("Images predicted", "how many images the run scored"),
    "failed": MetricName("Images not read", "how many images could not be decoded"),
}


def plain_metric_name(key: str) -> str:
    """The name a clinician reads for metric ``key``; an unknown key, tidied (``top_k`` -> ``Top k``)."""
    known = _NAMES.get(key)
    if known is not None:
        return known.plain
    words = key.replace("_", " ").strip()
    return words[:1].upper() + words[1:]


def metric_tooltip(key: str) -> str:
    """What metric ``key`` measures, then its technical key: ``... (key: ece)``."""
    known = _NAMES.get(key)
    meaning = known.meaning if known is not None else "a metric recorded by the run"
    return f"{meaning[:1].upper()}{meaning[1:]} (key: {key})"
