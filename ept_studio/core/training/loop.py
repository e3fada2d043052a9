"""The training loop as a generator of :mod:`events` (evaluation lives in :mod:`evaluation`).

``train`` is a plain generator so any caller (a Qt worker, the CLI, a test) can show progress and
stop it: iterate it and render each event. Randomness (shuffling and augmentation) comes from one
``torch.Generator`` seeded from the recipe; the head and the method's tensors are initialised before
``train`` is called, so seed that with :func:`seed_everything` first (a recipe with
``head_init="prototype"`` then overwrites the head from the support set before the first step).

Guards (:mod:`guards`): a diverging loss or a one-class collapse with a rising loss restarts the
run from its initial tensors at a tenth of the learning rates, up to ``divergence_retries`` times;
a collapse that remains is reported in :attr:`RunFinished.warnings`, a divergence that remains
ends the run with :class:`RunFailed`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ept_studio.common.errors import DatasetError, TrainingCancelled, TrainingError
from ept_studio.common.training_events import (
    EpochFinished,
    RunFailed,
    RunFinished,
    RunRestarted,
    RunStarted,
    StepFinished,
    TrainEvent,
)
from ept_studio.core.device import bf16_decision, describe_device, resolve_device
from ept_studio.core.metrics import log_loss
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training.evaluation import (
    Sample,
    evaluate,
    predict_probabilities,
    target_tensor,
)
from ept_studio.core.training.guards import (
    LOSS_ROSE_FACTOR,
    LR_BACKOFF,
    LossWatch,
    chance_loss,
    collapse_message,
    explode_patience,
    final_failure,
)
from ept_studio.core.training.prototype import init_prototype_head
from ept_studio.core.training.recipe import (
    HeadInit,
    LrSchedule,
    OptimizerName,
    TieBreak,
    TrainRecipe,
)
from ept_studio.core.training.transforms import batch_tensors, train_transform

CancelCheck = Callable[[], bool] | threading.Event
"""Asked before every optimiser step; true (or set) stops the run."""

SELECTION_METRIC: dict[LabelMode, str] = {LabelMode.SINGLE: "accuracy", LabelMode.MULTI: "map"}
"""The validation metric that picks the best epoch (the paper's headline metric per label mode)."""

VALIDATION_LOSS = "loss"
"""The validation metrics' key for the held-out log-loss (:func:`~ept_studio.core.metrics.log_loss`),
which breaks ties under ``tie_break="loss"``."""


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (for model and head initialisation)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def learning_rate_factor(step: int, total_steps: int, recipe: TrainRecipe) -> float:
    """The multiplier of the base learning rates at optimiser step ``step`` (counting from 0).

    Linear warmup ``(step + 1) / warmup`` (``warmup`` from :meth:`TrainRecipe.warmup_for`), then
    cosine from 1 towards 0 over the remaining steps (the last step's factor is small but not 0),
    or flat for the constant schedule.
    """
    warmup = recipe.warmup_for(total_steps)
    if step < warmup:
        return (step + 1) / warmup
    decay_steps = total_steps - warmup
    if recipe.schedule is LrSchedule.CONSTANT or decay_steps <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / decay_steps))


