"""The Train tab's "Keep of what training learned" box (offscreen, the real window): 50 % unless the
user sets another, a percentage as a fraction of the run's recipe, said in the plan, and off under
the paper's recipe, which does not start from the prototype classifier."""

from __future__ import annotations

import pytest
from pytestqt.qtbot import QtBot

from ept_studio.core.training import recipe_from_settings
from ept_studio.gui.main_window import MainWindow

pytestmark = pytest.mark.gui


def test_the_share_box_reaches_the_recipe_and_is_off_for_the_paper_recipe(
    qtbot: QtBot, window: MainWindow
) -> None:
    panel = window.training
    box = panel.advanced.trained_share
    assert box.isEnabled()
    assert box.value() == 50
    assert panel.options().trained_share == 0.5
    assert "0 % is the prototype classifier" in box.toolTip()

    box.setValue(25)
    assert panel.options().trained_share == 0.25
    recipe = recipe_from_settings(panel.options().recipe_overrides())
    assert recipe.trained_share == 0.25
    assert "keeps 25% of the trained change" in recipe.summary()

    recipe_box = panel.advanced.recipe
    recipe_box.setCurrentIndex(recipe_box.findData("paper"))
    assert not box.isEnabled()
    assert panel.options().kept_share() is None
    assert "trained_share" not in panel.options().recipe_overrides()
    recipe_box.setCurrentIndex(recipe_box.findData("default"))
    assert box.isEnabled()
    assert panel.options().trained_share == 0.25
