"""The K-shot accuracy protocol: support draws, one training run per method, evaluation on a query set.

The paper's protocol (Zu et al. 2024, section 4.2): for each K, draw a K-shot support set per class,
R times (``draws``); train every method on each draw S times (``seeds``) with the same recipe and
budget; evaluate on a query set disjoint from the support. Within one (draw, seed) every method
sees the same support images, the same augmentation stream and the same number of optimiser
steps; only the method differs.

The method name :data:`PROTOTYPE_BASELINE` (``"prototype"``) is the nearest-centroid classifier on
the frozen backbone's features of the support set, with no training: the floor every tuned method
should clear (:func:`method_configs` builds the configs for a list of names).

Disjointness is by group, not only by image: a sample whose group (source file, series, slab)
also gives a support image never enters the query. A class with fewer than K images, or with none
left for the query, is dropped for that K with a note. Explicit splits (MedFMC's lists) bypass
the random draws.

This module knows nothing about files: the caller hands a :class:`FewShotPool` of labels and
groups, and a function returning image ``i`` as a uint8 tensor ``[3, H, W]``. Aggregation (mean,
sd, bootstrap confidence interval) lives in :mod:`ept_studio.evidence.protocol_stats`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch

from ept_studio.common.errors import ConfigError, DatasetError
from ept_studio.core.backbones import BackboneSpec, LoadedBackbone
from ept_studio.core.detail import combine_logits, fit_detail_view
from ept_studio.core.device import describe_device, resolve_device
from ept_studio.core.hold_out import held_out_indices
from ept_studio.core.methods import LinearConfig, MethodConfig, default_config
from ept_studio.core.metrics import classification_metrics, expected_calibration_error
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training import (
    CancelCheck,
    RunFailed,
    RunFinished,
    RunStarted,
    TrainRecipe,
    init_prototype_head,
    predict_probabilities,
    seed_everything,
    target_tensor,
    train,
)
from ept_studio.evidence.protocol_calibration import (
    DEFAULT_RESPLITS,
    CalibrationProtocol,
    run_calibration,
)

PoolTarget = int | tuple[int, ...]
ImageSource = Callable[[int], torch.Tensor]
"""Image ``i`` of the pool as a uint8 RGB tensor ``[3, H, W]``."""

PROTOTYPE_BASELINE = "prototype"
"""The no-training nearest-centroid baseline, run like a method (a head on the frozen backbone)."""

PRIMARY_METRIC: dict[LabelMode, str] = {LabelMode.SINGLE: "accuracy", LabelMode.MULTI: "map"}
"""What the paper reports per label mode: accuracy, or mAP for multi-label tasks."""


@dataclasses.dataclass(frozen=True)
class FewShotPool:
    """The labelled images a protocol draws from: targets, class names, label mode and groups."""

    targets: tuple[PoolTarget, ...]
    class_names: tuple[str, ...]
    label_mode: LabelMode
    groups: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "label_mode", LabelMode(self.label_mode))
        if len(self.groups) != len(self.targets):
            raise ConfigError(f"{len(self.targets)} targets but {len(self.groups)} groups")
        if len(self.class_names) < 2:
            raise ConfigError("a few-shot task needs at least two classes")

    def members(self, label: int) -> list[int]:
        """Indices of the samples of class ``label`` (single-label pools)."""
        return [i for i, target in enumerate(self.targets) if target == label]


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """How many shots, draws and seeds; query size; bootstrap settings. Defaults: the paper's.

    ``reliability_bins`` matches the 15 equal-width bins of the engine's ECE, so a diagram and its
    ECE describe the same binning. ``hold_out``: model selection on a held-out fifth of the support.
    """

    shots: tuple[int, ...] = (1, 5, 10)
    draws: int = 5
    seeds: int = 4
    queries_per_class: int | None = None
    resamples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    reliability_bins: int = 15
    hold_out: bool = False
    """Train on four fifths of each class's support and keep the epoch that does best on the
    rest, as the app does (:mod:`ept_studio.core.hold_out`); the prototype keeps the whole set."""
    calibration_fraction: float = 0.5
    """The share of each class's query images (rounded down) that fits the temperature and the
    prediction sets; the rest measures them (:mod:`ept_studio.evidence.protocol_calibration`)."""
    set_coverage: float = 0.9
    """The prediction sets' target coverage."""
    calibration_resplits: int = DEFAULT_RESPLITS
    """How many further seeded calibration / evaluation splits of each run's query are measured
    (no training again): their means test the coverage's bounds far more sharply than one split."""

    def calibration(self) -> CalibrationProtocol:
        """The calibration split and sets these settings ask for."""
        return CalibrationProtocol(
            self.calibration_fraction,
            self.set_coverage,
            self.reliability_bins,
            self.seed,
            self.calibration_resplits,
        )

    def __post_init__(self) -> None:
        object.__setattr__(self, "shots", tuple(int(k) for k in self.shots))
        if not self.shots or any(k < 1 for k in self.shots):
            raise ConfigError(f"shots must be whole numbers >= 1, got {self.shots}")
        for name in ("draws", "seeds", "reliability_bins"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.queries_per_class is not None and self.queries_per_class < 1:
            raise ConfigError(f"queries per class must be >= 1, got {self.queries_per_class}")
        if self.resamples < 1000:
            raise ConfigError(f"use at least 1000 bootstrap resamples, got {self.resamples}")
        if not 0.5 < self.confidence < 1.0:
            raise ConfigError(f"confidence must be in (0.5, 1), got {self.confidence}")
        if not 0.0 < self.calibration_fraction < 1.0:
            raise ConfigError(
                f"the calibration fraction must be in (0, 1), got {self.calibration_fraction}"
            )
        if not 0.0 < self.set_coverage < 1.0:
            raise ConfigError(f"the set coverage must be in (0, 1), got {self.set_coverage}")


@dataclasses.dataclass(frozen=True)
class SupportDraw:
    """One support set and its query set; ``classes`` are the pool's class indices in head order."""

    shots: int
    draw: int
    support: tuple[int, ...]
    query: tuple[int, ...]
    classes: tuple[int, ...]
    notes: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Episode:
    """One training run: a method on a draw with a seed (the same seed for every method)."""

    method: str
    config: MethodConfig
    draw: SupportDraw
    seed_index: int
    seed: int


@dataclasses.dataclass(frozen=True, eq=False)
class EpisodeResult:
    """What one run measured on its query set; ``failure`` is set when training diverged."""

    method: str
    shots: int
    draw: int
    seed: int
    classes: tuple[int, ...]
    support_size: int
    query_size: int
    metrics: dict[str, float]
    probabilities: np.ndarray = dataclasses.field(repr=False)
    targets: np.ndarray = dataclasses.field(repr=False)
    train_seconds: float
    trainable_parameters: int
    device: str
    failure: str | None = None
    held_out_size: int = 0
    best_epoch: int | None = None
    logits: np.ndarray | None = dataclasses.field(default=None, repr=False)
    calibration: dict[str, object] | None = None
    """Temperature, ECE before / after and 90 % sets on the query's two parts
    (:mod:`ept_studio.evidence.protocol_calibration`); None when not asked for."""


def draw_support(pool: FewShotPool, shots: int, draw: int, config: ProtocolConfig) -> SupportDraw:
    """A seeded K-shot draw per class and its group-disjoint query set (single-label pools)."""
    if pool.label_mode is not LabelMode.SINGLE:
        raise ConfigError("random K-shot draws need single-label classes; give explicit splits")
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + shots * 1009 + draw)
    picked: dict[int, list[int]] = {}
    notes: list[str] = []
    for label, name in enumerate(pool.class_names):
        members = pool.members(label)
        if len(members) < shots + 1:
            notes.append(f"{name}: {len(members)} images, too few for {shots} support + 1 query")
            continue
        order = torch.randperm(len(members), generator=generator).tolist()
        picked[label] = [members[i] for i in order]
    used_groups = {pool.groups[i] for order in picked.values() for i in order[:shots]}
    support: list[int] = []
    query: list[int] = []
    classes: list[int] = []
    for label, order in picked.items():
        rest = [i for i in order[shots:] if pool.groups[i] not in used_groups]
        if not rest:
            name = pool.class_names[label]
            notes.append(f"{name}: no query image left outside the support's groups at K={shots}")
            continue
        classes.append(label)
        support.extend(order[:shots])
        query.extend(rest[: config.queries_per_class])
    return SupportDraw(shots, draw, tuple(support), tuple(query), tuple(classes), tuple(notes))


