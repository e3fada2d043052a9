"""The training recipe: every knob of a run in one validated, frozen dataclass.

The defaults are the paper's recipe (Zu et al. 2024, section 4.2): SGD at 6e-4 with momentum 0.9 and
weight decay 1e-4, cosine annealing to 0, no warmup, 20 epochs, batch size 4, RandomResizedCrop with
scale (0.08, 1) and horizontal flips. Two settings that are not the paper's are on in every preset
because they only act when a run goes wrong: ``divergence_retries`` (a diverged run restarts from its
initial tensors at a tenth of the learning rate) and the one-class-collapse check.

``RECIPES`` names the presets: ``"paper"``, and ``"default"``, the few-shot recipe the app starts
from (AdamW, a step floor for tiny support sets, warmup, clipping, milder crops, a
prototype-initialised head), chosen with the accuracy sweep (resources/docs/evidence.md).
"""

from __future__ import annotations

import dataclasses
import math
import re
import warnings
from collections.abc import Mapping
from enum import Enum
from typing import Any

from ept_studio.common.config import to_json_dict
from ept_studio.common.errors import ConfigError
from ept_studio.core.run_length import DEFAULT_LENGTH, PAPER_LENGTH, RunLength


class OptimizerName(str, Enum):
    """The optimisers a recipe can ask for."""

    SGD = "sgd"
    ADAMW = "adamw"


class LrSchedule(str, Enum):
    """How the learning rate moves after warmup: cosine to 0 over the run, or flat."""

    COSINE = "cosine"
    CONSTANT = "constant"


class HeadInit(str, Enum):
    """How the linear head starts: N(0, 0.01) as in the paper, or the support set's class prototypes.

    ``prototype`` makes step 0 a nearest-centroid classifier on the features the head sees (see
    :mod:`ept_studio.core.training.prototype`).
    """

    NORMAL = "normal"
    PROTOTYPE = "prototype"


class TieBreak(str, Enum):
    """Which of several held-out epochs with the best metric the run keeps.

    ``earliest``: the first of them. ``loss``: the one with the lowest held-out log-loss (a tie
    on that too keeps the earlier). With a handful of held-out images the metric takes few values
    (one image per class at K = 5: 0, 1/3, 2/3 or 1 for three classes), so ties are the rule and
    ``earliest`` mostly keeps epoch 1.
    """

    EARLIEST = "earliest"
    LOSS = "loss"


class Bf16Mode(str, Enum):
    """bfloat16 autocast: ``auto`` uses it on CUDA GPUs that support it and on CPUs with
    AVX512-BF16 or AMX where a one-time check ran it faster (:mod:`ept_studio.core.bf16`);
    ``on``/``off`` force it.
    """

    AUTO = "auto"
    ON = "on"
    OFF = "off"


