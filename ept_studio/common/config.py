"""Helpers shared by the frozen config dataclasses of every layer."""

from __future__ import annotations

import dataclasses
from enum import Enum
from typing import Any


def to_json_dict(config: Any) -> dict[str, Any]:
    """A dataclass instance as JSON-ready data: enums as their values, tuples as lists."""
    data: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, Enum):
            value = value.value
        elif isinstance(value, tuple):
            value = list(value)
        data[field.name] = value
    return data