def plan_draws(pool: FewShotPool, config: ProtocolConfig) -> list[SupportDraw]:
    """Every K x draw of the protocol (a draw left with fewer than two classes is kept, to report)."""
    return [draw_support(pool, k, r, config) for k in config.shots for r in range(config.draws)]


def explicit_draw(
    pool: FewShotPool, shots: int, draw: int, support: Sequence[int], query: Sequence[int]
) -> SupportDraw:
    """A given split (MedFMC's lists): every class is kept, in the pool's order."""
    overlap = set(support) & set(query)
    notes = (f"{len(overlap)} query images are also support images",) if overlap else ()
    classes = tuple(range(len(pool.class_names)))
    return SupportDraw(shots, draw, tuple(support), tuple(query), classes, notes)


def plan_episodes(
    draws: Sequence[SupportDraw], methods: Mapping[str, MethodConfig], config: ProtocolConfig
) -> list[Episode]:
    """Draws x seeds x methods, methods innermost (so partial runs compare like with like)."""
    episodes: list[Episode] = []
    for draw in draws:
        if len(draw.classes) < 2:
            continue
        for seed_index in range(config.seeds):
            seed = config.seed + 7919 * draw.draw + 104729 * seed_index + draw.shots
            for name, method in methods.items():
                episodes.append(Episode(name, method, draw, seed_index, seed))
    return episodes