_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclasses.dataclass(frozen=True)
class TrainRecipe:
    """How to train a tuned model. ``head_lr=None`` trains the head at ``lr`` too; ``full_lr``
    is the rate of the backbone's own weights under full fine-tuning (``None``: ``lr``).

    ``warmup_steps`` and the schedule count optimiser steps; ``early_stopping_patience`` counts
    epochs without a better validation metric and only matters when a validation set is given, as
    does ``tie_break`` (which of the epochs with the best validation metric is kept).
    ``min_steps`` raises the number of epochs until the run has at least that many optimiser steps
    (a 1-shot support set of 3 images is one step per epoch). The warmup is the larger of
    ``warmup_steps`` and ``warmup_fraction`` of the run's steps (rounded up).
    ``head_init="prototype"`` starts the head from the support set's class prototypes, with
    logits about ``prototype_scale`` times a cosine similarity. ``trained_share`` below 1 keeps
    only that share of what training changed: every trainable tensor ends at
    ``start + trained_share * (trained - start)``, so 0 is the prototype classifier itself and 1
    the trained model (it needs the prototype head, the start it shrinks toward). A run whose loss diverges (or whose
    model collapses to one class while its loss rose) restarts from its initial tensors at a tenth
    of the learning rates, at most ``divergence_retries`` times.
    """

    optimizer: OptimizerName = OptimizerName.SGD
    lr: float = 6e-4
    head_lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: LrSchedule = LrSchedule.COSINE
    warmup_steps: int = 0
    epochs: int = PAPER_LENGTH.epochs
    batch_size: int = PAPER_LENGTH.batch_size
    crop_scale: tuple[float, float] = (0.08, 1.0)
    hflip: bool = True
    grad_clip: float | None = None
    early_stopping_patience: int | None = None
    seed: int = 0
    device: str = "auto"
    bf16: Bf16Mode = Bf16Mode.AUTO
    min_steps: int = 0
    warmup_fraction: float = 0.0
    head_init: HeadInit = HeadInit.NORMAL
    prototype_scale: float = 10.0
    divergence_retries: int = 2
    full_lr: float | None = None
    tie_break: TieBreak = TieBreak.EARLIEST
    trained_share: float = 1.0

    def __post_init__(self) -> None:
        self._coerce_enums()
        object.__setattr__(self, "crop_scale", _crop_scale(self.crop_scale))
        _check_rate("learning rate (lr)", self.lr)
        if self.head_lr is not None:
            _check_rate("head learning rate (head_lr)", self.head_lr)
        if self.full_lr is not None:
            _check_rate("full fine-tuning rate (full_lr)", self.full_lr)
        if not (isinstance(self.momentum, (int, float)) and 0.0 <= self.momentum < 1.0):
            raise ConfigError(f"momentum must be in [0, 1), got {self.momentum!r}")
        _check_rate("weight decay", self.weight_decay)
        _check_count("warmup_steps", self.warmup_steps, minimum=0)
        _check_count("epochs", self.epochs, minimum=1)
        _check_count("batch_size", self.batch_size, minimum=1)
        if not isinstance(self.hflip, bool):
            raise ConfigError(f"hflip must be true or false, got {self.hflip!r}")
        if self.grad_clip is not None and not _finite_number(self.grad_clip, above=0.0):
            raise ConfigError(f"grad_clip must be a number > 0 or None, got {self.grad_clip!r}")
        if self.early_stopping_patience is not None:
            _check_count("early_stopping_patience", self.early_stopping_patience, minimum=1)
        _check_count("seed", self.seed, minimum=0)
        _check_count("min_steps", self.min_steps, minimum=0)
        if not (_finite_number(self.warmup_fraction, at_least=0.0) and self.warmup_fraction < 1):
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction!r}")
        if not _finite_number(self.prototype_scale, above=0.0):
            raise ConfigError(f"prototype_scale must be a number > 0, got {self.prototype_scale!r}")
        _check_count("divergence_retries", self.divergence_retries, minimum=0)
        self._check_trained_share()
        if not isinstance(self.device, str) or not _DEVICE_PATTERN.match(self.device):
            raise ConfigError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {self.device!r}"
            )

    def _check_trained_share(self) -> None:
        share = self.trained_share
        if not (_finite_number(share, at_least=0.0) and share <= 1.0):
            raise ConfigError(f"trained_share must be a number in [0, 1], got {share!r}")
        if share < 1.0 and self.head_init is not HeadInit.PROTOTYPE:
            raise ConfigError(
                "trained_share below 1 shrinks the tuned model toward the prototype classifier it "
                "started from, so it needs head_init='prototype'"
            )

    def _coerce_enums(self) -> None:
        for name, enum_type in (
            ("optimizer", OptimizerName),
            ("schedule", LrSchedule),
            ("bf16", Bf16Mode),
            ("head_init", HeadInit),
            ("tie_break", TieBreak),
        ):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, enum_type(value))
            except ValueError as err:
                choices = ", ".join(repr(m.value) for m in enum_type)
                raise ConfigError(f"{name} must be one of {choices}, got {value!r}") from err

    @property
    def head_learning_rate(self) -> float:
        """The head's learning rate: ``head_lr`` if set, else ``lr``."""
        return self.lr if self.head_lr is None else self.head_lr

    def method_learning_rate(self, method: str) -> float:
        """The rate of the method's tensors: ``full_lr`` for full fine-tuning (when set), else ``lr``.

        A prompt, a LoRA factor or a bias offset starts at or near zero and can move at the rate of
        a new tensor; full fine-tuning moves all 22 M pretrained weights, which 15 images and
        AdamW at 3e-4 pull far from what the backbone knew (the accuracy sweep).
        """
        if method == "full" and self.full_lr is not None:
            return self.full_lr
        return self.lr

    def summary(self) -> str:
        """What a user reads about the recipe: ``AdamW 3e-4 (full fine-tuning 1e-5), prototype
        head, >= 50 steps, batch 4``. The Train tab's recipe labels are checked against it."""
        rates = _short_rate(self.lr)
        if self.head_lr is not None and self.head_lr != self.lr:
            rates += f", head {_short_rate(self.head_lr)}"
        if self.full_lr is not None and self.full_lr != self.lr:
            rates += f" (full fine-tuning {_short_rate(self.full_lr)})"
        optimizer = "AdamW" if self.optimizer is OptimizerName.ADAMW else "SGD"
        parts = [f"{optimizer} {rates}"]
        if self.head_init is HeadInit.PROTOTYPE:
            parts.append("prototype head")
        if self.trained_share < 1.0:
            parts.append(f"keeps {self.trained_share:.0%} of the trained change")
        parts.append(f">= {self.min_steps} steps" if self.min_steps else f"{self.epochs} epochs")
        parts.append(f"batch {self.batch_size}")
        return ", ".join(parts)

    @property
    def run_length(self) -> RunLength:
        """Epochs, batch size and step floor: the arithmetic the Train tab shares without torch."""
        return RunLength(self.epochs, self.batch_size, self.min_steps)

    def steps_per_epoch(self, train_size: int) -> int:
        """Optimiser steps per epoch: the last batch may be smaller, it is never dropped."""
        return self.run_length.steps_per_epoch(train_size)

    def epochs_for(self, train_size: int) -> int:
        """Epochs of a run over ``train_size`` samples: ``epochs``, raised to reach ``min_steps``."""
        return self.run_length.epochs_for(train_size)

    def total_steps(self, train_size: int) -> int:
        """Optimiser steps of a full run over ``train_size`` samples."""
        return self.run_length.total_steps(train_size)

    def warmup_for(self, total_steps: int) -> int:
        """Warmup steps of a run of ``total_steps``: ``warmup_steps`` or the fraction, the larger."""
        return max(self.warmup_steps, math.ceil(self.warmup_fraction * total_steps))

    def replace(self, **changes: Any) -> TrainRecipe:
        """A copy with some settings changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description (enums as their values, tuples as lists)."""
        return to_json_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainRecipe:
        """Rebuild from :meth:`to_dict`; unknown keys (from newer versions) only warn."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"ignoring unknown recipe settings {unknown}", UserWarning, stacklevel=2)
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError as err:
            raise ConfigError(f"bad training recipe {dict(data)!r}: {err}") from err


def _finite_number(
    value: object, above: float | None = None, at_least: float | None = None
) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    if above is not None and not value > above:
        return False
    return at_least is None or value >= at_least


def _check_rate(name: str, value: object) -> None:
    if not _finite_number(value, at_least=0.0):
        raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_count(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be a whole number >= {minimum}, got {value!r}")


def _short_rate(rate: float) -> str:
    """``3e-4`` for 0.0003, ``1e-5``, ``0.02``: a learning rate as people write it."""
    if rate == 0 or rate >= 1e-2:
        return f"{rate:g}"
    mantissa, _, exponent = f"{rate:.2e}".partition("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _crop_scale(value: object) -> tuple[float, float]:
    message = f"crop_scale must be two numbers 0 < low <= high <= 1, got {value!r}"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(message)
    low, high = value
    if not (_finite_number(low, above=0.0) and _finite_number(high) and low <= high <= 1.0):
        raise ConfigError(message)
    return (float(low), float(high))


PAPER_RECIPE = TrainRecipe()
"""Zu et al. 2024: SGD 6e-4, momentum 0.9, wd 1e-4, cosine to 0, 20 epochs, batch 4."""

DEFAULT_CANDIDATE_RECIPE = TrainRecipe(
    optimizer=OptimizerName.ADAMW,
    lr=3e-4,
    head_lr=3e-4,
    weight_decay=1e-4,
    warmup_fraction=0.1,
    epochs=DEFAULT_LENGTH.epochs,
    batch_size=DEFAULT_LENGTH.batch_size,
    min_steps=DEFAULT_LENGTH.min_steps,
    crop_scale=(0.5, 1.0),
    grad_clip=1.0,
    head_init=HeadInit.PROTOTYPE,
    full_lr=1e-5,
)
"""The few-shot default: AdamW at 3e-4 (method tensors and head; 1e-5 for the backbone's weights
under full fine-tuning), >= 50 steps, 10 % warmup, clip 1.0, crops of at least half the image, a
prototype-initialised head.

