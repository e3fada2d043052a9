"""Whether bfloat16 autocast speeds training up on this CPU: its flags, a one-time check, a cache.

A CPU runs bf16 autocast fast only with AVX512-BF16 or AMX; without them PyTorch emulates it, many
times slower. Even with the flag a machine may gain nothing, so ``auto`` also times a fixed
workload shaped like one ViT-S/14 block (257 tokens, width 384, 6 heads, batch 4, frozen
weights, forward and backward) in float32 and under bf16 autocast, :data:`CHECK_ROUNDS` times
each way, interleaved, and keeps the medians. The rule: bf16 is used when its median is under
:data:`FASTER_THAN` times the float32 median (at least about 1.1x faster). Emulated bf16 runs
many times slower than float32; on a loaded 2-core EPYC with AVX512-BF16 this check measured
1.2x to 1.7x (a whole EPT training step gains 2.4x there), so the margin keeps "about the same
speed" in float32 without letting the noise of a busy machine turn real support off.

The result is kept per machine in ``bf16-check.json`` in the user's cache folder
(:func:`~ept_studio.common.appdata.app_dirs`), one entry per key: the CPU's model name, its
flags and the torch version, so another CPU or another torch (or deleting the file) checks
again. Importing this module loads no torch; only :func:`measure_cpu_bf16` does, so the Train
tab can read the cache while it is drawn and the check itself runs where training runs (the
worker thread) or in ``doctor``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import math
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ept_studio.common.appdata import app_dirs
from ept_studio.common.errors import EptStudioError
from ept_studio.common.files import atomic_write_text

CPUINFO = Path("/proc/cpuinfo")
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CHECK_FILE = "bf16-check.json"
CHECK_SCHEMA = 1
FASTER_THAN = 0.9
"""bf16 is used when its median time is under this fraction of float32's."""
CHECK_ROUNDS = 5

Measure = Callable[[], tuple[float, float]]
"""Times the check workload: (float32 median seconds, bf16 autocast median seconds)."""

_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Bf16Decision:
    """Whether a run uses bfloat16 autocast, and why, in words a user reads."""

    on: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class CpuCheck:
    """One timing of the check workload on this machine."""

    fp32_s: float
    bf16_s: float

    @property
    def speedup(self) -> float:
        """How many times faster bf16 ran (below 1: slower)."""
        return self.fp32_s / self.bf16_s if self.bf16_s > 0 else 0.0

    @property
    def faster(self) -> bool:
        return math.isfinite(self.speedup) and self.bf16_s < FASTER_THAN * self.fp32_s


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def bf16_flags(self) -> frozenset[str]:
        return self.flags & CPU_BF16_FLAGS

    def flag_names(self) -> str:
        """``AVX512-BF16``, ``AMX`` or ``AVX512-BF16 and AMX``."""
        names = [name for flag, name in _FLAG_NAMES if flag in self.flags]
        return " and ".join(names)


_FLAG_NAMES = (("avx512_bf16", "AVX512-BF16"), ("amx_bf16", "AMX"))


def read_cpuinfo(cpuinfo: Path | None = None) -> CpuInfo:
    """The CPU's model name and flags from ``/proc/cpuinfo`` (empty off Linux or if unreadable)."""
    path = CPUINFO if cpuinfo is None else cpuinfo
    if cpuinfo is None and not sys.platform.startswith("linux"):
        return CpuInfo("", frozenset())
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuInfo("", frozenset())
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "flags":
            flags.update(value.split())
        elif key == "model name" and not model:
            model = value.strip()
    return CpuInfo(model, frozenset(flags))


def torch_version() -> str | None:
    """The installed torch's version, read without importing it (None when unknown)."""
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        return importlib.metadata.version("torch")
    torch = sys.modules.get("torch")
    return str(getattr(torch, "__version__", "")) or None


def machine_key(cpu: CpuInfo, torch: str) -> str:
    """What a cached check is valid for: this CPU model, these flags, this torch."""
    text = "\n".join([cpu.model, " ".join(sorted(cpu.flags)), torch])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_file() -> Path:
    return app_dirs().cache / CHECK_FILE


def cpu_decision(
    *,
    cpuinfo: Path | None = None,
    measure: Measure | None = None,
    cache: Path | None = None,
) -> Bf16Decision:
    """``auto`` on this CPU: off without AVX512-BF16 / AMX, else the (cached) check decides.

    Runs the check when no result is cached for this machine: call it off the GUI thread.
    """
    cpu = read_cpuinfo(cpuinfo)
    if not cpu.bf16_flags:
        return _no_flags(cpuinfo)
    with _lock:
        check = cached_check(cpu, cache)
        if check is None:
            fp32_s, bf16_s = (measure or measure_cpu_bf16)()
            check = CpuCheck(float(fp32_s), float(bf16_s))
            _store(cpu, check, cache)
    return _judged(cpu, check)