def method_configs(names: Sequence[str]) -> dict[str, MethodConfig]:
    """Each name's default config; :data:`PROTOTYPE_BASELINE` is a head on the frozen backbone."""
    return {
        name: LinearConfig() if name == PROTOTYPE_BASELINE else default_config(name)
        for name in names
    }


def run_episode(
    episode: Episode,
    pool: FewShotPool,
    images: ImageSource,
    backbone: LoadedBackbone,
    recipe: TrainRecipe,
    cancel: CancelCheck | None = None,
    hold_out: bool = False,
    calibration: CalibrationProtocol | None = None,
    detail: LoadedBackbone | None = None,
) -> EpisodeResult:
    """Train a fresh copy of ``backbone`` with the episode's method, evaluate on its query set.

    With ``hold_out`` a trained method keeps a seeded fifth of each class's support aside (when
    every class has at least 5) and ends on the epoch that scored best on it. With
    ``calibration`` the query's logits are also split into a calibration and an evaluation part,
    and the result carries the temperature, ECE and prediction-set numbers; the metrics stay
    those of the whole query set. With ``detail`` (the backbone built for a larger input) a
    trained method's query probabilities are averaged with those of the untrained prototype on
    ``detail``, fitted on the whole support (:mod:`ept_studio.core.detail`; its seconds count as
    training); the prototype baseline itself stays as it is."""
    draw = episode.draw
    remap = {label: head for head, label in enumerate(draw.classes)}
    support = [(images(i), _target(pool, i, remap)) for i in draw.support]
    query = [(images(i), _target(pool, i, remap)) for i in draw.query]
    seed_everything(episode.seed)
    model = TunedModel(backbone.model, episode.config, num_classes=len(draw.classes))
    spec = backbone.spec
    start = time.perf_counter()
    held: set[int] = set()
    best_epoch: int | None = None
    if episode.method == PROTOTYPE_BASELINE:
        failure, device = None, _fit_prototype(model, support, recipe, spec, pool)
    else:
        single = pool.label_mode is LabelMode.SINGLE
        held = held_out_indices([t for _, t in support], hold_out, episode.seed, single)
        trained = [pair for k, pair in enumerate(support) if k not in held]
        validation = [pair for k, pair in enumerate(support) if k in held]
        failure, device, best_epoch = _train(
            model, trained, validation, recipe.replace(seed=episode.seed), spec, pool, cancel
        )
    seconds = time.perf_counter() - start
    logits, probabilities, targets = _query_scores(model, query, spec, pool.label_mode, recipe)
    if detail is not None and episode.method != PROTOTYPE_BASELINE:
        start = time.perf_counter()
        logits, probabilities = _with_detail_view(logits, support, query, detail, recipe, pool)
        seconds += time.perf_counter() - start
    return EpisodeResult(
        method=episode.method,
        shots=draw.shots,
        draw=draw.draw,
        seed=episode.seed,
        classes=draw.classes,
        support_size=len(support) - len(held),
        query_size=len(query),
        metrics=episode_metrics(probabilities, targets, pool.label_mode),
        probabilities=probabilities,
        targets=targets,
        train_seconds=seconds,
        trainable_parameters=model.trainable_parameter_count(),
        device=device,
        failure=failure,
        held_out_size=len(held),
        best_epoch=best_epoch,
        logits=logits,
        calibration=None
        if calibration is None
        else run_calibration(
            logits, targets, draw.shots, draw.draw, calibration, pool.label_mode.value
        ),
    )