Full fine-tuning at 3e-4 moved all 22 M pretrained weights too far for 15 images: 45.0 % on
textiles at K = 5, 16 pp below the prototype, some draws at chance; at 3e-5, 54.7 % (one draw of
five at chance); at 1e-5, 65.3 %, +4.0 pp over the prototype (5 draws each).

The head's rate was 3e-3 until the issue-8 sweep: AdamW moves every weight by about the rate a step
whatever the gradient's size, and a prototype head's weights are only ~0.02 (s u_c / r), so 50
steps at 3e-3 rewrote the nearest-centroid rule it started from; on dicom-modality at K = 5 that
took EPT from 71 % (the prototype, step 0) to 47 %. At 3e-4: 67 % there, and textiles unchanged
(65.3 % -> 64.7 %, 5 draws each; resources/evidence/sweep/)."""

RECIPES: dict[str, TrainRecipe] = {"paper": PAPER_RECIPE, "default": DEFAULT_CANDIDATE_RECIPE}
"""Named presets a user can pick by name."""


def recipe_from_settings(settings: Mapping[str, Any]) -> TrainRecipe:
    """A preset (``settings["preset"]``, else ``"paper"``) with the other settings applied over it."""
    changes = dict(settings)
    name = changes.pop("preset", "paper")
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe preset {name!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[name].replace(**changes)
