"""The trained share: a run keeps ``trained_share`` of what training changed, the rest is the
prototype classifier it started from (weight-space interpolation of every trainable tensor)."""

from __future__ import annotations

import pytest
import torch
from test_few_shot import PROTOTYPE_ONLY, run, tinted_images, tuned

from ept_studio.common.errors import ConfigError
from ept_studio.core.methods import EptConfig, LinearConfig, MethodConfig
from ept_studio.core.training import RunFinished, TrainRecipe

TRAINED = TrainRecipe(
    lr=0.05, head_lr=0.05, epochs=2, batch_size=4, device="cpu", head_init="prototype", bf16="off"
)


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def trained_state(method: MethodConfig, recipe: TrainRecipe) -> dict[str, torch.Tensor]:
    model = tuned(method)
    events = run(model, tinted_images(12), recipe)
    assert isinstance(events[-1], RunFinished)
    return {name: tensor.clone() for name, tensor in model.trainable_state().items()}


@pytest.mark.parametrize("method", [LinearConfig(), EptConfig(length=5)], ids=str)
def test_a_share_is_the_same_point_between_the_start_and_the_trained_tensors(
    method: MethodConfig,
) -> None:
    start = trained_state(method, PROTOTYPE_ONLY.replace(bf16="off"))
    full = trained_state(method, TRAINED)
    kept = trained_state(method, TRAINED.replace(trained_share=0.25))
    moved = max(float((full[name] - start[name]).abs().max()) for name in start)
    assert moved > 1e-3  # training changed the tensors, so the share has something to shrink
    for name, tensor in kept.items():
        torch.testing.assert_close(tensor, start[name] + 0.25 * (full[name] - start[name]))


def test_a_share_of_zero_is_the_prototype_classifier() -> None:
    start = trained_state(LinearConfig(), PROTOTYPE_ONLY.replace(bf16="off"))
    none_kept = trained_state(LinearConfig(), TRAINED.replace(trained_share=0.0))
    for name, tensor in none_kept.items():
        torch.testing.assert_close(tensor, start[name])


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"trained_share": 1.5, "head_init": "prototype"}, "trained_share must be"),
        ({"trained_share": -0.1, "head_init": "prototype"}, "trained_share must be"),
        ({"trained_share": 0.5, "head_init": "normal"}, "needs head_init='prototype'"),
    ],
)
def test_a_share_outside_0_1_or_without_the_prototype_start_is_refused(
    changes: dict, fragment: str
) -> None:
    with pytest.raises(ConfigError, match=fragment):
        TrainRecipe(**changes)


def test_the_summary_says_how_much_of_the_training_is_kept() -> None:
    recipe = TrainRecipe(head_init="prototype", trained_share=0.5)
    assert "keeps 50% of the trained change" in recipe.summary()
    assert "keeps" not in TrainRecipe(head_init="prototype").summary()
