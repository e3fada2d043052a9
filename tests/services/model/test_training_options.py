"""The Train tab's options become a recipe: the learning-rate box reaches the tensors it names."""

from __future__ import annotations

import pytest

from ept_studio.common.errors import ConfigError
from ept_studio.core.training import recipe_from_settings
from ept_studio.services.model.training_options import (
    DEFAULT_TRAINED_SHARE,
    PROTOTYPE_START_RECIPES,
    TrainingOptions,
)


def test_only_the_settings_the_user_changed_override_the_preset() -> None:
    overrides = TrainingOptions(method="ept", device="cpu").recipe_overrides()
    assert overrides == {"device": "cpu", "preset": "default", "trained_share": 0.5}
    recipe = recipe_from_settings(overrides)
    assert (recipe.lr, recipe.head_learning_rate) == (3e-4, 3e-4)


def test_the_learning_rate_box_sets_the_rate_the_method_trains_at() -> None:
    ept = recipe_from_settings(TrainingOptions(method="ept", learning_rate=1e-3).recipe_overrides())
    assert ept.method_learning_rate("ept") == 1e-3
    full_options = TrainingOptions(method="full", learning_rate=2e-5, epochs=3)
    assert full_options.recipe_overrides() == {
        "full_lr": 2e-5,
        "epochs": 3,
        "device": "auto",
        "preset": "default",
        "trained_share": 0.5,
    }
    full = recipe_from_settings(full_options.recipe_overrides())
    assert (full.method_learning_rate("full"), full.head_learning_rate) == (2e-5, 3e-4)
    paper_full = TrainingOptions(method="full", recipe="paper", learning_rate=2e-5)
    assert recipe_from_settings(paper_full.recipe_overrides()).method_learning_rate("full") == 2e-5


def test_unknown_presets_and_devices_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'fast'"):
        TrainingOptions(recipe="fast")
    with pytest.raises(ConfigError, match="device must be"):
        TrainingOptions(device="tpu")


@pytest.mark.parametrize("preset", ["default", "paper"])
def test_each_recipe_choice_says_what_its_preset_is(preset: str) -> None:
    from ept_studio.core.training.recipe import RECIPES
    from ept_studio.services.model.training_options import recipe_choice

    assert recipe_choice(preset).summary == RECIPES[preset].summary()


def test_the_recipe_and_method_names_are_short() -> None:
    from ept_studio.services.model.training_options import METHOD_CHOICES, RECIPE_CHOICES

    assert [c.label for c in RECIPE_CHOICES] == ["Few-shot default", "Paper's recipe"]
    assert max(len(c.label) for c in METHOD_CHOICES) <= 24


def test_a_recipe_summary_names_each_rate_that_differs() -> None:
    from ept_studio.core.training.recipe import RECIPES

    changed = RECIPES["default"].replace(head_lr=3e-3, full_lr=None, min_steps=0, epochs=7)
    assert changed.summary() == "AdamW 3e-4, head 3e-3, prototype head, 7 epochs, batch 4"
    assert RECIPES["paper"].replace(lr=0.02).summary() == "SGD 0.02, 20 epochs, batch 4"


@pytest.mark.parametrize("key", ["ept", "ept-add", "ept-multi", "ept-multi_cat"])
def test_each_ept_method_says_its_prompts_enter_the_attention_logits(key: str) -> None:
    from ept_studio.services.model.training_options import method_choice

    description = method_choice(key).description
    assert "attention logits" in description
    assert "patch embedding" not in description


def test_the_coverage_is_ninety_percent_unless_chosen() -> None:
    assert TrainingOptions().coverage == 0.90
    assert TrainingOptions(coverage=0.8).coverage == 0.8
    assert TrainingOptions().calibrate_on_test is False


@pytest.mark.parametrize("coverage", [0.49, 1.0, 1.5, -0.1])
def test_a_coverage_outside_a_half_to_one_is_refused_in_plain_words(coverage: float) -> None:
    with pytest.raises(ConfigError, match="how often a prediction set should contain"):
        TrainingOptions(coverage=coverage)


def test_bf16_overrides_the_recipe_only_when_chosen() -> None:
    assert "bf16" not in TrainingOptions().recipe_overrides()
    assert recipe_from_settings(TrainingOptions().recipe_overrides()).bf16.value == "auto"
    for setting in ("on", "off"):
        overrides = TrainingOptions(bf16=setting).recipe_overrides()
        assert overrides["bf16"] == setting
        assert recipe_from_settings(overrides).bf16.value == setting
    with pytest.raises(ConfigError, match="bf16 must be auto, on or off, not 'fast'"):
        TrainingOptions(bf16="fast")


def test_the_app_keeps_half_of_the_training_unless_told_otherwise() -> None:
    assert TrainingOptions().recipe_overrides()["trained_share"] == DEFAULT_TRAINED_SHARE == 0.5
    assert recipe_from_settings(TrainingOptions().recipe_overrides()).trained_share == 0.5
    overrides = TrainingOptions(trained_share=0.25).recipe_overrides()
    assert overrides["trained_share"] == 0.25
    assert recipe_from_settings(overrides).trained_share == 0.25
    assert "trained_share" not in TrainingOptions(trained_share=None).recipe_overrides()
    with pytest.raises(ConfigError, match="share of training to keep must be between 0 and 1"):
        TrainingOptions(trained_share=1.5)


def test_only_recipes_that_start_from_the_prototypes_take_a_share() -> None:
    from ept_studio.core.training import RECIPES, HeadInit

    starts = {name for name, r in RECIPES.items() if r.head_init is HeadInit.PROTOTYPE}
    assert starts == PROTOTYPE_START_RECIPES
    paper = TrainingOptions(recipe="paper").recipe_overrides()
    assert "trained_share" not in paper
    assert recipe_from_settings(paper).trained_share == 1.0
