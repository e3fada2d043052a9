"""What a user chooses before pressing Train, as plain data, and the method / recipe it means.

The desktop app's training panel and the CLI's ``train`` options both end up here: a
:class:`TrainingOptions` becomes the method config dict and the recipe overrides that
:func:`ept_studio.services.project.training.train_on_project` takes. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ept_studio.common.errors import ConfigError
from ept_studio.core.hold_out import HOLD_OUT_MINIMUM


@dataclasses.dataclass(frozen=True)
class MethodChoice:
    """One entry of the method list: its key, what the user reads, and which settings apply."""

    key: str
    label: str
    description: str
    uses_length: bool = False
    uses_blocks: bool = False


METHOD_CHOICES: tuple[MethodChoice, ...] = (
    MethodChoice(
        "ept",
        "EPT (recommended)",
        "Embedded Prompt Tuning: in every prompted block, learned prompts join the attention "
        "as extra columns of the attention logits (concatenated along the key axis); they take "
        "a share of each token's attention and are dropped before the values are mixed. The "
        "backbone stays frozen.",
        uses_length=True,
        uses_blocks=True,
    ),
    MethodChoice(
        "ept-add",
        "EPT, Add variant",
        "EPT with prompts added to the attention logits (the paper's Add ablation).",
        uses_length=True,
        uses_blocks=True,
    ),
    MethodChoice(
        "ept-multi",
        "EPT, Multi variant",
        "EPT with the attention logits multiplied by prompts (the paper's Multi ablation).",
        uses_length=True,
        uses_blocks=True,
    ),
    MethodChoice(
        "ept-multi_cat",
        "EPT, Multi_Cat variant",
        "EPT with prompts scaled by each row's logit range, then concatenated to the attention "
        "logits (the paper's Multi_Cat ablation).",
        uses_length=True,
        uses_blocks=True,
    ),
    MethodChoice(
        "linear", "Head only (fastest)", "Linear probe: only the classification head learns."
    ),
    MethodChoice(
        "vpt",
        "VPT (prompt tokens)",
        "Visual Prompt Tuning: learnable tokens before the patch tokens; deep = every block.",
        uses_length=True,
        uses_blocks=True,
    ),
    MethodChoice(
        "lora",
        "LoRA (low-rank updates)",
        "LoRA: rank-8 low-rank updates of the attention q and v projections.",
    ),
    MethodChoice("bias", "Biases only (BitFit)", "BitFit: only the bias terms and the head learn."),
    MethodChoice(
        "full", "Whole model (slow)", "Full fine-tuning: every weight learns (a baseline)."
    ),
)


def method_choice(key: str) -> MethodChoice:
    """The :class:`MethodChoice` named ``key``; an unknown key is a :class:`ConfigError`."""
    for choice in METHOD_CHOICES:
        if choice.key == key:
            return choice
    known = ", ".join(choice.key for choice in METHOD_CHOICES)
    raise ConfigError(f"unknown tuning method {key!r}: choose one of {known}")


def parse_blocks(text: str) -> list[int] | None:
    """``all`` (None), ``shallow`` ([0]), ``0,1,5`` or ``0-5`` (inclusive): the prompted blocks."""
    text = text.strip().lower()
    if text in ("", "all", "deep"):
        return None
    if text in ("shallow", "first"):
        return [0]
    blocks: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                start, end = part.split("-", 1)
                blocks.extend(range(int(start), int(end) + 1))
            else:
                blocks.append(int(part))
    except ValueError as err:
        raise ConfigError(
            f"blocks must be all, shallow, a list like 0,1,2 or a range like 0-5, not {text!r}"
        ) from err
    if not blocks or min(blocks) < 0:
        raise ConfigError(f"blocks count from 0, got {text!r}")
    return sorted(set(blocks))


@dataclasses.dataclass(frozen=True)
class RecipeChoice:
    """One entry of the recipe list: its preset, a short name, and the recipe in ML terms."""

    key: str
    label: str
    summary: str


RECIPE_CHOICES: tuple[RecipeChoice, ...] = (
    RecipeChoice(
        "default",
        "Few-shot default",
        "AdamW 3e-4 (full fine-tuning 1e-5), prototype head, >= 50 steps, batch 4",
    ),
    RecipeChoice("paper", "Paper's recipe", "SGD 6e-4, 20 epochs, batch 4"),
)
"""The presets the Train tab offers. The app starts from "default", chosen by the accuracy sweep
(resources/docs/evidence.md). The summaries are written out so that building the form never
imports torch; a test holds each to the preset's :meth:`TrainRecipe.summary`."""