def build_optimizer(
    model: TunedModel, recipe: TrainRecipe, lr_scale: float = 1.0
) -> torch.optim.Optimizer:
    """SGD or AdamW over two groups, the method's tensors at ``lr`` (``full_lr`` for full
    fine-tuning) and the head at ``head_lr``, both times ``lr_scale``.

    Empty groups are left out (linear probing has no method tensors). Each group keeps its base rate
    under ``"base_lr"`` for the schedule.
    """
    groups = model.parameter_groups()
    method_lr = recipe.method_learning_rate(model.method_config.method)
    rates = {"method": method_lr * lr_scale, "head": recipe.head_learning_rate * lr_scale}
    param_groups = [
        {"params": groups[name], "lr": rate, "base_lr": rate, "name": name}
        for name, rate in rates.items()
        if groups[name]
    ]
    if not param_groups:
        raise TrainingError("this model has no trainable tensors: choose a tuning method")
    if recipe.optimizer is OptimizerName.ADAMW:
        return torch.optim.AdamW(param_groups, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(
        param_groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
    )


def train(
    model: TunedModel,
    train_set: Sequence[Sample],
    recipe: TrainRecipe,
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    label_mode: LabelMode,
    val_set: Sequence[Sample] | None = None,
    cancel: CancelCheck | None = None,
) -> Iterator[TrainEvent]:
    """Train ``model`` in place, yielding events: RunStarted, StepFinished per step, EpochFinished
    per epoch, then RunFinished (or RunFailed, after which nothing more comes); RunRestarted
    between attempts when a guard fires (see the module docstring).

    With a non-empty ``val_set`` every epoch is evaluated; the best epoch's trainable tensors (by
    accuracy, or mAP for multi-label; ties keep the earlier epoch) are kept and restored at the end,
    and ``early_stopping_patience`` epochs without improvement end the run. A loss that still
    diverges on the last attempt (or at once, when an image has non-finite pixels) yields
    RunFailed and leaves the model with the best epoch's tensors, else its last finite ones.
    Bad inputs raise (DatasetError, DeviceError, TrainingError) when the generator is first
    advanced.

    Cancelling: ``cancel`` is asked before every step; once it is true the generator raises
    :class:`TrainingCancelled` (nothing more is yielded) and the model keeps its current tensors.
    """
    run = _TrainingRun(model, train_set, recipe, input_size, mean, std, label_mode, cancel)
    yield run.started()
    try:
        yield from _run_attempts(run, val_set)
    finally:
        model.eval()


def _run_attempts(run: _TrainingRun, val_set: Sequence[Sample] | None) -> Iterator[TrainEvent]:
    """Attempts at falling learning rates until one ends well or the retries are spent."""
    retries = run.recipe.divergence_retries
    for attempt in range(retries + 1):
        outcome = yield from _run_epochs(run, val_set)
        if isinstance(outcome, RunFinished):
            run.keep_trained_share()
            collapse = run.collapse()
            if collapse is None or not run.loss_rose() or attempt == retries:
                warnings = () if collapse is None else (collapse,)
                yield dataclasses.replace(outcome, lr_scale=run.lr_scale, warnings=warnings)
                return
            reason = collapse
        else:
            if attempt == retries or not run.retryable:
                yield RunFailed(final_failure(outcome, attempt))
                return
            reason = outcome
        run.restart(LR_BACKOFF ** (attempt + 1))
        yield RunRestarted(attempt + 1, reason, run.lr_scale)


def _run_epochs(
    run: _TrainingRun, val_set: Sequence[Sample] | None
) -> Generator[TrainEvent, None, RunFinished | str]:
    """One attempt: its events; returns its RunFinished (not yet yielded) or a failure message."""
    best = _BestEpoch(
        SELECTION_METRIC[run.label_mode],
        run.recipe.early_stopping_patience,
        run.recipe.tie_break is TieBreak.LOSS,
    )
    epoch = 0
    for epoch in range(1, run.total_epochs + 1):
        epoch_start_state = _clone_trainable(run.model)
        train_loss = yield from run.train_epoch(epoch)
        if train_loss is None:
            _recover_finite_state(run.model, best, epoch_start_state)
            return run.failure
        run.last_epoch_loss = train_loss
        val_metrics = run.validate(val_set) if val_set else None
        best.update(epoch, val_metrics, run.model)
        yield EpochFinished(epoch, train_loss, val_metrics, run.elapsed(), run.eta())
        if best.exhausted:
            break
    best.restore(run.model)
    stopped_early = best.exhausted and epoch < run.total_epochs
    return RunFinished(epoch, best.epoch, best.metrics, stopped_early, run.elapsed())


class _TrainingRun:
    """Everything one run needs, set up once: data on tensors, head init, optimiser, device,
    timing, the loss watch; :meth:`restart` rewinds it for another attempt."""

    def __init__(
        self,
        model: TunedModel,
        train_set: Sequence[Sample],
        recipe: TrainRecipe,
        input_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        label_mode: LabelMode,
        cancel: CancelCheck | None,
    ) -> None:
        if not train_set:
            raise DatasetError("the training set is empty: add labelled images first")
        self.model, self.recipe, self.label_mode = model, recipe, LabelMode(label_mode)
        self.images = [image for image, _ in train_set]
        self.targets = target_tensor([t for _, t in train_set], self.label_mode, model.num_classes)
        self.input_size, self.mean, self.std = input_size, mean, std
        self.device = resolve_device(recipe.device)
        self.bf16_decision = bf16_decision(recipe.bf16.value, self.device)
        self.bf16 = self.bf16_decision.on
        model.to(self.device)
        if recipe.head_init is HeadInit.PROTOTYPE:
            self._init_prototype_head()
        self.initial_state = _clone_trainable(model)
        self.generator = torch.Generator().manual_seed(recipe.seed)
        self.transform = train_transform(
            input_size, mean, std, recipe.crop_scale, recipe.hflip, generator=self.generator
        )
        self.total_epochs = recipe.epochs_for(len(self.images))
        self.total_steps = recipe.total_steps(len(self.images))
        self.is_cancelled = _cancel_check(cancel)
        self.retryable = True
        self.failure = ""
        self.start_time = time.perf_counter()
        self._start_attempt(1.0)

    def _init_prototype_head(self) -> None:
        init_prototype_head(
            self.model,
            self.images,
            self.targets,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            label_mode=self.label_mode,
            scale=self.recipe.prototype_scale,
        )

    def _start_attempt(self, lr_scale: float) -> None:
        self.lr_scale = lr_scale
        self.optimizer = build_optimizer(self.model, self.recipe, lr_scale)
        self.parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.generator.manual_seed(self.recipe.seed)
        self.watch = LossWatch(
            chance_loss(self.label_mode, self.model.num_classes),
            explode_patience(self.recipe.steps_per_epoch(len(self.images))),
        )
        self.steps_done = 0
        self.last_epoch_loss = math.nan
        self.attempt_start = time.perf_counter()

    def restart(self, lr_scale: float) -> None:
        """Back to the initial tensors and the seeded data order, at ``lr_scale`` x the rates."""
        self.model.load_trainable_state(self.initial_state)
        self._start_attempt(lr_scale)

    def keep_trained_share(self) -> None:
        """Move every trainable tensor back toward the run's start (the prototype classifier)
        so that only ``recipe.trained_share`` of the trained change stays."""
        share = self.recipe.trained_share
        if share >= 1.0:
            return
        trained = self.model.trainable_state()
        self.model.load_trainable_state(
            {
                name: torch.lerp(start.to(trained[name]), trained[name], share)
                for name, start in self.initial_state.items()
            }
        )

    def collapse(self) -> str | None:
        """The collapse message if every support image gets the same class (single-label)."""
        if self.label_mode is LabelMode.MULTI:
            return None
        probabilities = predict_probabilities(
            self.model,
            self.images,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            label_mode=self.label_mode,
            device=self.device,
            bf16=self.bf16,
        )
        return collapse_message(probabilities, self.targets.numpy())

    def loss_rose(self) -> bool:
        """Whether the last epoch's loss ended well above the attempt's first step's."""
        first = self.watch.first
        return first is not None and self.last_epoch_loss > LOSS_ROSE_FACTOR * first

    def started(self) -> RunStarted:
        self.start_time = time.perf_counter()
        return RunStarted(
            total_steps=self.total_steps,
            total_epochs=self.total_epochs,
            device=describe_device(self.device),
            trainable_parameters=self.model.trainable_parameter_count(),
            bf16=self.bf16,
            bf16_reason=self.bf16_decision.reason,
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    def eta(self) -> float:
        """Remaining steps times this attempt's mean wall time per step (validation included)."""
        if self.steps_done == 0:
            return float("nan")
        per_step = (time.perf_counter() - self.attempt_start) / self.steps_done
        return per_step * (self.total_steps - self.steps_done)

    def train_epoch(self, epoch: int) -> Generator[StepFinished, None, float | None]:
        """One shuffled pass; returns the sample-weighted mean loss, or None if the loss diverged
        (the message is in ``failure``)."""
        self.model.train()
        order = torch.randperm(len(self.images), generator=self.generator)
        loss_sum = 0.0
        for batch in order.split(self.recipe.batch_size):
            if self.is_cancelled():
                raise TrainingCancelled(f"training was cancelled before step {self.steps_done + 1}")
            lr = self._schedule_learning_rate()
            loss = self._optimise(batch)
            self.steps_done += 1
            problem = self.watch.check(loss, self.steps_done, lr, self._start_loss)
            if problem is not None:
                self.failure = problem + ("" if self.retryable else _BROKEN_PIXELS)
                return None
            loss_sum += loss * len(batch)
            yield StepFinished(
                epoch, self.steps_done, self.total_steps, loss, lr, self.elapsed(), self.eta()
            )
        return loss_sum / len(self.images)

    def _schedule_learning_rate(self) -> float:
        """Set every group's rate for the coming step; report the first group's (the method's)."""
        factor = learning_rate_factor(self.steps_done, self.total_steps, self.recipe)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return float(self.optimizer.param_groups[0]["lr"])

    def _optimise(self, batch: torch.Tensor) -> float:
        pixels = batch_tensors([self.images[i] for i in batch.tolist()], self.transform)
        if not bool(pixels.isfinite().all()):
            self.retryable = False
            return math.nan
        pixels, targets = pixels.to(self.device), self.targets[batch].to(self.device)
        self.last_batch = (pixels, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._batch_loss(pixels, targets)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        loss.backward()
        if self.recipe.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.recipe.grad_clip)
        self.optimizer.step()
        return value

    def _batch_loss(self, pixels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(pixels)
        return _loss(logits.float(), targets, self.label_mode)

    def _start_loss(self) -> float:
        """The initial tensors' loss on the last batch's pixels (the divergence guard's check
        that the updates, not the crops, made the loss high); the current tensors come back."""
        current = _clone_trainable(self.model)
        self.model.load_trainable_state(self.initial_state)
        try:
            with torch.no_grad():
                return float(self._batch_loss(*self.last_batch))
        finally:
            self.model.load_trainable_state(current)

    def validate(self, val_set: Sequence[Sample]) -> dict[str, float]:
        result = evaluate(
            self.model,
            val_set,
            input_size=self.input_size,
            mean=self.mean,
            std=self.std,
            label_mode=self.label_mode,
            device=self.device,
            bf16=self.bf16,
        )
        return {**result.metrics, VALIDATION_LOSS: log_loss(result.probabilities, result.targets)}


@dataclasses.dataclass
class _BestEpoch:
    """The best epoch so far by ``metric`` and a copy of its trainable tensors; with
    ``loss_breaks_ties`` an equal metric at a lower held-out ``loss`` counts as better."""

    metric: str
    patience: int | None
    loss_breaks_ties: bool = False
    epoch: int = 0
    score: tuple[float, float] = (-math.inf, -math.inf)
    metrics: dict[str, float] | None = None
    state: dict[str, torch.Tensor] | None = None
    stale_epochs: int = 0

    def update(self, epoch: int, metrics: dict[str, float] | None, model: TunedModel) -> None:
        if metrics is None:
            self.epoch = epoch
            return
        tie = -metrics[VALIDATION_LOSS] if self.loss_breaks_ties else 0.0
        score = (_finite_or_worst(metrics[self.metric]), _finite_or_worst(tie))
        if self.state is None or score > self.score:
            self.epoch, self.score, self.metrics = epoch, score, dict(metrics)
            self.state = _clone_trainable(model)
            self.stale_epochs = 0
        else:
            self.stale_epochs += 1

    @property
    def exhausted(self) -> bool:
        return self.patience is not None and self.stale_epochs >= self.patience

    def restore(self, model: TunedModel) -> None:
        if self.state is not None:
            model.load_trainable_state(self.state)


def _finite_or_worst(value: float) -> float:
    return -math.inf if math.isnan(value) else value


def _clone_trainable(model: TunedModel) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in model.trainable_state().items()}


def _recover_finite_state(
    model: TunedModel, best: _BestEpoch, epoch_start_state: dict[str, torch.Tensor]
) -> None:
    """After a blow-up: the best epoch's tensors, else the current ones if finite, else the
    epoch's starting ones."""
    if best.state is not None:
        model.load_trainable_state(best.state)
    elif not all(bool(t.isfinite().all()) for t in model.trainable_state().values()):
        model.load_trainable_state(epoch_start_state)


_BROKEN_PIXELS = ", because an image of that batch has NaN or infinite pixel values"


def _cancel_check(cancel: CancelCheck | None) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if isinstance(cancel, threading.Event):
        return cancel.is_set
    return cancel


def _loss(logits: torch.Tensor, targets: torch.Tensor, label_mode: LabelMode) -> torch.Tensor:
    if label_mode is LabelMode.MULTI:
        return F.binary_cross_entropy_with_logits(logits, targets)
    return F.cross_entropy(logits, targets)
