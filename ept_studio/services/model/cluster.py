"""Reaching a Ray cluster, for the commands that can spread their work over one (``--ray``).

Ray is an optional extra (``pip install 'ept-studio[cluster]'``): it is imported only here, only
when a command is given ``--ray``, and the desktop app never uses it. ``address`` is what the
user typed after ``--ray``: ``local`` (a Ray started for this command on this computer and stopped
with it), ``auto`` (the cluster started on this computer with ``ray start --head``) or the head
node's ``HOST:PORT``.
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

from ept_studio.common.errors import ConfigError

RAY_MISSING = "Ray is not installed: pip install 'ept-studio[cluster]'"
LOCAL_RAY = "local"


def require_ray() -> ModuleType:
    """The ``ray`` module, or a :class:`ConfigError` that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as err:
        raise ConfigError(RAY_MISSING) from err


def connect_ray(address: str) -> ModuleType:
    """Join the cluster at ``address`` (see the module docstring), unless this process already
    has; the ``ray`` module."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    options: dict[str, object] = {"logging_level": logging.WARNING}
    try:
        if address == LOCAL_RAY:
            ray.init(include_dashboard=False, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {err}") from err
    return ray


def gpus_per_task(ray: ModuleType) -> int:
    """One GPU a task when the cluster has any, else none (the tasks run on the CPUs)."""
    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