def recipe_choice(key: str) -> RecipeChoice:
    """The :class:`RecipeChoice` named ``key``; an unknown key is a :class:`ConfigError`."""
    for choice in RECIPE_CHOICES:
        if choice.key == key:
            return choice
    known = ", ".join(choice.key for choice in RECIPE_CHOICES)
    raise ConfigError(f"unknown recipe {key!r}: choose one of {known}")


BF16_SETTINGS = ("auto", "on", "off")
"""The recipe's ``bf16`` settings (:class:`ept_studio.core.training.recipe.Bf16Mode`'s values)."""

DEFAULT_SLICES_PER_SERIES = 8
"""Training slices taken from one series, evenly spaced over its slice order.

A support set is a handful of images a class; every slice of a 300-slice CT would make that one
series outweigh a class of a single image, and neighbouring slices are near copies that teach the
model little more than one of them. Eight evenly spaced slices still span the series from end to
end (in a 300-slice CT, one slice every ~43) and keep a series within the weight of a few images,
the scale of the few-shot recipe (batches of 4, 8 to 16 images a class)."""


def slices_per_series_error(slices: int) -> str | None:
    """Why ``slices`` cannot be a per-series slice limit, in plain words; None when it can."""
    if slices < 0:
        return (
            "the slices taken from each series must be a whole number of at least 1 "
            f"(0: every slice), not {slices}"
        )
    return None


MIN_COVERAGE = 0.5
"""The lowest coverage a user may ask for: below it a set misses the true class more often than
not."""


def coverage_error(coverage: float) -> str | None:
    """Why ``coverage`` cannot be a prediction-set coverage, in plain words; None when it can."""
    if not MIN_COVERAGE <= coverage < 1.0:
        return (
            f"the coverage is how often a prediction set should contain the true class: choose a "
            f"number from {MIN_COVERAGE:.2f} up to but not including 1 (0.90 means nine images in "
            f"ten), not {coverage:g}"
        )
    return None


DEFAULT_TRAINED_SHARE = 0.5
"""The app keeps half of what training changes on top of the prototype classifier it starts
from, when every class has :data:`SHARE_MINIMUM` training images (resources/docs/evidence.md,
"Keeping half of what training learned")."""

SHARE_MINIMUM = HOLD_OUT_MINIMUM
"""Training images (a series counts once) every class needs before the app keeps only a share of
the training: the class centre of one or two images is a weak anchor. In the accuracy sweep,
keeping half against keeping all was +1.6 pp on average at K = 5 and 10 (ahead in 1 of 7 cells,
below in none) and -2.2 pp at K = 1 (below in 2 of 4)."""


def share_for(share: float | None, smallest_class: int, minimum: int) -> float | None:
    """The share a run keeps: ``share``, or None (all of the training) when a class has fewer
    than ``minimum`` training images."""
    if share is None or smallest_class < minimum:
        return None
    return share


