"""Helpers shared by the frozen config dataclasses of every layer."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

_Config = TypeVar("_Config")


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


def from_json_block(cls: type[_Config], data: object, block: str) -> _Config:
    """A dataclass rebuilt from its JSON object; ValueError naming the block and what is missing.

    The dataclass's own ``__post_init__`` checks the values.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f"the {block} block must be a JSON object")
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    missing = [name for name in names if name not in data]
    if missing:
        raise ValueError(f"the {block} block is missing {missing}")
    return cls(**{name: data[name] for name in names})


def is_finite_number(value: object) -> bool:
    """An int or float (not a bool) that is finite: what a JSON number field may hold."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