def planned_cpu_decision(
    *, cpuinfo: Path | None = None, cache: Path | None = None
) -> Bf16Decision | None:
    """``auto`` on this CPU from the flags and the cache only (None: the check has not run yet)."""
    cpu = read_cpuinfo(cpuinfo)
    if not cpu.bf16_flags:
        return _no_flags(cpuinfo)
    check = cached_check(cpu, cache)
    return None if check is None else _judged(cpu, check)


def _no_flags(cpuinfo: Path | None) -> Bf16Decision:
    if cpuinfo is None and not sys.platform.startswith("linux"):
        return Bf16Decision(False, "off: the CPU's bfloat16 instructions can only be read on Linux")
    return Bf16Decision(False, "off: this CPU has no AVX512-BF16 or AMX")


def _judged(cpu: CpuInfo, check: CpuCheck) -> Bf16Decision:
    has = f"this CPU has {cpu.flag_names()}"
    if check.faster:
        return Bf16Decision(True, f"on: {has} and ran the check {check.speedup:.1f}x faster")
    if check.speedup <= 1.0:
        return Bf16Decision(
            False, f"off: {has} but the check ran it no faster ({check.speedup:.2f}x)"
        )
    needed = 1 / FASTER_THAN
    return Bf16Decision(
        False,
        f"off: {has} but the check ran it only {check.speedup:.2f}x faster "
        f"(it needs {needed:.2f}x)",
    )


def cached_check(cpu: CpuInfo, cache: Path | None = None) -> CpuCheck | None:
    """The stored check for this CPU and torch, if there is one."""
    version = torch_version()
    if version is None:
        return None
    entry = _read(cache).get(machine_key(cpu, version))
    if not isinstance(entry, dict):
        return None
    try:
        check = CpuCheck(float(entry["fp32_median_s"]), float(entry["bf16_median_s"]))
    except (KeyError, TypeError, ValueError):
        return None
    if not (math.isfinite(check.fp32_s) and math.isfinite(check.bf16_s)) or check.bf16_s <= 0:
        return None
    return check


def _read(cache: Path | None) -> dict[str, Any]:
    path = check_file() if cache is None else cache
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict) or document.get("schema") != CHECK_SCHEMA:
        return {}
    entries = document.get("entries")
    return entries if isinstance(entries, dict) else {}


def _store(cpu: CpuInfo, check: CpuCheck, cache: Path | None) -> None:
    """Add this machine's result; a cache that cannot be written only means checking again."""
    version = torch_version()
    if version is None:
        return
    path = check_file() if cache is None else cache
    entries = _read(cache)
    entries[machine_key(cpu, version)] = {
        "cpu": cpu.model,
        "bf16_flags": sorted(cpu.bf16_flags),
        "torch": version,
        "fp32_median_s": check.fp32_s,
        "bf16_median_s": check.bf16_s,
        "speedup": round(check.speedup, 3),
        "checked": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    text = json.dumps({"schema": CHECK_SCHEMA, "entries": entries}, indent=2) + "\n"
    with contextlib.suppress(EptStudioError):
        atomic_write_text(path, text, "bfloat16 check")


def measure_cpu_bf16(rounds: int = CHECK_ROUNDS) -> tuple[float, float]:
    """Time one ViT-S block's forward and backward (batch 4, frozen weights) in float32 and under bf16 autocast.

    Interleaved rounds after one warm-up each; returns the two medians in seconds.
    """
    import torch
    from torch import nn
    from torch.nn import functional

    generator = torch.Generator().manual_seed(0)
    width, heads, tokens, batch = 384, 6, 257, 4
    qkv, proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
    fc1, fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)
    for layer in (qkv, proj, fc1, fc2):
        layer.requires_grad_(False)
    pixels = torch.randn(batch, tokens, width, generator=generator)

    def block(x: torch.Tensor) -> torch.Tensor:
        q, k, v = qkv(x).reshape(batch, tokens, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        attended = functional.scaled_dot_product_attention(q, k, v)
        x = x + proj(attended.transpose(1, 2).reshape(batch, tokens, width))
        out: torch.Tensor = x + fc2(functional.gelu(fc1(x)))
        return out

    def step(bf16: bool) -> float:
        x = pixels.clone().requires_grad_(True)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = block(x)
        out.float().sum().backward()
        return time.perf_counter() - start

    step(False)
    step(True)
    fp32, bf16 = [], []
    for _ in range(max(1, rounds)):
        fp32.append(step(False))
        bf16.append(step(True))
    return statistics.median(fp32), statistics.median(bf16)
