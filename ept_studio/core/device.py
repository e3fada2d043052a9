"""Which compute device a run uses, how to name it for people, and whether it does bfloat16 well."""

from __future__ import annotations

import gc
from pathlib import Path

import torch

from ept_studio.common.errors import ConfigError, DeviceError
from ept_studio.core import bf16


def resolve_device(requested: str = "auto") -> torch.device:
    """``auto``: a CUDA GPU if PyTorch sees one, else Apple's MPS, else the CPU.

    An explicit ``cuda``, ``cuda:N`` or ``mps`` that this machine lacks is a :class:`DeviceError`.
    """
    name = requested.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DeviceError("the Apple GPU (MPS) is not available here: choose 'auto' or 'cpu'")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        return _cuda_device(name)
    raise ConfigError(
        f"unknown device {requested!r}: choose 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
    )


def _cuda_device(name: str) -> torch.device:
    if not torch.cuda.is_available():
        raise DeviceError(
            "a CUDA GPU was requested but PyTorch sees none on this machine (no NVIDIA GPU, "
            "no driver, or a CPU-only PyTorch): choose 'auto' or 'cpu'"
        )
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"unknown device {name!r}: write 'cuda' or 'cuda:N'") from err
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"GPU {device.index} was requested but this machine has GPUs 0..{count - 1}"
        )
    return device


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def describe_device(device: torch.device) -> str:
    """A short human name: ``CPU (2 threads)``, ``NVIDIA H200 (139 GiB)``, ``Apple GPU (MPS)``."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        return f"{properties.name} ({properties.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "Apple GPU (MPS)"
    if device.type == "cpu":
        return f"CPU ({torch.get_num_threads()} threads)"
    return str(device)


def bf16_supported(device: torch.device, *, cpuinfo: Path | None = None) -> bool:
    """Whether the hardware has fast bfloat16: CUDA's answer; CPUs with AVX512-BF16 or AMX."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return bool(bf16.read_cpuinfo(cpuinfo).bf16_flags)
    return False


def bf16_decision(
    setting: str,
    device: torch.device,
    *,
    cpuinfo: Path | None = None,
    measure: bf16.Measure | None = None,
    cache: Path | None = None,
) -> bf16.Bf16Decision:
    """Resolve a recipe's ``bf16`` setting, with the reason in plain words.

    ``auto``: on for a CUDA GPU with bfloat16; on a CPU with AVX512-BF16 or AMX, on when the
    one-time check (:func:`ept_studio.core.bf16.cpu_decision`, cached per machine) ran bf16
    faster; off otherwise. The check may take seconds the first time: call this off the GUI thread.
    """
    if setting == "on":
        return bf16.Bf16Decision(True, "on, as chosen")
    if setting == "off":
        return bf16.Bf16Decision(False, "off, as chosen")
    if setting != "auto":
        raise ConfigError(f"bf16 must be 'auto', 'on' or 'off', got {setting!r}")
    if device.type == "cuda":
        if bf16_supported(device):
            return bf16.Bf16Decision(True, "on: NVIDIA GPU with bfloat16")
        return bf16.Bf16Decision(False, "off: this GPU has no fast bfloat16")
    if device.type == "cpu":
        return bf16.cpu_decision(cpuinfo=cpuinfo, measure=measure, cache=cache)
    return bf16.Bf16Decision(
        False, "off: bfloat16 is used on NVIDIA GPUs and CPUs with AVX512-BF16 or AMX"
    )


def use_bf16(setting: str, device: torch.device) -> bool:
    """Whether a run with this ``bf16`` setting uses bfloat16 autocast (:func:`bf16_decision`)."""
    return bf16_decision(setting, device).on


def free_device_memory(device: torch.device) -> None:
    """Give cached accelerator memory back (after a run, before the next one).

    Nothing to do on the CPU: a full ``gc.collect()`` there only holds the GIL for a few hundred
    milliseconds (the app's window would freeze) and frees nothing the allocator keeps.
    """
    if device.type == "cpu":
        return
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif device.type == "mps" and _mps_available():
        torch.mps.empty_cache()
