"""NVIDIA GPUs as the driver reports them: no torch, no onnxruntime, no ``nvidia-smi``.

Loads the driver library itself (``libcuda.so.1`` / ``nvcuda.dll``) and asks ``cuDeviceGetCount``
after ``cuInit``: the CUDA toolkit or onnxruntime-gpu being installed says nothing about a GPU. Used
where a GPU must be known before any heavy library is imported (the app's device menu, the ONNX
Runtime provider choice).
"""

from __future__ import annotations

import ctypes
import sys

_DRIVER_NAMES = {"win32": ("nvcuda.dll",), "linux": ("libcuda.so.1", "libcuda.so")}


def _driver() -> ctypes.CDLL | None:
    """The initialised CUDA driver library, or None without a driver (or a device)."""
    for name in _DRIVER_NAMES.get(sys.platform, ()):
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        return driver if driver.cuInit(0) == 0 else None
    return None


def nvidia_gpu_count() -> int:
    """How many CUDA devices the NVIDIA driver reports (0 without a driver)."""
    driver = _driver()
    if driver is None:
        return 0
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


def nvidia_gpu_names() -> list[str]:
    """The name of every CUDA device (``NVIDIA H200``), in device order; empty without one."""
    driver = _driver()
    if driver is None:
        return []
    names = []
    for index in range(nvidia_gpu_count()):
        device = ctypes.c_int(0)
        buffer = ctypes.create_string_buffer(256)
        if driver.cuDeviceGet(ctypes.byref(device), index) != 0:
            continue
        if driver.cuDeviceGetName(buffer, len(buffer), device) != 0:
            continue
        names.append(buffer.value.decode("utf-8", "replace") or f"GPU {index}")
    return names
