"""The K-shot protocol: draws, group-disjoint queries, episodes, and the statistics over runs."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import skimage.data
import torch
from support import make_tiny_vit
from support import tiny_backbone as small_random_backbone

from ept_studio.common.errors import ConfigError
from ept_studio.core.backbones import random_backbone
from ept_studio.core.backbones.loader import LoadedBackbone, freeze
from ept_studio.core.methods import EptConfig, LinearConfig
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training import (
    PAPER_RECIPE,
    Sample,
    TrainRecipe,
    nearest_centroid_predict,
    support_features,
)
from ept_studio.core.training.evaluation import target_tensor
from ept_studio.evidence.protocol import (
    PROTOTYPE_BASELINE,
    EpisodeResult,
    FewShotPool,
    ProtocolConfig,
    draw_support,
    explicit_draw,
    method_configs,
    plan_draws,
    plan_episodes,
    run_episode,
)
from ept_studio.evidence.protocol_stats import (
    bootstrap_ci,
    mean_sd,
    metric_function,
    reliability_bins,
    summarise,
)

RECIPE = PAPER_RECIPE.replace(epochs=2, device="cpu", lr=0.05)
FAST = TrainRecipe(lr=0.05, epochs=2, batch_size=4, device="cpu")


def tiny_backbone() -> LoadedBackbone:
    spec = dataclasses.replace(random_backbone("vit_tiny_patch16_224", seed=0).spec, input_size=32)
    return LoadedBackbone(freeze(make_tiny_vit()), spec, "tiny-test", None)


def pool_of(targets: list[int], groups: list[str] | None = None) -> FewShotPool:
    names = tuple(f"class{c}" for c in range(max(targets) + 1))
    return FewShotPool(
        tuple(targets),
        names,
        LabelMode.SINGLE,
        tuple(groups or [str(i) for i in range(len(targets))]),
    )


@pytest.fixture(scope="module")
def faces() -> tuple[FewShotPool, list[torch.Tensor]]:
    """24 real images: 12 LFW faces and 12 non-face crops (scikit-image's bundled subset)."""
    crops = skimage.data.lfw_subset()
    chosen = list(range(12)) + list(range(100, 112))
    images = [
        torch.from_numpy((crops[i] * 255).astype(np.uint8)).expand(3, -1, -1).contiguous()
        for i in chosen
    ]
    return pool_of([0] * 12 + [1] * 12), images


def test_a_draw_has_k_per_class_and_a_disjoint_query() -> None:
    pool = pool_of([0] * 10 + [1] * 7 + [2] * 4)
    draw = draw_support(pool, 3, 0, ProtocolConfig(queries_per_class=2))
    labels = [pool.targets[i] for i in draw.support]
    assert sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert not set(draw.support) & set(draw.query)
    assert sorted(pool.targets[i] for i in draw.query) == [0, 0, 1, 1, 2]  # class 2: 4 - 3 left
    assert draw.classes == (0, 1, 2)


def test_draws_are_seeded_and_differ_between_draws() -> None:
    pool = pool_of([0] * 20 + [1] * 20)
    config = ProtocolConfig(draws=3)
    first, again = plan_draws(pool, config), plan_draws(pool, config)
    assert [d.support for d in first] == [d.support for d in again]
    assert len({d.support for d in first if d.shots == 1}) == 3
    other = plan_draws(pool, dataclasses.replace(config, seed=1))
    assert [d.support for d in other] != [d.support for d in first]


def test_a_class_too_small_for_k_is_dropped_with_a_note() -> None:
    pool = pool_of([0] * 10 + [1] * 10 + [2] * 3)
    draw = draw_support(pool, 5, 0, ProtocolConfig())
    assert draw.classes == (0, 1)
    assert draw.notes == ("class2: 3 images, too few for 5 support + 1 query",)
    assert all(pool.targets[i] != 2 for i in draw.support + draw.query)


def test_the_query_never_shares_a_group_with_the_support() -> None:
    # Class 1 is two files of three frames each: one file gives the support, the other the query.
    groups = [f"a{i}" for i in range(6)] + ["f1", "f1", "f1", "f2", "f2", "f2"]
    pool = pool_of([0] * 6 + [1] * 6, groups)
    for draw_index in range(5):
        draw = draw_support(pool, 1, draw_index, ProtocolConfig())
        support_groups = {groups[i] for i in draw.support}
        assert not support_groups & {groups[i] for i in draw.query}
        assert sum(pool.targets[i] == 1 for i in draw.query) == 3


def test_a_class_whose_query_would_be_empty_is_dropped() -> None:
    pool = pool_of([0] * 6 + [1] * 3, [f"a{i}" for i in range(6)] + ["one"] * 3)
    draw = draw_support(pool, 1, 0, ProtocolConfig())
    assert draw.classes == (0,)
    assert "no query image left outside the support's groups" in draw.notes[0]
    assert plan_episodes([draw], {"linear": LinearConfig()}, ProtocolConfig()) == []


def test_episodes_share_support_and_seed_across_methods() -> None:
    pool = pool_of([0] * 5 + [1] * 5)
    config = ProtocolConfig(shots=(1, 2), draws=2, seeds=3)
    methods = {"ept": EptConfig(length=4), "linear": LinearConfig()}
    episodes = plan_episodes(plan_draws(pool, config), methods, config)
    assert len(episodes) == 2 * 2 * 3 * 2
    for ept, linear in zip(episodes[::2], episodes[1::2], strict=True):
        assert (ept.method, linear.method) == ("ept", "linear")
        assert ept.draw == linear.draw
        assert ept.seed == linear.seed
    assert len({e.seed for e in episodes}) == 12


def test_protocol_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="1000 bootstrap"):
        ProtocolConfig(resamples=200)
    with pytest.raises(ConfigError, match="shots"):
        ProtocolConfig(shots=(0,))
    with pytest.raises(ConfigError, match="groups"):
        FewShotPool((0, 1), ("a", "b"), LabelMode.SINGLE, ("g",))


