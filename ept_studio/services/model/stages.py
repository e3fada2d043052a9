"""Events every long service task shares."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class StageStarted:
    """A long step began (for a busy indicator): its description."""

    text: str
