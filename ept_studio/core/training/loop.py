"""The training loop as a generator of :mod:`events`, and evaluation of a tuned model.

``train`` is a plain generator so any caller (a Qt worker, the CLI, a test) can show progress and
stop it: iterate it and render each event. Randomness (shuffling and augmentation) comes from one
``torch.Generator`` seeded from the recipe; the head and the method's tensors are initialised before
``train`` is called, so seed that with :func:`seed_everything` first.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import random
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ept_studio.core.device import describe_device, resolve_device, use_bf16
from ept_studio.core.metrics import classification_metrics
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training.events import (
    EpochFinished,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    TrainEvent,
)
from ept_studio.core.training.recipe import LrSchedule, OptimizerName, TrainRecipe
from ept_studio.core.training.transforms import batch_tensors, eval_transform, train_transform
from ept_studio.errors import DatasetError, TrainingCancelled, TrainingError

Target = int | torch.Tensor | Sequence[float]
"""A class index (single-label) or a multi-hot vector of 0/1 (multi-label)."""

Sample = tuple[torch.Tensor, Target]
"""An RGB image ``[3, H, W]`` (uint8, or float in [0, 1]) and its target."""

CancelCheck = Callable[[], bool] | threading.Event
"""Asked before every optimiser step; true (or set) stops the run."""

SELECTION_METRIC: dict[LabelMode, str] = {LabelMode.SINGLE: "accuracy", LabelMode.MULTI: "map"}
"""The validation metric that picks the best epoch (the paper's headline metric per label mode)."""


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Probabilities ``[n, C]``, targets (``[n]`` indices or ``[n, C]`` 0/1) and their metrics."""

    probabilities: np.ndarray
    targets: np.ndarray
    metrics: dict[str, float]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (for model and head initialisation)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def learning_rate_factor(step: int, total_steps: int, recipe: TrainRecipe) -> float:
    """The multiplier of the base learning rates at optimiser step ``step`` (counting from 0).

    Linear warmup ``(step + 1) / warmup_steps``, then cosine from 1 towards 0 over the remaining
    steps (the last step's factor is small but not 0), or flat for the constant schedule.
    """
    warmup = recipe.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    decay_steps = total_steps - warmup
    if recipe.schedule is LrSchedule.CONSTANT or decay_steps <= 0:
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / decay_steps))


def build_optimizer(model: TunedModel, recipe: TrainRecipe) -> torch.optim.Optimizer:
    """SGD or AdamW over two groups, the method's tensors at ``lr`` and the head at ``head_lr``.

    Empty groups are left out (linear probing has no method tensors). Each group keeps its base rate
    under ``"base_lr"`` for the schedule.
    """
    groups = model.parameter_groups()
    rates = {"method": recipe.lr, "head": recipe.head_learning_rate}
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
    per epoch, then RunFinished (or RunFailed, after which nothing more comes).

    With a non-empty ``val_set`` every epoch is evaluated; the best epoch's trainable tensors (by
    accuracy, or mAP for multi-label; ties keep the earlier epoch) are kept and restored at the end,
    and ``early_stopping_patience`` epochs without improvement end the run. A non-finite loss
    yields RunFailed and leaves the model with the best epoch's tensors, else its last finite ones.
    Bad inputs raise (DatasetError, DeviceError, TrainingError) when the generator is first
    advanced.

    Cancelling: ``cancel`` is asked before every step; once it is true the generator raises
    :class:`TrainingCancelled` (nothing more is yielded) and the model keeps its current tensors.
    """
    run = _TrainingRun(model, train_set, recipe, input_size, mean, std, label_mode, cancel)
    yield run.started()
    try:
        yield from _run_epochs(run, val_set)
    finally:
        model.eval()


def _run_epochs(run: _TrainingRun, val_set: Sequence[Sample] | None) -> Iterator[TrainEvent]:
    best = _BestEpoch(SELECTION_METRIC[run.label_mode], run.recipe.early_stopping_patience)
    epoch = 0
    for epoch in range(1, run.recipe.epochs + 1):
        epoch_start_state = _clone_trainable(run.model)
        train_loss = yield from run.train_epoch(epoch)
        if train_loss is None:
            _recover_finite_state(run.model, best, epoch_start_state)
            yield RunFailed(run.failure)
            return
        val_metrics = run.validate(val_set) if val_set else None
        best.update(epoch, val_metrics, run.model)
        yield EpochFinished(epoch, train_loss, val_metrics, run.elapsed(), run.eta())
        if best.exhausted:
            break
    best.restore(run.model)
    stopped_early = best.exhausted and epoch < run.recipe.epochs
    yield RunFinished(epoch, best.epoch, best.metrics, stopped_early, run.elapsed())


class _TrainingRun:
    """Everything one run needs, set up once: data on tensors, optimiser, device, timing."""

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
        self.bf16 = use_bf16(recipe.bf16.value, self.device)
        model.to(self.device)
        self.optimizer = build_optimizer(model, recipe)
        self.parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.generator = torch.Generator().manual_seed(recipe.seed)
        self.transform = train_transform(
            input_size, mean, std, recipe.crop_scale, recipe.hflip, generator=self.generator
        )
        self.total_steps = recipe.total_steps(len(self.images))
        self.is_cancelled = _cancel_check(cancel)
        self.steps_done = 0
        self.failure = ""
        self.start_time = time.perf_counter()

    def started(self) -> RunStarted:
        self.start_time = time.perf_counter()
        return RunStarted(
            total_steps=self.total_steps,
            total_epochs=self.recipe.epochs,
            device=describe_device(self.device),
            trainable_parameters=self.model.trainable_parameter_count(),
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.start_time

    def eta(self) -> float:
        """Remaining steps times the mean wall time per step so far (validation included)."""
        if self.steps_done == 0:
            return float("nan")
        return self.elapsed() / self.steps_done * (self.total_steps - self.steps_done)

    def train_epoch(self, epoch: int) -> Generator[StepFinished, None, float | None]:
        """One shuffled pass; returns the sample-weighted mean loss, or None if the loss blew up."""
        self.model.train()
        order = torch.randperm(len(self.images), generator=self.generator)
        loss_sum = 0.0
        for batch in order.split(self.recipe.batch_size):
            if self.is_cancelled():
                raise TrainingCancelled(f"training was cancelled before step {self.steps_done + 1}")
            lr = self._schedule_learning_rate()
            loss = self._optimise(batch)
            self.steps_done += 1
            if not math.isfinite(loss):
                self.failure = _divergence_message(loss, self.steps_done, lr)
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
        pixels, targets = pixels.to(self.device), self.targets[batch].to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(pixels)
        loss = _loss(logits.float(), targets, self.label_mode)
        value = float(loss.detach())
        if not math.isfinite(value):
            return value
        loss.backward()
        if self.recipe.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.parameters, self.recipe.grad_clip)
        self.optimizer.step()
        return value

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
        return result.metrics


@dataclasses.dataclass
class _BestEpoch:
    """The best epoch so far by ``metric`` and a copy of its trainable tensors."""

    metric: str
    patience: int | None
    epoch: int = 0
    score: float = -math.inf
    metrics: dict[str, float] | None = None
    state: dict[str, torch.Tensor] | None = None
    stale_epochs: int = 0

    def update(self, epoch: int, metrics: dict[str, float] | None, model: TunedModel) -> None:
        if metrics is None:
            self.epoch = epoch
            return
        score = metrics[self.metric]
        score = -math.inf if math.isnan(score) else score
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


def _divergence_message(loss: float, step: int, lr: float) -> str:
    kind = "NaN" if math.isnan(loss) else "inf"
    return (
        f"the training loss became {kind} at step {step} (learning rate {lr:.3g}): lower the "
        "learning rate, set a gradient clip, or check the images for broken pixel values"
    )


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


def target_tensor(
    targets: Sequence[Target], label_mode: LabelMode, num_classes: int
) -> torch.Tensor:
    """Class indices ``[n]`` (int64) or multi-hot ``[n, C]`` (float32), checked against the head."""
    if LabelMode(label_mode) is LabelMode.MULTI:
        return _multi_hot(targets, num_classes)
    labels: list[int] = []
    for index, target in enumerate(targets):
        try:
            label = operator.index(target)  # type: ignore[arg-type]
        except TypeError as err:
            raise DatasetError(
                f"sample {index}: a single-label target must be a class index"
            ) from err
        if not 0 <= label < num_classes:
            raise DatasetError(
                f"sample {index} has class {label}, outside this model's 0..{num_classes - 1}"
            )
        labels.append(label)
    return torch.tensor(labels, dtype=torch.int64)


def _multi_hot(targets: Sequence[Target], num_classes: int) -> torch.Tensor:
    rows = [torch.as_tensor(target, dtype=torch.float32).flatten() for target in targets]
    for index, row in enumerate(rows):
        if row.numel() != num_classes:
            raise DatasetError(
                f"sample {index} has {row.numel()} labels, this model has {num_classes}"
            )
        if not bool(((row == 0) | (row == 1)).all()):
            raise DatasetError(f"sample {index}: multi-label targets must be 0 or 1")
    return torch.stack(rows)


def _probabilities(logits: torch.Tensor, label_mode: LabelMode) -> torch.Tensor:
    return logits.sigmoid() if label_mode is LabelMode.MULTI else logits.softmax(dim=-1)


@torch.no_grad()
def predict_probabilities(
    model: TunedModel,
    images: Sequence[torch.Tensor],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    label_mode: LabelMode,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    bf16: bool = False,
) -> np.ndarray:
    """Class probabilities ``[n, C]`` (float32): softmax, or per-label sigmoid for multi-label.

    Uses the test-time transform, in eval mode (the model's mode is put back afterwards). With
    ``device`` the model is moved there first; otherwise it runs where the model is.
    """
    target_device = _model_device(model, device)
    transform = eval_transform(input_size, mean, std)
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    try:
        for start in range(0, len(images), batch_size):
            pixels = batch_tensors(images[start : start + batch_size], transform)
            with torch.autocast(target_device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(pixels.to(target_device))
            chunks.append(_probabilities(logits.float(), LabelMode(label_mode)).cpu())
    finally:
        model.train(was_training)
    if not chunks:
        return np.zeros((0, model.num_classes), dtype=np.float32)
    return torch.cat(chunks).numpy()


def evaluate(
    model: TunedModel,
    samples: Sequence[Sample],
    *,
    input_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    label_mode: LabelMode,
    batch_size: int = 16,
    device: torch.device | str | None = None,
    bf16: bool = False,
) -> EvalResult:
    """Probabilities and :func:`~ept_studio.core.metrics.classification_metrics` on ``samples``."""
    if not samples:
        raise DatasetError("the evaluation set is empty: add labelled images first")
    mode = LabelMode(label_mode)
    targets = target_tensor([t for _, t in samples], mode, model.num_classes).numpy()
    probabilities = predict_probabilities(
        model,
        [image for image, _ in samples],
        input_size=input_size,
        mean=mean,
        std=std,
        label_mode=mode,
        batch_size=batch_size,
        device=device,
        bf16=bf16,
    )
    return EvalResult(probabilities, targets, classification_metrics(probabilities, targets, mode))


def _model_device(model: TunedModel, device: torch.device | str | None) -> torch.device:
    if device is None:
        return next(model.parameters()).device
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    model.to(resolved)
    return resolved
