"""The training loop, its recipe, events and transforms: a tiny seeded ViT on toy colour images."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from support import METHOD_MATRIX, make_tiny_vit

from ept_studio.common.errors import ConfigError, DatasetError, DeviceError, TrainingCancelled
from ept_studio.core.methods import (
    BiasConfig,
    EptConfig,
    FullConfig,
    LinearConfig,
    MethodConfig,
    MethodName,
)
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training import (
    PAPER_RECIPE,
    RECIPES,
    Bf16Mode,
    EpochFinished,
    LrSchedule,
    OptimizerName,
    RunFailed,
    RunFinished,
    RunRestarted,
    RunStarted,
    Sample,
    StepFinished,
    TrainEvent,
    TrainRecipe,
    batch_tensors,
    build_optimizer,
    eval_transform,
    evaluate,
    learning_rate_factor,
    predict_probabilities,
    sample_crop,
    seed_everything,
    train,
    train_transform,
)

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
SIZE = 32
FAST = TrainRecipe(lr=0.05, epochs=2, batch_size=4, device="cpu")


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def colour_images(count: int, seed: int = 0, size: int = 40) -> list[Sample]:
    """Class 0: reddish noise; class 1: bluish noise (trivially separable, even after cropping)."""
    generator = torch.Generator().manual_seed(seed)
    samples: list[Sample] = []
    for index in range(count):
        label = index % 2
        image = torch.randint(0, 60, (3, size, size), generator=generator, dtype=torch.uint8)
        image[0 if label == 0 else 2] += 180
        samples.append((image, label))
    return samples


def multi_label_images(count: int, seed: int = 0) -> list[Sample]:
    """Three labels, one per bright colour channel, in every combination."""
    generator = torch.Generator().manual_seed(seed)
    samples: list[Sample] = []
    for index in range(count):
        labels = torch.tensor([(index >> bit) & 1 for bit in range(3)], dtype=torch.float32)
        image = torch.randint(0, 60, (3, 36, 36), generator=generator, dtype=torch.uint8)
        image[labels.bool()] += 180
        samples.append((image, labels))
    return samples


def tuned_model(method: MethodConfig, num_classes: int = 2, seed: int = 0) -> TunedModel:
    seed_everything(seed)
    return TunedModel(make_tiny_vit(seed), method, num_classes)


def run(
    model: TunedModel,
    samples: Sequence[Sample],
    recipe: TrainRecipe = FAST,
    label_mode: LabelMode = LabelMode.SINGLE,
    **kwargs: object,
) -> list[TrainEvent]:
    return list(
        train(
            model,
            samples,
            recipe,
            input_size=SIZE,
            mean=MEAN,
            std=STD,
            label_mode=label_mode,
            **kwargs,  # type: ignore[arg-type]
        )
    )


def steps(events: Sequence[TrainEvent]) -> list[StepFinished]:
    return [e for e in events if isinstance(e, StepFinished)]


def epochs(events: Sequence[TrainEvent]) -> list[EpochFinished]:
    return [e for e in events if isinstance(e, EpochFinished)]


def score(
    model: TunedModel, samples: Sequence[Sample], mode: LabelMode = LabelMode.SINGLE
) -> dict[str, float]:
    return evaluate(model, samples, input_size=SIZE, mean=MEAN, std=STD, label_mode=mode).metrics


# --- the event stream -----------------------------------------------------------------------------


def test_event_sequence_counts_and_order() -> None:
    model = tuned_model(EptConfig(length=5))
    events = run(model, colour_images(10))
    started, finished = events[0], events[-1]
    assert isinstance(started, RunStarted)
    assert started.total_steps == 2 * math.ceil(10 / 4) == 6
    assert started.total_epochs == 2
    assert started.device == f"CPU ({torch.get_num_threads()} threads)"
    assert started.trainable_parameters == model.trainable_parameter_count()
    kinds = [type(e).__name__ for e in events[1:-1]]
    epoch_kinds = ["StepFinished"] * 3 + ["EpochFinished"]
    assert kinds == epoch_kinds * 2
    assert [s.step for s in steps(events)] == [1, 2, 3, 4, 5, 6]
    assert [s.epoch for s in steps(events)] == [1, 1, 1, 2, 2, 2]
    assert all(s.total_steps == 6 for s in steps(events))
    assert [e.epoch for e in epochs(events)] == [1, 2]
    assert all(e.val_metrics is None for e in epochs(events))
    assert finished == RunFinished(2, 2, None, False, finished.elapsed_s)
    assert steps(events)[-1].eta_s == 0.0
    elapsed = [e.elapsed_s for e in (*steps(events), finished)]
    assert elapsed == sorted(elapsed)
    assert not model.training


def test_epoch_loss_is_the_sample_weighted_mean_of_its_steps() -> None:
    events = run(tuned_model(LinearConfig()), colour_images(10), FAST.replace(epochs=1))
    losses = [s.loss for s in steps(events)]
    expected = (4 * losses[0] + 4 * losses[1] + 2 * losses[2]) / 10
    assert epochs(events)[0].train_loss == pytest.approx(expected, rel=1e-12)


def test_events_are_plain_data() -> None:
    for event in run(tuned_model(LinearConfig()), colour_images(4), FAST.replace(epochs=1)):
        for value in vars(event).values():
            assert not isinstance(value, torch.Tensor)


@pytest.mark.parametrize("method", [LinearConfig(), EptConfig()], ids=["linear", "ept"])
def test_learns_a_separable_task(method: MethodConfig) -> None:
    samples = colour_images(8)
    model = tuned_model(method)
    events = run(model, samples, FAST.replace(lr=0.1, epochs=10))
    losses = [e.train_loss for e in epochs(events)]
    assert losses[-1] < losses[0] / 3
    assert isinstance(events[-1], RunFinished)
    assert score(model, samples)["accuracy"] == 1.0
    assert score(model, colour_images(8, seed=5))["accuracy"] == 1.0


def test_backbone_stays_in_eval_mode_while_the_head_trains() -> None:
    model = tuned_model(EptConfig(length=5))
    modes: list[tuple[bool, bool]] = []

    def watch() -> bool:
        modes.append((model.backbone.training, model.head.training))
        return False

    run(model, colour_images(4), FAST.replace(epochs=1), cancel=watch)
    assert modes == [(False, True)]
    assert not model.training


# --- only the method's tensors learn --------------------------------------------------------------


@pytest.mark.parametrize("method", METHOD_MATRIX, ids=repr)
def test_only_the_method_and_head_change(method: MethodConfig) -> None:
    model = tuned_model(method)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    learning = {name for name, p in model.named_parameters() if p.requires_grad}
    events = run(model, colour_images(8), FAST.replace(lr=0.01, epochs=1))
    assert isinstance(events[-1], RunFinished)
    after = model.state_dict()
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    frozen_changed = sorted(changed - learning)
    learning_unchanged = sorted(learning - changed)
    assert frozen_changed == []
    assert learning_unchanged == []
    assert {"head.weight", "head.bias"} <= learning
    if isinstance(method, FullConfig):
        assert all(p.requires_grad for p in model.parameters())


# --- cancel, failure, determinism -----------------------------------------------------------------


def test_cancel_callable_stops_before_the_fourth_step() -> None:
    calls = iter(range(100))
    events: list[TrainEvent] = []
    model = tuned_model(EptConfig(length=5))
    generator = train(
        model,
        colour_images(20),
        FAST,
        input_size=SIZE,
        mean=MEAN,
        std=STD,
        label_mode=LabelMode.SINGLE,
        cancel=lambda: next(calls) >= 3,
    )
    with pytest.raises(TrainingCancelled):
        events.extend(generator)
    assert len(steps(events)) == 3
    assert not any(isinstance(e, (EpochFinished, RunFinished, RunFailed)) for e in events)
    assert not model.training


def test_cancel_event_set_by_the_consumer() -> None:
    stop = threading.Event()
    seen: list[TrainEvent] = []
    generator = train(
        tuned_model(LinearConfig()),
        colour_images(20),
        FAST,
        input_size=SIZE,
        mean=MEAN,
        std=STD,
        label_mode=LabelMode.SINGLE,
        cancel=stop,
    )

    def consume() -> None:
        for event in generator:
            seen.append(event)
            if len(steps(seen)) == 3:
                stop.set()

    with pytest.raises(TrainingCancelled, match="before step 4"):
        consume()
    assert len(steps(seen)) == 3


def test_diverging_loss_yields_run_failed_after_two_restarts() -> None:
    model = tuned_model(FullConfig())
    events = run(model, colour_images(8), FAST.replace(lr=1e6, epochs=5))
    failure = events[-1]
    assert isinstance(failure, RunFailed)
    assert "exploded" in failure.message or "NaN" in failure.message
    assert "after 2 restarts at lower learning rates" in failure.message
    assert "lower the learning rate" in failure.message
    restarts = [e for e in events if isinstance(e, RunRestarted)]
    assert [(r.attempt, r.lr_scale) for r in restarts] == [(1, 0.1), (2, 0.1**2)]
    assert not any(isinstance(e, RunFinished) for e in events)
    assert all(bool(t.isfinite().all()) for t in model.trainable_state().values())


def test_a_nan_image_fails_the_run_at_its_step_and_keeps_finite_weights() -> None:
    samples = colour_images(8)
    samples[5] = (torch.full((3, 40, 40), float("nan")), 1)
    model = tuned_model(EptConfig(length=5))
    events = run(model, samples, FAST.replace(hflip=False))
    failure = events[-1]
    assert isinstance(failure, RunFailed)
    assert f"at step {len(steps(events)) + 1} " in failure.message
    assert "NaN" in failure.message
    assert all(bool(t.isfinite().all()) for t in model.trainable_state().values())


def test_same_seed_same_run_different_seed_different_run() -> None:
    samples, recipe = colour_images(10), FAST.replace(lr=0.1, seed=3)

    def one_run(seed: int) -> tuple[list[float], dict, dict[str, torch.Tensor]]:
        model = tuned_model(EptConfig(length=5))
        torch.rand(7)  # other users of the global generator must not matter
        losses = [s.loss for s in steps(run(model, samples, recipe.replace(seed=seed)))]
        return losses, score(model, samples), model.trainable_state()

    first, second, other = one_run(3), one_run(3), one_run(4)
    assert first[0] == second[0]
    assert first[1] == second[1]
    assert all(torch.equal(first[2][n], second[2][n]) for n in first[2])
    assert first[0] != other[0]


# --- multi-label, validation, early stopping ------------------------------------------------------


def test_multi_label_training_with_bce() -> None:
    samples = multi_label_images(8)
    model = tuned_model(EptConfig(length=5), num_classes=3)
    recipe = FAST.replace(lr=0.1, epochs=6)
    events = run(model, samples, recipe, label_mode=LabelMode.MULTI, val_set=samples)
    losses = [s.loss for s in steps(events)]
    assert all(math.isfinite(loss) for loss in losses)
    assert len(losses) == recipe.total_steps(8) == 12
    assert epochs(events)[-1].train_loss < epochs(events)[0].train_loss
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.metrics is not None
    assert set(finished.metrics) == {"map", "macro_auc", "accuracy", "loss"}
    assert 0.0 <= finished.metrics["map"] <= 1.0


def test_early_stopping_when_the_metric_cannot_improve() -> None:
    samples = colour_images(8)
    recipe = FAST.replace(lr=0.0, epochs=5, early_stopping_patience=1)
    events = run(tuned_model(EptConfig(length=5)), samples, recipe, val_set=samples[:4])
    assert len(epochs(events)) == 2
    assert len(steps(events)) == 4
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.epochs_run, finished.best_epoch, finished.stopped_early) == (2, 1, True)
    assert finished.metrics == epochs(events)[0].val_metrics


def test_the_best_epoch_is_restored_and_reported() -> None:
    samples, val = colour_images(8), colour_images(6, seed=9)
    model = tuned_model(EptConfig(length=5))
    events = run(model, samples, FAST.replace(lr=0.3, epochs=4, schedule="constant"), val_set=val)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert not finished.stopped_early
    best = epochs(events)[finished.best_epoch - 1]
    assert best.val_metrics == finished.metrics
    scores = [e.val_metrics["accuracy"] for e in epochs(events) if e.val_metrics]
    assert best.val_metrics is not None
    assert best.val_metrics["accuracy"] == max(scores)
    assert scores.index(max(scores)) == finished.best_epoch - 1  # ties keep the earliest epoch
    assert finished.best_epoch < finished.epochs_run
    assert epochs(events)[-1].val_metrics != finished.metrics
    restored = score(model, val)  # so the best epoch's tensors were put back
    assert {**restored, "loss": finished.metrics["loss"]} == finished.metrics


def validated_run(tie_break: str) -> tuple[list[EpochFinished], RunFinished]:
    """A run that reaches full held-out accuracy early and keeps lowering its held-out loss."""
    samples, val = colour_images(8), colour_images(6, seed=9)
    recipe = FAST.replace(lr=0.01, epochs=6, schedule="constant", tie_break=tie_break)
    events = run(tuned_model(LinearConfig()), samples, recipe, val_set=val)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    return epochs(events), finished


def test_held_out_loss_is_reported_as_the_log_loss_of_the_validation_set() -> None:
    history, _ = validated_run("earliest")
    losses = [e.val_metrics["loss"] for e in history if e.val_metrics]
    assert len(losses) == 6
    assert all(0.0 < loss < 5.0 for loss in losses)
    assert len(set(losses)) == 6  # the loss moves each epoch even when the accuracy does not


def test_tie_break_loss_keeps_the_lowest_loss_among_the_best_accuracy_epochs() -> None:
    earliest_history, earliest = validated_run("earliest")
    history, finished = validated_run("loss")
    assert [e.val_metrics for e in history] == [e.val_metrics for e in earliest_history]
    accuracy = [e.val_metrics["accuracy"] for e in history if e.val_metrics]
    loss = [e.val_metrics["loss"] for e in history if e.val_metrics]
    tied = [i for i, a in enumerate(accuracy) if a == max(accuracy)]
    assert len(tied) >= 2  # the case the rule is for
    assert earliest.best_epoch == tied[0] + 1
    assert finished.best_epoch == min(tied, key=lambda i: loss[i]) + 1
    assert finished.best_epoch != earliest.best_epoch
    assert finished.metrics == history[finished.best_epoch - 1].val_metrics


def test_bad_targets_and_empty_sets_are_dataset_errors() -> None:
    model = tuned_model(LinearConfig())
    image = colour_images(1)[0][0]
    with pytest.raises(DatasetError, match="outside"):
        run(model, [(image, 2)])
    with pytest.raises(DatasetError, match="3 labels"):
        run(model, [(image, [1.0, 0.0, 1.0])], label_mode=LabelMode.MULTI)
    with pytest.raises(DatasetError, match="empty"):
        run(model, [])
    with pytest.raises(DatasetError, match="RGB"):
        run(model, [(torch.zeros(4, 8, 8, dtype=torch.uint8), 0)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_a_missing_gpu_is_a_device_error() -> None:
    with pytest.raises(DeviceError, match="cpu"):
        run(tuned_model(LinearConfig()), colour_images(4), FAST.replace(device="cuda"))


def test_bf16_autocast_on_cpu_trains() -> None:
    events = run(tuned_model(EptConfig(length=5)), colour_images(4), FAST.replace(bf16="on"))
    assert isinstance(events[-1], RunFinished)
    assert all(math.isfinite(s.loss) for s in steps(events))


def test_adamw_trains() -> None:
    samples = colour_images(8)
    model = tuned_model(EptConfig(length=5))
    events = run(model, samples, FAST.replace(optimizer="adamw", lr=0.01, epochs=6))
    assert isinstance(events[-1], RunFinished)
    assert score(model, samples)["accuracy"] == 1.0


# --- the learning-rate schedule and the optimiser -------------------------------------------------


def test_warmup_then_cosine_factors() -> None:
    recipe = TrainRecipe(warmup_steps=2)
    factors = [learning_rate_factor(step, 6, recipe) for step in range(6)]
    assert factors == [
        0.5,
        1.0,
        1.0,
        0.5 * (1.0 + math.cos(math.pi / 4)),
        0.5,
        0.5 * (1.0 + math.cos(3 * math.pi / 4)),
    ]
    assert factors[3] == 0.8535533905932737
    assert factors[5] == 0.14644660940672627


def test_cosine_without_warmup_and_constant() -> None:
    cosine = [learning_rate_factor(step, 4, PAPER_RECIPE) for step in range(4)]
    assert cosine == [1.0, 0.8535533905932737, 0.5, 0.14644660940672627]
    constant = TrainRecipe(schedule="constant", warmup_steps=1)
    assert [learning_rate_factor(step, 4, constant) for step in range(4)] == [1.0] * 4


def test_steps_report_the_scheduled_learning_rate() -> None:
    recipe = FAST.replace(lr=0.1, warmup_steps=2)
    events = run(tuned_model(EptConfig(length=5)), colour_images(10), recipe)
    expected = [0.1 * learning_rate_factor(step, 6, recipe) for step in range(6)]
    assert [s.lr for s in steps(events)] == expected


def test_optimizer_groups_method_and_head_rates() -> None:
    recipe = TrainRecipe(lr=0.01, head_lr=0.5)
    groups = build_optimizer(tuned_model(EptConfig(length=5)), recipe).param_groups
    assert [(g["name"], g["lr"]) for g in groups] == [("method", 0.01), ("head", 0.5)]
    assert groups[0]["momentum"] == 0.9
    assert groups[0]["weight_decay"] == 1e-4
    linear = build_optimizer(tuned_model(LinearConfig()), recipe).param_groups
    assert [(g["name"], g["lr"]) for g in linear] == [("head", 0.5)]
    adamw = build_optimizer(tuned_model(LinearConfig()), TrainRecipe(optimizer="adamw"))
    assert isinstance(adamw, torch.optim.AdamW)


def test_full_fine_tuning_trains_the_backbone_at_its_own_rate() -> None:
    recipe = TrainRecipe(lr=0.01, head_lr=0.5, full_lr=1e-5)
    full = build_optimizer(tuned_model(FullConfig()), recipe).param_groups
    assert [(g["name"], g["lr"], g["base_lr"]) for g in full] == [
        ("method", 1e-5, 1e-5),
        ("head", 0.5, 0.5),
    ]
    halved = build_optimizer(tuned_model(FullConfig()), recipe, lr_scale=0.1).param_groups
    assert [g["lr"] for g in halved] == pytest.approx([1e-6, 0.05])
    # every other method's tensors stay at lr: full_lr is for pretrained weights as a whole
    for config in (EptConfig(length=5), BiasConfig()):
        groups = build_optimizer(tuned_model(config), recipe).param_groups
        assert [g["lr"] for g in groups] == [0.01, 0.5]
    assert TrainRecipe(lr=0.02).method_learning_rate(MethodName.FULL) == 0.02
    with pytest.raises(ConfigError, match="full fine-tuning rate"):
        TrainRecipe(full_lr=-1.0)


def test_a_separate_head_rate_is_applied_in_training() -> None:
    model = tuned_model(EptConfig(length=5))
    prompts_before = {n: t.clone() for n, t in model.trainable_state().items()}
    run(model, colour_images(4), FAST.replace(lr=0.0, head_lr=0.1, epochs=1))
    after = model.trainable_state()
    changed = {n for n in after if not torch.equal(after[n], prompts_before[n])}
    assert changed == {"head.weight", "head.bias"}


# --- the recipe -----------------------------------------------------------------------------------


def test_paper_recipe_defaults() -> None:
    assert RECIPES["paper"] is PAPER_RECIPE
    expected = TrainRecipe(
        optimizer=OptimizerName.SGD,
        lr=6e-4,
        head_lr=None,
        momentum=0.9,
        weight_decay=1e-4,
        schedule=LrSchedule.COSINE,
        warmup_steps=0,
        epochs=20,
        batch_size=4,
        crop_scale=(0.08, 1.0),
        hflip=True,
        grad_clip=None,
        early_stopping_patience=None,
        seed=0,
        device="auto",
        bf16=Bf16Mode.AUTO,
    )
    assert expected == PAPER_RECIPE
    assert PAPER_RECIPE.head_learning_rate == 6e-4
    assert PAPER_RECIPE.total_steps(10) == 20 * 3


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"optimizer": "lbfgs"}, "optimizer must be one of"),
        ({"lr": -1.0}, "learning rate"),
        ({"lr": float("nan")}, "learning rate"),
        ({"head_lr": float("inf")}, "head learning rate"),
        ({"momentum": 1.0}, "momentum"),
        ({"weight_decay": -0.1}, "weight decay"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"epochs": 0}, "epochs"),
        ({"epochs": 2.5}, "epochs"),
        ({"batch_size": 0}, "batch_size"),
        ({"crop_scale": (0.0, 1.0)}, "crop_scale"),
        ({"crop_scale": (0.9, 0.5)}, "crop_scale"),
        ({"crop_scale": (0.5, 1.5)}, "crop_scale"),
        ({"crop_scale": 0.5}, "crop_scale"),
        ({"hflip": "yes"}, "hflip"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"early_stopping_patience": 0}, "early_stopping_patience"),
        ({"seed": -1}, "seed"),
        ({"device": "gpu"}, "device must be"),
        ({"bf16": "maybe"}, "bf16 must be one of"),
    ],
)
def test_recipe_validation(changes: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        TrainRecipe(**changes)


def test_recipe_round_trip_through_json() -> None:
    recipe = TrainRecipe(optimizer="adamw", head_lr=0.01, crop_scale=[0.5, 1], grad_clip=1.0)
    assert recipe.optimizer is OptimizerName.ADAMW
    assert recipe.crop_scale == (0.5, 1.0)
    data = json.loads(json.dumps(recipe.to_dict()))
    assert data["optimizer"] == "adamw"
    assert data["crop_scale"] == [0.5, 1.0]
    assert TrainRecipe.from_dict(data) == recipe


def test_recipe_from_a_newer_version_warns_about_unknown_keys() -> None:
    data = {**PAPER_RECIPE.to_dict(), "label_smoothing": 0.1}
    with pytest.warns(UserWarning, match="label_smoothing"):
        assert TrainRecipe.from_dict(data) == PAPER_RECIPE


# --- transforms -----------------------------------------------------------------------------------


def test_crop_boxes_stay_inside_and_cover_the_asked_share() -> None:
    generator = torch.Generator().manual_seed(0)
    for height, width in [(40, 40), (17, 300), (300, 17), (5, 7), (1, 1)]:
        for _ in range(50):
            box = sample_crop(height, width, (0.25, 0.75), generator)
            assert box.top >= 0
            assert box.left >= 0
            assert 1 <= box.height <= height - box.top
            assert 1 <= box.width <= width - box.left
    for _ in range(50):
        box = sample_crop(400, 400, (0.25, 0.75), generator)
        assert 0.24 <= box.height * box.width / 400**2 <= 0.76
        assert 0.74 <= box.width / box.height <= 1.36


def test_crop_falls_back_to_the_largest_centred_box() -> None:
    generator = torch.Generator().manual_seed(0)
    box = sample_crop(10, 100, (1.0, 1.0), generator)
    assert sample_crop(10, 100, (1.0, 1.0), generator) == box
    assert (box.height, box.width, box.top, box.left) == (10, 13, 0, 43)


def test_train_transform_is_reproducible_with_its_generator() -> None:
    image = colour_images(1, size=57)[0][0]

    def draws(seed: int) -> torch.Tensor:
        transform = train_transform(SIZE, MEAN, STD, generator=torch.Generator().manual_seed(seed))
        return batch_tensors([image] * 4, transform)

    first = draws(1)
    assert first.shape == (4, 3, SIZE, SIZE)
    assert first.dtype == torch.float32
    torch.manual_seed(123)
    assert torch.equal(first, draws(1))
    assert not torch.equal(first, draws(2))


def test_horizontal_flip_happens_about_half_the_time() -> None:
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[:, :, :16] = 255
    generator = torch.Generator().manual_seed(0)
    transform = train_transform(SIZE, (0.0,) * 3, (1.0,) * 3, (1.0, 1.0), True, generator=generator)
    flipped = [bool(transform(image)[0, 0, 0] == 0.0) for _ in range(40)]
    assert 10 <= sum(flipped) <= 30
    keep = train_transform(SIZE, (0.0,) * 3, (1.0,) * 3, (1.0, 1.0), False, generator=generator)
    assert torch.equal(keep(image), image.float() / 255)


def test_eval_transform_resizes_and_normalises() -> None:
    transform = eval_transform(SIZE, MEAN, STD)
    white = transform(torch.full((3, 50, 70), 255, dtype=torch.uint8))
    assert white.shape == (3, SIZE, SIZE)
    torch.testing.assert_close(white, torch.full((3, SIZE, SIZE), 2.0), rtol=0.0, atol=1e-5)
    grey = transform(torch.full((1, 20, 20), 0, dtype=torch.uint8))
    torch.testing.assert_close(grey, torch.full((3, SIZE, SIZE), -2.0), rtol=0.0, atol=1e-5)
    with pytest.raises(DatasetError, match="uint8 or float"):
        transform(torch.zeros(3, 8, 8, dtype=torch.int32))
    with pytest.raises(ConfigError, match="normalisation"):
        eval_transform(SIZE, (0.5, 0.5), STD)


# --- evaluation -----------------------------------------------------------------------------------


def test_evaluate_a_trained_toy_model() -> None:
    samples, test = colour_images(8), colour_images(6, seed=11)
    model = tuned_model(LinearConfig())
    run(model, samples, FAST.replace(lr=0.1, epochs=5))
    result = evaluate(
        model, test, input_size=SIZE, mean=MEAN, std=STD, label_mode=LabelMode.SINGLE, batch_size=4
    )
    assert result.probabilities.shape == (6, 2)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert result.targets.tolist() == [0, 1, 0, 1, 0, 1]
    assert result.metrics["accuracy"] == 1.0
    assert result.metrics["balanced_accuracy"] == 1.0
    assert result.metrics["macro_auc"] == 1.0
    assert 0.0 <= result.metrics["ece"] < 0.5
    probabilities = predict_probabilities(
        model,
        [image for image, _ in test],
        input_size=SIZE,
        mean=MEAN,
        std=STD,
        label_mode=LabelMode.SINGLE,
        batch_size=4,
        device="cpu",
    )
    assert np.array_equal(probabilities, result.probabilities)


def test_multi_label_probabilities_are_sigmoids() -> None:
    samples = multi_label_images(4)
    model = tuned_model(LinearConfig(), num_classes=3)
    result = evaluate(model, samples, input_size=SIZE, mean=MEAN, std=STD, label_mode="multi")
    assert result.targets.shape == (4, 3)
    assert result.probabilities.shape == (4, 3)
    assert not np.allclose(result.probabilities.sum(axis=1), 1.0)
    assert set(result.metrics) == {"map", "macro_auc", "accuracy"}