def test_a_run_trains_and_measures_on_real_images(
    faces: tuple[FewShotPool, list[torch.Tensor]],
) -> None:
    pool, images = faces
    config = ProtocolConfig(shots=(2,), draws=1, seeds=1, queries_per_class=5)
    draw = plan_draws(pool, config)[0]
    episode = plan_episodes([draw], {"ept": EptConfig(length=4)}, config)[0]
    result = run_episode(episode, pool, images.__getitem__, tiny_backbone(), RECIPE)
    assert (result.support_size, result.query_size) == (4, 10)
    assert result.probabilities.shape == (10, 2)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert result.metrics["accuracy"] == pytest.approx(
        float(np.mean(result.probabilities.argmax(axis=1) == result.targets))
    )
    assert result.trainable_parameters == 2 * 17 * 4 + 64 * 2 + 2
    again = run_episode(episode, pool, images.__getitem__, tiny_backbone(), RECIPE)
    np.testing.assert_array_equal(result.probabilities, again.probabilities)


def test_holding_out_trains_on_four_fifths_and_keeps_the_best_epoch(
    faces: tuple[FewShotPool, list[torch.Tensor]],
) -> None:
    pool, images = faces
    config = ProtocolConfig(shots=(5,), draws=1, seeds=1, queries_per_class=5, hold_out=True)
    draw = plan_draws(pool, config)[0]
    methods = {"prototype": LinearConfig(), "linear": LinearConfig()}
    prototype, linear = plan_episodes([draw], methods, config)
    backbone = tiny_backbone()
    recipe = RECIPE.replace(epochs=4)
    held = run_episode(linear, pool, images.__getitem__, backbone, recipe, hold_out=True)
    assert (held.support_size, held.held_out_size, held.query_size) == (8, 2, 10)
    assert held.best_epoch in {1, 2, 3, 4}
    whole = run_episode(linear, pool, images.__getitem__, backbone, recipe)
    assert (whole.support_size, whole.held_out_size, whole.best_epoch) == (10, 0, None)
    assert not np.array_equal(held.probabilities, whole.probabilities)
    # the prototype does not train, so it keeps every support image
    baseline = run_episode(prototype, pool, images.__getitem__, backbone, recipe, hold_out=True)
    assert (baseline.support_size, baseline.held_out_size) == (10, 0)
    # fewer than 5 a class: nothing to hold out, the fixed step budget decides
    small = plan_episodes(plan_draws(pool, ProtocolConfig(shots=(4,), draws=1)), methods, config)
    four = run_episode(small[1], pool, images.__getitem__, backbone, recipe, hold_out=True)
    assert (four.support_size, four.held_out_size, four.best_epoch) == (8, 0, None)


def test_the_summary_of_real_runs_brackets_the_mean(
    faces: tuple[FewShotPool, list[torch.Tensor]],
) -> None:
    pool, images = faces
    config = ProtocolConfig(shots=(1, 3), draws=2, seeds=1, queries_per_class=6)
    methods = {"linear": LinearConfig(), "ept": EptConfig(length=4)}
    episodes = plan_episodes(plan_draws(pool, config), methods, config)
    backbone = tiny_backbone()
    results = [run_episode(e, pool, images.__getitem__, backbone, RECIPE) for e in episodes]
    summaries = summarise(results, LabelMode.SINGLE, config)
    assert [(s.method, s.shots) for s in summaries] == [
        ("linear", 1),
        ("ept", 1),
        ("linear", 3),
        ("ept", 3),
    ]
    for summary in summaries:
        runs = [r for r in results if (r.method, r.shots) == (summary.method, summary.shots)]
        values = [r.metrics["accuracy"] for r in runs]
        assert summary.runs == 2
        assert summary.mean == pytest.approx(np.mean(values))
        assert summary.sd == pytest.approx(np.std(values, ddof=1))
        assert 0.0 <= summary.ci_low <= summary.mean <= summary.ci_high <= 1.0
        assert sum(b.count for b in summary.reliability) == sum(r.query_size for r in runs)
    assert summarise(results, LabelMode.SINGLE, config) == summaries