PROTOTYPE_START_RECIPES = frozenset({"default"})
"""The presets whose head starts as the nearest-centroid classifier (``head_init="prototype"``),
the start a trained share shrinks toward; a test holds this to the presets."""


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
    """The training panel's settings. ``None`` means "the recipe's default" for the numbers."""

    method: str = "ept"
    recipe: str = "default"
    length: int = 100
    blocks: str = "all"
    epochs: int | None = None
    learning_rate: float | None = None
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    hold_out: bool = True
    """Keep a fifth of each class's training images aside to pick the best epoch (>= 5 a class)."""
    patience: int | None = None
    """Stop after this many epochs without improvement on the held-out images (None: never)."""
    coverage: float = 0.90
    """How often a prediction set should contain the true class (0.90: nine images in ten)."""
    calibrate_on_test: bool = False
    """Calibrate on a seeded half of each class's test images; those are then not scored."""
    bf16: str = "auto"
    """bfloat16 autocast: ``auto`` (the recipe's: on where this machine runs it faster), ``on``
    or ``off``."""
    slices_per_series: int = DEFAULT_SLICES_PER_SERIES
    """At most this many training slices of one series, evenly spaced (0: every slice)."""
    trained_share: float | None = DEFAULT_TRAINED_SHARE
    """How much of what training changed the model keeps, 0-1 (None: all of it, the recipe's
    own); the rest is the nearest-centroid classifier training started from. Only recipes that
    start from it (:data:`PROTOTYPE_START_RECIPES`) take it."""

    detail: bool = True
    """Also look at fine detail: average the tuned model's scores with the untrained class
    centres of the training images seen at twice the size (448 px for the offline backbone;
    single-label projects)."""

    def __post_init__(self) -> None:
        method_choice(self.method)
        coverage_problem = coverage_error(self.coverage)
        if coverage_problem:
            raise ConfigError(coverage_problem)
        parse_blocks(self.blocks)
        if self.length < 1:
            raise ConfigError(f"the prompt length must be at least 1, got {self.length}")
        recipe_choice(self.recipe)
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError(f"device must be auto, cpu, cuda or mps, not {self.device!r}")
        if self.bf16 not in BF16_SETTINGS:
            raise ConfigError(f"bf16 must be auto, on or off, not {self.bf16!r}")
        slices_problem = slices_per_series_error(self.slices_per_series)
        if slices_problem:
            raise ConfigError(slices_problem)
        if self.trained_share is not None and not 0.0 <= self.trained_share <= 1.0:
            raise ConfigError(
                f"the share of training to keep must be between 0 and 1, got {self.trained_share}"
            )

    def method_config(self) -> dict[str, Any]:
        """The method config dict (``{"method": "ept", "length": 100, ...}``)."""
        blocks = parse_blocks(self.blocks)
        name, _, variant = self.method.partition("-")
        if name == "ept":
            return {
                "method": "ept",
                "length": self.length,
                "blocks": blocks,
                "embedding": variant or "pure_cat",
            }
        if name == "vpt":
            return {"method": "vpt", "length": self.length, "deep": blocks != [0]}
        if name == "lora":
            return {"method": "lora", "rank": 8, "alpha": 8.0}
        return {"method": name}

    def kept_share(self) -> float | None:
        """The share of training the run keeps, None when the recipe keeps all of it (the
        paper's recipe starts from a random head, so there is no classifier to keep)."""
        if self.recipe not in PROTOTYPE_START_RECIPES:
            return None
        return self.trained_share

    def recipe_overrides(self) -> dict[str, Any]:
        """Overrides of the recipe: only the settings the user changed, and the device.

        The learning rate is the method's: under full fine-tuning that is ``full_lr`` (the head
        keeps the preset's rate)."""
        rate_name = "full_lr" if self.method == "full" else "lr"
        chosen: dict[str, Any] = {
            rate_name: self.learning_rate,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "early_stopping_patience": self.patience,
            "trained_share": self.kept_share(),
        }
        overrides: dict[str, Any] = {k: v for k, v in chosen.items() if v is not None}
        overrides["device"] = self.device
        overrides["preset"] = self.recipe
        if self.bf16 != "auto":
            overrides["bf16"] = self.bf16
        return overrides


def device_choices() -> list[tuple[str, str]]:
    """(key, label) pairs for the device menu; "auto" names what it will pick. torch-free."""
    from ept_studio.core.gpu import nvidia_gpu_names

    gpus = nvidia_gpu_names()
    auto = f"Auto ({gpus[0]})" if gpus else "Auto (CPU: no NVIDIA GPU found)"
    choices = [("auto", auto), ("cpu", "CPU")]
    choices += [("cuda", f"GPU: {name}") for name in gpus[:1]]
    return choices
