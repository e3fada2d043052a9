"""Few-shot defaults: the prototype head, the divergence and collapse guards, presets, bf16, VPT init."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import pytest
import skimage.data
import torch
import torch.nn.functional as F
from support import make_tiny_vit

from ept_studio.common.errors import ConfigError, DatasetError
from ept_studio.core.backbones import load_backbone
from ept_studio.core.methods import EptConfig, FullConfig, LinearConfig, MethodConfig, VptConfig
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training import (
    DEFAULT_CANDIDATE_RECIPE,
    PAPER_RECIPE,
    RECIPES,
    HeadInit,
    OptimizerName,
    RunFailed,
    RunFinished,
    RunRestarted,
    RunStarted,
    Sample,
    StepFinished,
    TrainEvent,
    TrainRecipe,
    fit_prototypes,
    learning_rate_factor,
    nearest_centroid_predict,
    predict_probabilities,
    recipe_from_settings,
    seed_everything,
    support_features,
    train,
)
from ept_studio.core.training import loop as training_loop
from ept_studio.core.training.guards import LossWatch, chance_loss, explode_patience
from ept_studio.core.training.transforms import batch_tensors, eval_transform

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
SIZE = 32
FAST = TrainRecipe(lr=0.05, epochs=2, batch_size=4, device="cpu")
PROTOTYPE_ONLY = FAST.replace(lr=0.0, head_lr=0.0, epochs=1, head_init="prototype")
"""Learning rates of 0: the head after the run is the head at step 0."""


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def tinted_images(count: int, classes: int = 3, tint: int = 8, seed: int = 0) -> list[Sample]:
    """Noise with a faint per-class tint: hard enough that nearest-centroid makes mistakes."""
    generator = torch.Generator().manual_seed(seed)
    samples: list[Sample] = []
    for index in range(count):
        label = index % classes
        image = torch.randint(0, 256 - tint, (3, 40, 40), generator=generator, dtype=torch.uint8)
        image[label] += tint
        samples.append((image, label))
    return samples


def tuned(method: MethodConfig, classes: int = 3, seed: int = 0) -> TunedModel:
    seed_everything(seed)
    return TunedModel(make_tiny_vit(seed, layer_scale=True), method, classes)


def run(
    model: TunedModel,
    samples: Sequence[Sample],
    recipe: TrainRecipe,
    label_mode: LabelMode = LabelMode.SINGLE,
) -> list[TrainEvent]:
    events = train(
        model, samples, recipe, input_size=SIZE, mean=MEAN, std=STD, label_mode=label_mode
    )
    return list(events)


def features(model: TunedModel, samples: Sequence[Sample]) -> torch.Tensor:
    images = [image for image, _ in samples]
    return support_features(model, images, input_size=SIZE, mean=MEAN, std=STD)


def predicted(model: TunedModel, samples: Sequence[Sample], mode: LabelMode) -> np.ndarray:
    images = [image for image, _ in samples]
    return predict_probabilities(
        model, images, input_size=SIZE, mean=MEAN, std=STD, label_mode=mode
    )


# --- the prototype head ---------------------------------------------------------------------------


def test_prototypes_of_known_features_are_exact() -> None:
    points = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    prototypes = fit_prototypes(points, torch.tensor([0, 0, 1]), LabelMode.SINGLE, 10.0, 3)
    # means (2, 0) and (0, 2), centre (1, 1), unit directions +-(1, -1)/sqrt(2)
    radius = (1.0 + math.sqrt(5.0) + math.sqrt(2.0)) / 3  # distances of the points to (1, 1)
    unit = 10.0 / (math.sqrt(2.0) * radius)
    expected = torch.tensor([[unit, -unit], [-unit, unit], [0.0, 0.0]])
    torch.testing.assert_close(prototypes.weight, expected)
    torch.testing.assert_close(prototypes.bias, torch.zeros(3))  # (1, 1) is orthogonal to both
    assert prototypes.fitted.tolist() == [True, True, False]


@pytest.mark.parametrize(
    "method", [EptConfig(length=5), VptConfig(length=4), LinearConfig()], ids=str
)
def test_step_zero_is_the_nearest_centroid_classifier(method: MethodConfig) -> None:
    support, held_out = tinted_images(12), tinted_images(60, seed=1)
    model = tuned(method)
    events = run(model, support, PROTOTYPE_ONLY)
    assert isinstance(events[-1], RunFinished)
    labels = torch.tensor([label for _, label in support])
    support_f, held_out_f = features(model, support), features(model, held_out)
    for samples, feats in ((support, support_f), (held_out, held_out_f)):
        expected = nearest_centroid_predict(support_f, labels, feats).numpy()
        got = predicted(model, samples, LabelMode.SINGLE).argmax(axis=1)
        np.testing.assert_array_equal(got, expected)
    truth = np.array([label for _, label in held_out])
    accuracy = float(np.mean(predicted(model, held_out, LabelMode.SINGLE).argmax(1) == truth))
    assert 0.4 < accuracy < 1.0  # a real classifier, not a trivial one


def test_prototype_logits_are_the_scale_times_a_centred_cosine() -> None:
    support = tinted_images(12)
    model = tuned(EptConfig(length=5))
    run(model, support, PROTOTYPE_ONLY.replace(prototype_scale=16.0))
    feats = features(model, support).double()
    labels = torch.tensor([label for _, label in support])
    means = torch.stack([feats[labels == c].mean(0) for c in range(3)])
    centre = means.mean(0)
    cosine = F.normalize(feats - centre, dim=-1) @ F.normalize(means - centre, dim=-1).T
    distance = (feats - centre).norm(dim=-1, keepdim=True)
    expected = 16.0 * cosine * distance / distance.mean()
    with torch.no_grad():
        logits = model.head(feats.float()).double()
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    assert 1.0 < float(logits.max(1).values.mean() - logits.min(1).values.mean()) < 32.0


def test_multi_label_prototypes_are_per_label_two_centroid_rules() -> None:
    generator = torch.Generator().manual_seed(0)
    samples: list[Sample] = []
    for index in range(16):
        labels = torch.tensor([(index >> bit) & 1 for bit in range(3)], dtype=torch.float32)
        image = torch.randint(0, 200, (3, 36, 36), generator=generator, dtype=torch.uint8)
        image[labels.bool()] += 30
        samples.append((image, labels))
    support, held_out = samples[:10], samples[10:]
    model = tuned(EptConfig(length=5))
    run(model, support, PROTOTYPE_ONLY, LabelMode.MULTI)
    targets = torch.stack([t for _, t in support]).bool()  # type: ignore[misc]
    support_f, held_out_f = features(model, support).double(), features(model, held_out).double()
    got = predicted(model, held_out, LabelMode.MULTI) > 0.5
    for label in range(3):
        positive = support_f[targets[:, label]].mean(0)
        negative = support_f[~targets[:, label]].mean(0)
        nearer = (held_out_f - positive).norm(dim=-1) < (held_out_f - negative).norm(dim=-1)
        np.testing.assert_array_equal(got[:, label], nearer.numpy())


def test_a_label_every_support_image_carries_keeps_the_normal_init() -> None:
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    targets = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    prototypes = fit_prototypes(points, targets, LabelMode.MULTI, 10.0, 2)
    assert prototypes.fitted.tolist() == [False, True]
    model = tuned(LinearConfig(), classes=2)
    before = model.head.weight[0].detach().clone()
    run(
        model,
        [(torch.zeros(3, 40, 40, dtype=torch.uint8), t) for t in targets],
        PROTOTYPE_ONLY,
        LabelMode.MULTI,
    )
    torch.testing.assert_close(model.head.weight[0].detach(), before)


def test_a_prototype_head_needs_two_classes_in_the_support() -> None:
    one_class = [(image, 0) for image, _ in tinted_images(4)]
    with pytest.raises(DatasetError, match="at least two classes"):
        run(tuned(LinearConfig()), one_class, PROTOTYPE_ONLY)


# --- divergence and collapse ----------------------------------------------------------------------


def test_a_diverging_run_restarts_at_a_tenth_of_the_rate_and_finishes() -> None:
    samples = tinted_images(8, classes=2, tint=150)
    model = tuned(FullConfig(), classes=2)
    events = run(model, samples, FAST.replace(lr=3.0, epochs=3))
    restarts = [e for e in events if isinstance(e, RunRestarted)]
    assert [(r.attempt, r.lr_scale) for r in restarts] == [(1, 0.1)]
    assert "exploded" in restarts[0].reason
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.lr_scale, finished.warnings) == (0.1, ())
    after = events[events.index(restarts[0]) + 1 :]
    steps = [e for e in after if isinstance(e, StepFinished)]
    assert [s.step for s in steps] == list(range(1, 7))
    assert steps[0].lr == pytest.approx(0.3)
    assert all(math.isfinite(s.loss) for s in steps)
    assert steps[-1].loss < math.log(2.0)
    labels = np.array([label for _, label in samples])
    assert np.array_equal(predicted(model, samples, LabelMode.SINGLE).argmax(1), labels)


# Batch losses of a real run (offline ViT-S/14, textiles, K = 5, linear, default preset, 4 steps an
# epoch): a prototype head meets crops that lost their defect. The same losses came back at 0.1x and
# 0.01x the learning rate, so they are the data, not a divergence.
CROPPED_AWAY_LOSSES = (
    0.88,
    0.093,
    1.41,
    2.09,
    0.82,
    4.13,
    10.6,
    1.08,
    7.33,
    1.16,
    10.9,
    6.03,
    10.5,
)


def test_bad_batches_within_an_epoch_are_not_a_divergence() -> None:
    watch = LossWatch(chance_loss(LabelMode.SINGLE, 3), explode_patience(steps_per_epoch=4))
    assert watch.patience == 4
    messages = [watch.check(loss, step, 3e-3) for step, loss in enumerate(CROPPED_AWAY_LOSSES, 1)]
    assert messages == [None] * len(CROPPED_AWAY_LOSSES)
    assert watch.high_steps == 3


def test_a_whole_epoch_above_the_limit_is_a_divergence() -> None:
    watch = LossWatch(chance_loss(LabelMode.SINGLE, 3), explode_patience(steps_per_epoch=4))
    losses = (0.9, 1.2, 6.0, 7.0, 9.0, 12.0)
    messages = [watch.check(loss, step, 3e-3) for step, loss in enumerate(losses, 1)]
    assert messages[:5] == [None] * 5
    assert messages[5] is not None
    assert "exploded to 12 at step 6" in messages[5]
    assert "for 4 steps" in messages[5]


# Batch losses of a real run (offline ViT-S/14, textiles, K = 1, linear, default preset, one step
# an epoch), steps 29-40: the same losses came back at learning rates of 1e-4, 1e-5 and 1e-6.
ONE_SHOT_CROP_LOSSES = (
    0.727,
    3.18,
    1.15,
    0.265,
    5.69,
    0.189,
    4.22,
    11.5,
    3.90,
    5.09,
    9.99,
    17.0,
    7.58,
)


def test_a_streak_the_starting_tensors_find_as_hard_is_forgiven() -> None:
    watch = LossWatch(chance_loss(LabelMode.SINGLE, 3), explode_patience(steps_per_epoch=1))
    asked: list[int] = []

    def start_loss() -> float:
        asked.append(len(asked))
        return 8.96  # the same batch at 1e-6

    messages = [
        watch.check(loss, step, 4e-5, start_loss)
        for step, loss in enumerate(ONE_SHOT_CROP_LOSSES, 1)
    ]
    assert messages == [None] * len(ONE_SHOT_CROP_LOSSES)
    assert (len(asked), watch.forgiven, watch.high_steps) == (1, 1, 0)


def test_a_streak_the_updates_caused_is_a_divergence() -> None:
    watch = LossWatch(chance_loss(LabelMode.SINGLE, 3), explode_patience(steps_per_epoch=1))
    messages = [
        watch.check(loss, step, 4e-5, lambda: 2.0)
        for step, loss in enumerate(ONE_SHOT_CROP_LOSSES, 1)
    ]
    assert messages[:-1] == [None] * (len(ONE_SHOT_CROP_LOSSES) - 1)
    assert messages[-1] is not None
    assert "exploded to 7.58 at step 13" in messages[-1]
    assert "3.79 x the starting model's on the same images" in messages[-1]
    assert watch.forgiven == 0


def test_at_a_learning_rate_of_zero_no_run_diverges() -> None:
    """A confident prototype head (scale 100) on hard crops: batch losses far above the first
    step's, for whole epochs, with tensors that never move; before the start-loss check this run
    was restarted twice and failed."""
    events = run(
        tuned(LinearConfig(), classes=3),
        tinted_images(6, classes=3),
        FAST.replace(
            lr=0.0,
            head_lr=0.0,
            epochs=20,
            head_init="prototype",
            prototype_scale=100.0,
            crop_scale=(0.08, 1.0),
        ),
    )
    assert not any(isinstance(e, RunRestarted) for e in events)
    assert isinstance(events[-1], RunFinished)
    losses = [e.loss for e in events if isinstance(e, StepFinished)]
    assert len(losses) == 40
    assert max(losses) > 5 * max(losses[0], math.log(3))


def test_short_epochs_keep_three_steps_of_patience() -> None:
    assert [explode_patience(n) for n in (1, 2, 3, 4, 8)] == [3, 3, 3, 4, 8]


def test_a_restart_starts_from_the_initial_tensors() -> None:
    samples = tinted_images(8, classes=2, tint=150)
    model = tuned(FullConfig(), classes=2)
    initial = {n: t.clone() for n, t in model.trainable_state().items()}
    seen: list[dict[str, torch.Tensor]] = []
    for event in train(
        model,
        samples,
        FAST.replace(lr=3.0, epochs=3),
        input_size=SIZE,
        mean=MEAN,
        std=STD,
        label_mode=LabelMode.SINGLE,
    ):
        if isinstance(event, RunRestarted):
            seen.append({n: t.clone() for n, t in model.trainable_state().items()})
    assert len(seen) == 1
    assert all(torch.equal(seen[0][n], initial[n]) for n in initial)


def test_broken_pixels_fail_at_once_without_restarts() -> None:
    samples = tinted_images(8, classes=2)
    samples[5] = (torch.full((3, 40, 40), float("nan")), 1)
    events = run(tuned(EptConfig(length=5), classes=2), samples, FAST.replace(hflip=False))
    assert not any(isinstance(e, RunRestarted) for e in events)
    failure = events[-1]
    assert isinstance(failure, RunFailed)
    assert "NaN or infinite pixel values" in failure.message


def test_no_retries_means_the_first_divergence_fails() -> None:
    events = run(
        tuned(FullConfig(), classes=2),
        tinted_images(8, classes=2, tint=150),
        FAST.replace(lr=3.0, epochs=3, divergence_retries=0),
    )
    assert not any(isinstance(e, RunRestarted) for e in events)
    assert isinstance(events[-1], RunFailed)
    assert "restarts" not in events[-1].message


def biased_towards_class_zero(classes: int = 2) -> TunedModel:
    model = tuned(LinearConfig(), classes=classes)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([10.0] + [-10.0] * (classes - 1)))
    return model


def test_a_one_class_model_is_reported_not_restarted_when_its_loss_did_not_rise() -> None:
    events = run(biased_towards_class_zero(), tinted_images(8, classes=2), FAST.replace(lr=0.0))
    assert not any(isinstance(e, RunRestarted) for e in events)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.warnings == (
        "the model predicts class 0 for every one of the 8 training images: it has not learned "
        "to tell the classes apart (try more steps, a prototype-initialised head, or a "
        "different learning rate)",
    )


def test_a_collapse_with_a_rising_loss_restarts_then_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(training_loop._TrainingRun, "loss_rose", lambda _self: True)
    events = run(biased_towards_class_zero(), tinted_images(8, classes=2), FAST.replace(lr=0.0))
    restarts = [e for e in events if isinstance(e, RunRestarted)]
    assert [(r.attempt, r.lr_scale) for r in restarts] == [(1, 0.1), (2, pytest.approx(0.01))]
    assert all("predicts class 0" in r.reason for r in restarts)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert finished.lr_scale == pytest.approx(0.01)
    assert len(finished.warnings) == 1


def test_a_healthy_run_has_no_warnings_and_full_rate() -> None:
    events = run(tuned(EptConfig(length=5), classes=2), tinted_images(8, 2, 150), FAST)
    finished = events[-1]
    assert isinstance(finished, RunFinished)
    assert (finished.lr_scale, finished.warnings) == (1.0, ())


# --- the step schedule and the presets ------------------------------------------------------------


def test_min_steps_raises_the_epochs_of_a_tiny_support_set() -> None:
    recipe = FAST.replace(epochs=2, min_steps=9)
    assert (recipe.epochs_for(8), recipe.total_steps(8)) == (5, 10)
    assert (recipe.epochs_for(40), recipe.total_steps(40)) == (2, 20)
    events = run(tuned(LinearConfig(), classes=2), tinted_images(8, classes=2), recipe)
    started = events[0]
    assert isinstance(started, RunStarted)
    assert (started.total_steps, started.total_epochs) == (10, 5)
    assert sum(isinstance(e, StepFinished) for e in events) == 10


def test_warmup_fraction_counts_a_share_of_the_run() -> None:
    recipe = TrainRecipe(warmup_fraction=0.1, warmup_steps=2)
    assert recipe.warmup_for(50) == 5
    assert recipe.warmup_for(11) == 2
    factors = [learning_rate_factor(step, 50, recipe) for step in range(6)]
    assert factors == [0.2, 0.4, 0.6, 0.8, 1.0, 1.0]


def test_the_presets() -> None:
    assert RECIPES == {"paper": PAPER_RECIPE, "default": DEFAULT_CANDIDATE_RECIPE}
    assert PAPER_RECIPE.head_init is HeadInit.NORMAL
    assert (PAPER_RECIPE.min_steps, PAPER_RECIPE.divergence_retries) == (0, 2)
    default = DEFAULT_CANDIDATE_RECIPE
    assert default.optimizer is OptimizerName.ADAMW
    assert (default.lr, default.head_learning_rate) == (3e-4, 3e-4)
    assert (default.method_learning_rate("full"), default.method_learning_rate("ept")) == (
        1e-5,
        3e-4,
    )
    assert PAPER_RECIPE.method_learning_rate("full") == 6e-4
    assert (default.epochs, default.min_steps, default.warmup_fraction) == (10, 50, 0.1)
    assert (default.grad_clip, default.crop_scale) == (1.0, (0.5, 1.0))
    assert default.head_init is HeadInit.PROTOTYPE
    assert default.total_steps(20) == 50  # 5 shots x 4 classes, batch 4
    assert default.total_steps(3) == 50  # 1 shot x 3 classes: 50 epochs of one step
    assert recipe_from_settings({}) == PAPER_RECIPE
    assert recipe_from_settings({"preset": "default", "seed": 3}) == default.replace(seed=3)
    with pytest.raises(ConfigError, match="unknown recipe preset 'fast'"):
        recipe_from_settings({"preset": "fast"})


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"min_steps": -1}, "min_steps"),
        ({"warmup_fraction": 1.0}, "warmup_fraction"),
        ({"warmup_fraction": -0.1}, "warmup_fraction"),
        ({"head_init": "zeros"}, "head_init must be one of"),
        ({"prototype_scale": 0.0}, "prototype_scale"),
        ({"divergence_retries": -1}, "divergence_retries"),
    ],
)
def test_new_recipe_settings_are_validated(changes: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        TrainRecipe(**changes)


def test_new_settings_round_trip_through_a_dict() -> None:
    data = DEFAULT_CANDIDATE_RECIPE.to_dict()
    assert data["head_init"] == "prototype"
    assert TrainRecipe.from_dict(data) == DEFAULT_CANDIDATE_RECIPE


# --- bf16 -----------------------------------------------------------------------------------------


def test_bf16_autocast_on_cpu_stays_close_to_float32() -> None:
    samples = tinted_images(8, classes=2, tint=100)
    recipe = FAST.replace(epochs=3, head_init="prototype")
    losses = {}
    for mode in ("off", "on"):
        events = run(tuned(EptConfig(length=5), classes=2), samples, recipe.replace(bf16=mode))
        assert isinstance(events[-1], RunFinished)
        losses[mode] = np.array([e.loss for e in events if isinstance(e, StepFinished)])
    assert np.isfinite(losses["on"]).all()
    np.testing.assert_allclose(losses["on"], losses["off"], atol=0.05)


# --- VPT on the real offline backbone -------------------------------------------------------------


@pytest.mark.slow
def test_vpt_token_init_keeps_the_dinov2_features_and_uniform_init_does_not() -> None:
    loaded = load_backbone()
    spec = loaded.spec
    images = [
        torch.from_numpy(image.copy()).permute(2, 0, 1)[:, :300, :300].contiguous()
        for image in (skimage.data.retina(), skimage.data.immunohistochemistry())
    ]
    pixels = batch_tensors(images, eval_transform(spec.input_size, spec.mean, spec.std))
    with torch.no_grad():
        frozen = loaded.model.forward_features(pixels)[:, 0]
    cosines = {}
    for init in ("tokens", "uniform"):
        torch.manual_seed(0)
        model = TunedModel(copy.deepcopy(loaded.model), VptConfig(init=init), 2)
        with torch.no_grad():
            cosines[init] = F.cosine_similarity(model.features(pixels), frozen).min().item()
    assert cosines["tokens"] > 0.99
    assert cosines["uniform"] < 0.5
