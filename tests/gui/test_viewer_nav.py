"""Previous / next through the gallery's list, also when the shown image has left the list."""

from __future__ import annotations

import pytest

from ept_studio.gui.viewer_nav import position_text, sequence_step

IDS = [7, 3, 9, 4]


@pytest.mark.parametrize(
    ("current", "step", "expected"),
    [
        (3, +1, 9),
        (3, -1, 7),
        (7, -1, None),  # no wrapping at either end
        (4, +1, None),
        (None, +1, 7),  # nothing shown yet: next is the first, previous the last
        (None, -1, 4),
    ],
)
def test_steps_in_the_listed_order(current: int | None, step: int, expected: int | None) -> None:
    assert sequence_step(IDS, current, step) == expected


def test_an_image_that_left_the_list_is_followed_by_the_one_in_its_place() -> None:
    # 9 stood at place 2 of [7, 3, 9, 4]; labelled, it left an "Unlabelled" list
    remaining = [7, 3, 4]
    assert sequence_step(remaining, 9, +1, hint=2) == 4
    assert sequence_step(remaining, 9, -1, hint=2) == 3
    assert sequence_step(remaining, 4, +1, hint=2) is None
    assert sequence_step([7, 3], 4, +1, hint=2) is None  # it was the last one
    assert sequence_step([7, 3], 4, -1, hint=2) == 3


def test_empty_list_goes_nowhere() -> None:
    assert sequence_step([], 3, +1) is None
    assert sequence_step([], None, -1) is None


def test_position_text() -> None:
    assert position_text(IDS, 9) == "3 of 4"
    assert position_text(IDS, 5) == "– of 4"
    assert position_text([], 5) == ""
