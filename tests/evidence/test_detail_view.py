"""The bench's detail view: a trained run's query probabilities averaged with the prototype's on
the backbone built for a larger input, equal to combining the two runs made apart."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skimage.data
import torch
from support import make_tiny_vit

from ept_studio.common.errors import ConfigError
from ept_studio.core.backbones import random_backbone
from ept_studio.core.backbones.loader import LoadedBackbone, freeze
from ept_studio.core.detail import combine_logits
from ept_studio.core.methods import EptConfig, LinearConfig
from ept_studio.core.model import LabelMode
from ept_studio.core.training import PAPER_RECIPE
from ept_studio.evidence.protocol import (
    PROTOTYPE_BASELINE,
    FewShotPool,
    ProtocolConfig,
    explicit_draw,
    plan_draws,
    plan_episodes,
    run_episode,
)

RECIPE = PAPER_RECIPE.replace(epochs=2, device="cpu", lr=0.05)


def backbone_at(size: int) -> LoadedBackbone:
    spec = random_backbone("vit_tiny_patch16_224", seed=0).spec
    return LoadedBackbone(
        freeze(make_tiny_vit(img_size=size)),
        dataclasses.replace(spec, input_size=size),
        f"tiny-{size}",
        None,
    )


@pytest.fixture(scope="module")
def faces() -> tuple[FewShotPool, list[torch.Tensor]]:
    crops = skimage.data.lfw_subset()
    chosen = list(range(8)) + list(range(100, 108))
    images = [
        torch.from_numpy((crops[i] * 255).astype(np.uint8)).expand(3, -1, -1).contiguous()
        for i in chosen
    ]
    pool = FewShotPool(
        tuple([0] * 8 + [1] * 8), ("face", "other"), LabelMode.SINGLE, tuple(map(str, range(16)))
    )
    return pool, images


def test_the_detail_view_equals_the_two_runs_combined(
    faces: tuple[FewShotPool, list[torch.Tensor]],
) -> None:
    pool, images = faces
    config = ProtocolConfig(shots=(2,), draws=1, seeds=1, queries_per_class=4)
    draw = plan_draws(pool, config)[0]
    methods = {"ept": EptConfig(length=2), PROTOTYPE_BASELINE: LinearConfig()}
    tuned_episode, prototype_episode = plan_episodes([draw], methods, config)
    small, large = backbone_at(32), backbone_at(64)

    alone = run_episode(tuned_episode, pool, images.__getitem__, small, RECIPE)
    prototype_large = run_episode(prototype_episode, pool, images.__getitem__, large, RECIPE)
    both = run_episode(tuned_episode, pool, images.__getitem__, small, RECIPE, detail=large)

    expected = combine_logits(alone.logits, prototype_large.logits)
    np.testing.assert_allclose(both.logits, expected, atol=1e-5)
    np.testing.assert_allclose(
        both.probabilities,
        (
            torch.from_numpy(alone.logits).softmax(-1)
            + torch.from_numpy(prototype_large.logits).softmax(-1)
        ).numpy()
        / 2,
        atol=1e-5,
    )
    assert both.metrics["accuracy"] == pytest.approx(
        float(np.mean(both.probabilities.argmax(axis=1) == both.targets))
    )
    assert not np.allclose(both.logits, alone.logits, atol=1e-3)
    # the prototype baseline is the plain prototype, with or without the detail view
    again = run_episode(prototype_episode, pool, images.__getitem__, small, RECIPE, detail=large)
    prototype_small = run_episode(prototype_episode, pool, images.__getitem__, small, RECIPE)
    np.testing.assert_array_equal(again.logits, prototype_small.logits)


def test_the_detail_view_refuses_multi_label_pools(
    faces: tuple[FewShotPool, list[torch.Tensor]],
) -> None:
    _, images = faces
    targets = tuple((1.0, 0.0) if i < 8 else (0.0, 1.0) for i in range(16))
    pool = FewShotPool(targets, ("a", "b"), LabelMode.MULTI, tuple(map(str, range(16))))
    config = ProtocolConfig(shots=(2,), draws=1, seeds=1)
    draw = explicit_draw(pool, 2, 0, (0, 1, 8, 9), (2, 3, 10, 11))
    episode = plan_episodes([draw], {"linear": LinearConfig()}, config)[0]
    with pytest.raises(ConfigError, match="single-label"):
        run_episode(
            episode, pool, images.__getitem__, backbone_at(32), RECIPE, detail=backbone_at(64)
        )


def test_a_sweep_with_the_detail_view_records_its_size_and_refuses_a_smaller_one(
    tmp_path: Path,
) -> None:
    from support import tiny_backbone

    from ept_studio.core.backbones import backbone_at_size
    from ept_studio.evidence.accuracy import AccuracyRequest, AccuracySaved, run_accuracy

    settings: dict[str, Any] = {
        "dataset": "lfw-faces",
        "shots": (1,),
        "draws": 1,
        "seeds": 1,
        "methods": ("prototype", "linear"),
        "recipe": {"epochs": 1, "batch_size": 4, "device": "cpu"},
        "queries_per_class": 4,
        "calibration_resplits": 20,
    }
    plain_events = list(
        run_accuracy(AccuracyRequest(out=tmp_path / "plain", **settings), tiny_backbone())
    )
    detail_request = AccuracyRequest(out=tmp_path / "detail", detail_size=64, **settings)
    detail = backbone_at_size(tiny_backbone(), 64)
    events = list(run_accuracy(detail_request, tiny_backbone(), detail=detail))
    plain, saved = plain_events[-1], events[-1]
    assert isinstance(plain, AccuracySaved)
    assert isinstance(saved, AccuracySaved)
    document = json.loads(saved.results_json.read_text(encoding="utf-8"))
    before = json.loads(plain.results_json.read_text(encoding="utf-8"))
    assert document["protocol"]["detail_size"] == 64
    assert before["protocol"]["detail_size"] is None
    # the prototype baseline is untouched; the trained method's scores are combined
    runs = {run["method"]: run for run in document["runs"]}
    old = {run["method"]: run for run in before["runs"]}
    assert runs["prototype"]["query_scores"] == old["prototype"]["query_scores"]
    assert runs["linear"]["query_scores"]["logits"] != old["linear"]["query_scores"]["logits"]
    with pytest.raises(ConfigError, match="--detail 32 must be larger than the 32 px"):
        list(
            run_accuracy(
                AccuracyRequest(out=tmp_path / "same", detail_size=32, **settings),
                tiny_backbone(),
                detail=tiny_backbone(),
            )
        )
