"""Tuning methods: EPT and the baselines, one small module each, one registry."""

from __future__ import annotations

from typing import Any

from ept_studio.common.errors import ConfigError
from ept_studio.core.methods.base import MethodConfig, MethodName, TuningMethod
from ept_studio.core.methods.ept import Ept, EptConfig, EptEmbedding
from ept_studio.core.methods.lora import Lora, LoraConfig
from ept_studio.core.methods.simple import Bias, BiasConfig, Full, FullConfig, Linear, LinearConfig
from ept_studio.core.methods.vpt import Vpt, VptConfig

_REGISTRY: dict[MethodName, tuple[type[MethodConfig], type[TuningMethod]]] = {
    MethodName.EPT: (EptConfig, Ept),
    MethodName.LINEAR: (LinearConfig, Linear),
    MethodName.FULL: (FullConfig, Full),
    MethodName.BIAS: (BiasConfig, Bias),
    MethodName.VPT: (VptConfig, Vpt),
    MethodName.LORA: (LoraConfig, Lora),
}


def build_method(config: MethodConfig) -> TuningMethod:
    """The method object for ``config``."""
    _, method_type = _REGISTRY[config.method]
    return method_type(config)  # type: ignore[call-arg]


def config_from_dict(data: dict[str, Any]) -> MethodConfig:
    """Rebuild a config from :meth:`MethodConfig.to_dict`; unknown keys are an error."""
    data = dict(data)
    try:
        name = MethodName(data.pop("method"))
    except (KeyError, ValueError) as err:
        raise ConfigError(f"unknown tuning method in {data!r}") from err
    config_type, _ = _REGISTRY[name]
    known = {f for f in config_type.__dataclass_fields__}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown settings for {name.value}: {sorted(unknown)}")
    if isinstance(data.get("blocks"), list):
        data["blocks"] = tuple(data["blocks"])
    try:
        return config_type(**data)
    except TypeError as err:
        raise ConfigError(f"bad settings for {name.value}: {err}") from err


def default_config(name: MethodName | str) -> MethodConfig:
    """The default config of a method."""
    config_type, _ = _REGISTRY[MethodName(name)]
    return config_type()


__all__ = [
    "BiasConfig",
    "EptConfig",
    "EptEmbedding",
    "FullConfig",
    "LinearConfig",
    "LoraConfig",
    "MethodConfig",
    "MethodName",
    "TuningMethod",
    "VptConfig",
    "build_method",
    "config_from_dict",
    "default_config",
]