def _with_detail_view(
    logits: np.ndarray,
    support: list[tuple[torch.Tensor, PoolTarget]],
    query: list[tuple[torch.Tensor, PoolTarget]],
    detail: LoadedBackbone,
    recipe: TrainRecipe,
    pool: FewShotPool,
) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probabilities) of the query: the tuned model's averaged with the detail view's."""
    if pool.label_mode is LabelMode.MULTI:
        raise ConfigError("the detail view combines single-label models only")
    view = fit_detail_view(
        detail,
        [image for image, _ in support],
        [int(target) for _, target in support],  # type: ignore[arg-type]
        logits.shape[1],
        recipe.prototype_scale,
        device=str(resolve_device(recipe.device)),
    )
    detail_logits, _, _ = _query_scores(view, query, detail.spec, pool.label_mode, recipe)
    combined = combine_logits(logits, detail_logits)
    return combined, torch.from_numpy(combined).softmax(dim=-1).numpy()


def _query_scores(
    model: TunedModel,
    query: list[tuple[torch.Tensor, PoolTarget]],
    spec: BackboneSpec,
    label_mode: LabelMode,
    recipe: TrainRecipe,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(logits, probabilities, targets) of the query set: one forward pass, in eval mode."""
    if not query:
        raise DatasetError("the query set is empty")
    logits = predict_probabilities(
        model,
        [image for image, _ in query],
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        label_mode=label_mode,
        batch_size=max(recipe.batch_size, 16),
        raw_logits=True,
    )
    scores = torch.from_numpy(logits)
    probabilities = scores.sigmoid() if label_mode is LabelMode.MULTI else scores.softmax(dim=-1)
    targets = target_tensor([t for _, t in query], label_mode, model.num_classes).numpy()
    return logits, probabilities.numpy(), targets


def _train(
    model: TunedModel,
    support: list[tuple[torch.Tensor, PoolTarget]],
    validation: list[tuple[torch.Tensor, PoolTarget]],
    recipe: TrainRecipe,
    spec: BackboneSpec,
    pool: FewShotPool,
    cancel: CancelCheck | None,
) -> tuple[str | None, str, int | None]:
    """Run the training generator to the end: the failure message (or None), the device, and
    the epoch kept (None without a validation set)."""
    failure: str | None = None
    device = "unknown"
    best_epoch: int | None = None
    events: Iterator[object] = train(
        model,
        support,  # type: ignore[arg-type]
        recipe,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        label_mode=pool.label_mode,
        val_set=validation or None,  # type: ignore[arg-type]
        cancel=cancel,
    )
    for event in events:
        if isinstance(event, RunStarted):
            device = event.device
        elif isinstance(event, RunFailed):
            failure = event.message
        elif isinstance(event, RunFinished) and validation:
            best_epoch = event.best_epoch
    return failure, device, best_epoch


def _fit_prototype(
    model: TunedModel,
    support: list[tuple[torch.Tensor, PoolTarget]],
    recipe: TrainRecipe,
    spec: BackboneSpec,
    pool: FewShotPool,
) -> str:
    """The nearest-centroid head on the support set, no training; the device it ran on."""
    device = resolve_device(recipe.device)
    model.to(device)
    init_prototype_head(
        model,
        [image for image, _ in support],
        target_tensor([t for _, t in support], pool.label_mode, model.num_classes),
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        label_mode=pool.label_mode,
        scale=recipe.prototype_scale,
    )
    return describe_device(device)


def _target(pool: FewShotPool, index: int, remap: Mapping[int, int]) -> PoolTarget:
    target = pool.targets[index]
    if pool.label_mode is LabelMode.MULTI:
        return target
    return remap[int(target)]  # type: ignore[arg-type]


def episode_metrics(
    probabilities: np.ndarray, targets: np.ndarray, label_mode: LabelMode
) -> dict[str, float]:
    """The engine's metrics plus ECE for multi-label runs (per (image, label) pair)."""
    metrics = classification_metrics(probabilities, targets, label_mode)
    if LabelMode(label_mode) is LabelMode.MULTI:
        metrics["ece"] = expected_calibration_error(probabilities, targets)
    return {name: float(value) for name, value in metrics.items()}
