"""Device resolution and naming; accelerators are faked where this machine lacks them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ept_studio.common.errors import ConfigError, DeviceError
from ept_studio.core import device as device_module
from ept_studio.core.device import (
    bf16_supported,
    describe_device,
    free_device_memory,
    resolve_device,
    use_bf16,
)

CPU = torch.device("cpu")


@pytest.fixture
def no_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_module, "_mps_available", lambda: False)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.mark.usefixtures("no_accelerators")
def test_auto_falls_back_to_the_cpu() -> None:
    assert resolve_device() == CPU
    assert resolve_device("auto") == CPU
    assert resolve_device(" CPU ") == CPU


@pytest.mark.usefixtures("no_accelerators")
def test_auto_prefers_mps_over_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_module, "_mps_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")


@pytest.mark.usefixtures("two_gpus")
def test_auto_prefers_cuda_and_indices_are_checked() -> None:
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(DeviceError, match="GPU 2 was requested"):
        resolve_device("cuda:2")
    with pytest.raises(ConfigError, match="cuda:N"):
        resolve_device("cuda:x")


@pytest.mark.usefixtures("no_accelerators")
def test_a_missing_accelerator_is_a_clear_device_error() -> None:
    with pytest.raises(DeviceError, match="choose 'auto' or 'cpu'"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="MPS"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("tpu")


def test_describe_the_cpu() -> None:
    assert describe_device(CPU) == f"CPU ({torch.get_num_threads()} threads)"
    assert describe_device(torch.device("mps")) == "Apple GPU (MPS)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_describe_a_real_gpu() -> None:
    name = torch.cuda.get_device_name(0)
    assert describe_device(torch.device("cuda")).startswith(name)
    assert describe_device(torch.device("cuda:0")).endswith("GiB)")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/cpuinfo")
def test_cpu_bf16_from_cpuinfo_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\n")
    assert bf16_supported(CPU, cpuinfo=cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert not bf16_supported(CPU, cpuinfo=cpuinfo)
    assert not bf16_supported(CPU, cpuinfo=tmp_path / "missing")
    assert not bf16_supported(torch.device("mps"))


def test_cuda_bf16_asks_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert bf16_supported(torch.device("cuda"))
    assert use_bf16("auto", torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert not use_bf16("auto", torch.device("cuda"))


def test_use_bf16_settings() -> None:
    assert use_bf16("on", CPU)
    assert not use_bf16("off", torch.device("cuda"))
    assert not use_bf16("auto", CPU)
    with pytest.raises(ConfigError, match="bf16"):
        use_bf16("sometimes", CPU)


def test_free_device_memory_is_safe_everywhere() -> None:
    free_device_memory(CPU)
    if torch.cuda.is_available():
        torch.ones(1024, device="cuda")
        free_device_memory(torch.device("cuda"))
