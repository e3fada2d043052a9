"""Temperature scaling: one number ``T > 0`` that makes the model's scores mean what they say.

The model's logits are divided by ``T`` before the softmax (or, for multi-label models, before each
class's sigmoid). ``T`` is fitted on images the model was not trained on, by minimising the negative
log-likelihood of their labels over ``log T`` (a bounded one-dimensional search, ``T`` in
[:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`]) plus a normal prior on ``log T`` centred on 0
(:data:`LOG_TEMPERATURE_PRIOR_SD`): a maximum a posteriori fit. With the 10-30 held-out images a
few-shot project has, the plain likelihood follows the one or two confident mistakes among them
and can flatten the scores further than new images bear out; the prior keeps ``T`` nearer 1 until
the images show clearly that it is not, and weighs less as the images grow in number. Dividing by a positive number never changes which
class scores highest, nor which side of 0.5 a sigmoid lies, so calibration changes the scores and
not the decisions.

Torch-free (numpy and scipy): :func:`apply_temperature` is the one function both the torch runner and
the ONNX Runtime runner turn logits into calibrated probabilities with.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ept_studio.common.calibration import (
    expected_calibration_error,
    reliability_table,
    top_label,
)
from ept_studio.common.config import from_json_block, is_finite_number

MIN_TEMPERATURE = 0.05
MAX_TEMPERATURE = 20.0
MIN_CALIBRATION_IMAGES = 10
"""Fewer held-out images than this and no temperature is fitted: one number fitted on a handful of
images follows their noise, and the scores stay uncalibrated (and say so)."""
RELIABILITY_BINS = 10
LOG_TEMPERATURE_PRIOR_SD = 0.75
"""The prior's standard deviation on ``log T`` (in the likelihood's units: one image's NLL). Chosen
on the offline sweep's re-split calibration evidence among 0.5, 0.75 and 1 (the plain likelihood
raised ECE in 4 of 14 cells there); see resources/docs/evidence.md."""
_LABEL_MODES = ("single", "multi")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Calibration:
    """A fitted temperature and what it was fitted on.

    ``images``: how many calibration images; ``source``: where they came from, a short plain phrase
    ("held-out support images"); ``ece_before`` / ``ece_after``: the expected calibration error on
    those images (10 equal-width confidence bins) before and after scaling.
    """

    temperature: float
    images: int
    source: str
    ece_before: float
    ece_after: float

    def __post_init__(self) -> None:
        if not is_finite_number(self.temperature) or not (
            MIN_TEMPERATURE <= float(self.temperature) <= MAX_TEMPERATURE
        ):
            raise ValueError(
                f"the temperature must be a number from {MIN_TEMPERATURE} to {MAX_TEMPERATURE}, "
                f"got {self.temperature!r:.40}"
            )
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 1:
            raise ValueError(f"'images' must be a whole number >= 1, got {self.images!r:.40}")
        if not isinstance(self.source, str) or not self.source or len(self.source) > 200:
            raise ValueError("'source' must be a short non-empty text")
        for name in ("ece_before", "ece_after"):
            value = getattr(self, name)
            if not is_finite_number(value) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name!r} must be a number from 0 to 1, got {value!r:.40}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "temperature", float(self.temperature))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> Calibration:
        """Rebuild from :meth:`to_dict` output; ValueError naming what is wrong."""
        return from_json_block(cls, data, "calibration")


@dataclasses.dataclass(frozen=True)
class Uncalibrated:
    """No temperature was fitted; ``reason`` is a sentence the app can show as it is."""

    reason: str
    images: int


def _check_mode(label_mode: str) -> str:
    mode = str(label_mode.value if hasattr(label_mode, "value") else label_mode)
    if mode not in _LABEL_MODES:
        raise ValueError(f"label_mode must be 'single' or 'multi', got {label_mode!r:.40}")
    return mode


def apply_temperature(
    logits: npt.ArrayLike, temperature: float, label_mode: str = "single"
) -> np.ndarray:
    """Calibrated probabilities ``[n, C]`` float32: ``softmax(logits / T)``, or per-class
    ``sigmoid(logits / T)`` for multi-label models (computed in float64)."""
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    if _check_mode(label_mode) == "multi":
        sigmoid: np.ndarray = (0.5 * (1.0 + np.tanh(0.5 * scaled))).astype(np.float32)
        return sigmoid
    exponentials = np.exp(scaled - scaled.max(axis=-1, keepdims=True))
    softmax: np.ndarray = (exponentials / exponentials.sum(axis=-1, keepdims=True)).astype(
        np.float32
    )
    return softmax


def negative_log_likelihood(
    logits: np.ndarray, targets: np.ndarray, temperature: float, label_mode: str = "single"
) -> float:
    """Mean NLL of the targets under the scaled scores (multi-label: mean binary cross-entropy
    over every (image, class) pair)."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    if _check_mode(label_mode) == "multi":
        truth = np.asarray(targets, dtype=np.float64)
        # -log sigmoid(z) = logaddexp(0, -z); -log(1 - sigmoid(z)) = logaddexp(0, z)
        losses = truth * np.logaddexp(0.0, -scaled) + (1.0 - truth) * np.logaddexp(0.0, scaled)
        return float(losses.mean())
    top = scaled.max(axis=1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(scaled - top).sum(axis=1))
    picked = scaled[np.arange(len(scaled)), np.asarray(targets, dtype=np.int64)]
    return float((log_norm - picked).mean())