def make_result(probabilities: np.ndarray, targets: np.ndarray, accuracy: float) -> EpisodeResult:
    return EpisodeResult(
        method="m",
        shots=1,
        draw=0,
        seed=0,
        classes=(0, 1),
        support_size=2,
        query_size=len(targets),
        metrics={"accuracy": accuracy, "macro_auc": 0.5, "ece": 0.1},
        probabilities=probabilities,
        targets=targets,
        train_seconds=0.0,
        trainable_parameters=1,
        device="cpu",
    )


def test_the_bootstrap_is_seeded_and_sized_by_the_query() -> None:
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 2, 40)
    correct = rng.random(40) < 0.75
    predicted = np.where(correct, targets, 1 - targets)
    probabilities = np.eye(2)[predicted] * 0.8 + 0.1
    run = make_result(probabilities, targets, float(correct.mean()))
    accuracy = metric_function(LabelMode.SINGLE)
    low, high = bootstrap_ci([run], accuracy, 1000, 0.95, seed=3)
    assert (low, high) == bootstrap_ci([run], accuracy, 1000, 0.95, seed=3)
    assert low < correct.mean() < high
    # Binomial standard error at n = 40 is about 6.8 points: the interval spans about 4 of them.
    assert 0.18 < high - low < 0.34
    # Two runs with the same predictions: the same centre, a narrower interval (80 query images).
    low2, high2 = bootstrap_ci([run, run], accuracy, 1000, 0.95, seed=3)
    assert high2 - low2 < high - low


def test_multi_label_runs_use_map_and_binary_reliability() -> None:
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probabilities = np.array([[0.9, 0.2], [0.1, 0.7], [0.6, 0.8], [0.3, 0.4]])
    run = make_result(probabilities, targets, 1.0)
    assert metric_function(LabelMode.MULTI)(probabilities, targets) == pytest.approx(1.0)
    bins = reliability_bins([run], 5)
    assert sum(b.count for b in bins) == 8
    pool = FewShotPool(((1, 0), (0, 1), (1, 1)), ("a", "b"), LabelMode.MULTI, ("x", "y", "z"))
    draw = explicit_draw(pool, 1, 0, (0, 1), (1, 2))
    assert draw.classes == (0, 1)
    assert draw.notes == ("1 query images are also support images",)
    with pytest.raises(ConfigError, match="single-label"):
        draw_support(pool, 1, 0, ProtocolConfig())


def test_mean_sd_ignores_nan_and_handles_one_value() -> None:
    assert mean_sd([0.5]) == (0.5, 0.0)
    mean, sd = mean_sd([0.2, math.nan, 0.4])
    assert mean == pytest.approx(0.3)
    assert sd == pytest.approx(math.sqrt(0.02))
    assert all(math.isnan(v) for v in mean_sd([math.nan]))


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


def test_the_protocol_runs_the_prototype_baseline_without_training() -> None:
    samples = tinted_images(30, classes=2, tint=60)
    pool = FewShotPool(
        tuple(int(t) for _, t in samples),  # type: ignore[call-overload]
        ("a", "b"),
        LabelMode.SINGLE,
        tuple(str(i) for i in range(30)),
    )
    images = [image for image, _ in samples]
    config = ProtocolConfig(shots=(3,), draws=1, seeds=1)
    methods = method_configs([PROTOTYPE_BASELINE, "linear"])
    assert methods == {"prototype": LinearConfig(), "linear": LinearConfig()}
    episode = plan_episodes(plan_draws(pool, config), methods, config)[0]
    backbone = small_random_backbone()
    result = run_episode(episode, pool, images.__getitem__, backbone, FAST)
    model = TunedModel(copy.deepcopy(backbone.model), LinearConfig(), 2)
    spec = backbone.spec
    support = [images[i] for i in episode.draw.support]
    query = [images[i] for i in episode.draw.query]
    labels = target_tensor([pool.targets[i] for i in episode.draw.support], LabelMode.SINGLE, 2)
    support_f = support_features(
        model, support, input_size=spec.input_size, mean=spec.mean, std=spec.std
    )
    query_f = support_features(
        model, query, input_size=spec.input_size, mean=spec.mean, std=spec.std
    )
    expected = nearest_centroid_predict(support_f, labels, query_f).numpy()
    np.testing.assert_array_equal(result.probabilities.argmax(1), expected)
    assert result.failure is None
    assert result.metrics["accuracy"] == pytest.approx(float(np.mean(expected == result.targets)))
    assert 0.5 < result.metrics["accuracy"] <= 1.0