def fit_temperature(
    logits: npt.ArrayLike,
    targets: npt.ArrayLike,
    label_mode: str = "single",
    prior_sd: float | None = LOG_TEMPERATURE_PRIOR_SD,
) -> float:
    """The ``T`` in [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`] minimising the NLL plus
    the prior's ``(log T)^2 / (2 prior_sd^2)`` (spread over the NLL's terms: images, or
    multi-label (image, class) pairs); ``prior_sd=None``: the plain maximum-likelihood ``T``.

    ``targets``: class indices ``[n]`` (single-label) or multi-hot ``[n, C]`` (multi-label). The
    search runs over ``log T`` (the NLL is smooth and unimodal there for any sensible data).
    """
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    mode = _check_mode(label_mode)
    terms = z.size if mode == "multi" else z.shape[0]
    weight = 0.0 if prior_sd is None else 1.0 / (2.0 * prior_sd * prior_sd * max(terms, 1))
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(z, y, math.exp(log_t), mode) + weight * log_t**2,
        bounds=(math.log(MIN_TEMPERATURE), math.log(MAX_TEMPERATURE)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    temperature = math.exp(float(result.x))
    return min(max(temperature, MIN_TEMPERATURE), MAX_TEMPERATURE)


def calibration_error(
    probabilities: npt.ArrayLike, targets: npt.ArrayLike, bins: int = RELIABILITY_BINS
) -> float:
    """The expected calibration error of top-label confidence (see :mod:`ept_studio.common.calibration`)."""
    confidence, hits = top_label(probabilities, targets)
    return expected_calibration_error(reliability_table(confidence, hits, bins))


def uncalibrated_reason(targets: npt.ArrayLike, label_mode: str = "single") -> str | None:
    """Why these calibration images are too few to fit a temperature on, or None when they suffice.

    At least :data:`MIN_CALIBRATION_IMAGES` images, and at least two classes among them
    (multi-label: at least one present and one absent label).
    """
    y = np.asarray(targets)
    count = int(y.shape[0]) if y.ndim else 0
    if count < MIN_CALIBRATION_IMAGES:
        what = (
            "no held-out images"
            if count == 0
            else f"only {count} held-out image" + ("s" if count != 1 else "")
        )
        return f"scores are uncalibrated: {what}; at least {MIN_CALIBRATION_IMAGES} are needed"
    if _check_mode(label_mode) == "multi":
        if y.min() == y.max():
            return (
                f"scores are uncalibrated: the {count} held-out images have every label "
                f"{'present' if y.max() else 'absent'}"
            )
    elif len(np.unique(y)) < 2:
        return f"scores are uncalibrated: the {count} held-out images are all of one class"
    return None


_AT_BOUND = 1.01
"""A fitted temperature within 1 % of a bound is the bound: the fit found no optimum inside."""


def _bound_reason(temperature: float, count: int) -> str | None:
    """Why a temperature that ran to a bound is no calibration, or None for one inside them.

    When every calibration image is already scored right, the likelihood keeps rising as the
    scores sharpen, so the fit runs to the smallest temperature and would make the model far more
    confident than these few images can justify; at the largest, the images are scored no better
    than chance and the fit would flatten every score.
    """
    if temperature <= MIN_TEMPERATURE * _AT_BOUND:
        return (
            f"scores are uncalibrated: the model scored all {count} held-out images right, so "
            "they cannot show how confident it should be"
        )
    if temperature >= MAX_TEMPERATURE / _AT_BOUND:
        return (
            f"scores are uncalibrated: the {count} held-out images are scored no better than "
            "chance, so no temperature fits them"
        )
    return None


def fit_calibration(
    logits: npt.ArrayLike,
    targets: npt.ArrayLike,
    *,
    source: str,
    label_mode: str = "single",
) -> Calibration | Uncalibrated:
    """Fit a temperature on held-out ``logits`` and their ``targets``, or say why not.

    ``source`` says where the images came from, in a short plain phrase.
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(targets)
    mode = _check_mode(label_mode)
    if z.ndim != 2 or y.shape[0] != z.shape[0]:
        raise ValueError(f"logits [n, C] and n targets expected, got {z.shape} and {y.shape}")
    reason = uncalibrated_reason(y, mode)
    if reason is not None:
        return Uncalibrated(reason, int(y.shape[0]))
    bound = _bound_reason(fit_temperature(z, y, mode, prior_sd=None), int(z.shape[0]))
    if bound is not None:
        return Uncalibrated(bound, int(z.shape[0]))
    temperature = fit_temperature(z, y, mode)
    return Calibration(
        temperature=temperature,
        images=int(z.shape[0]),
        source=source,
        ece_before=calibration_error(apply_temperature(z, 1.0, mode), y),
        ece_after=calibration_error(apply_temperature(z, temperature, mode), y),
    )
