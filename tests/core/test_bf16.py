"""``bf16 = auto`` on CPUs: the flags, the one-time check and its cache (flags and timings faked)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from ept_studio.core import bf16
from ept_studio.core.device import bf16_decision, use_bf16

CPU = torch.device("cpu")
WITH_FLAG = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx512f avx512_bf16\n"
WITHOUT_FLAG = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 avx2\n"


class FakeCheck:
    """A timing function that counts its calls."""

    def __init__(self, fp32_s: float, bf16_s: float) -> None:
        self.result = (fp32_s, bf16_s)
        self.calls = 0

    def __call__(self) -> tuple[float, float]:
        self.calls += 1
        return self.result


@pytest.fixture
def cpuinfo(tmp_path: Path) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(WITH_FLAG, encoding="utf-8")
    return path


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / bf16.CHECK_FILE


def test_auto_is_on_with_the_flag_and_a_fast_check(cpuinfo: Path, cache: Path) -> None:
    check = FakeCheck(1.0, 0.4)
    decision = bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    assert decision.on
    assert decision.reason == "on: this CPU has AVX512-BF16 and ran the check 2.5x faster"


def test_auto_is_off_without_the_flag_and_never_checks(cpuinfo: Path, cache: Path) -> None:
    cpuinfo.write_text(WITHOUT_FLAG, encoding="utf-8")
    check = FakeCheck(1.0, 0.4)
    decision = bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    assert decision == bf16.Bf16Decision(False, "off: this CPU has no AVX512-BF16 or AMX")
    assert check.calls == 0
    assert not cache.exists()


def test_auto_is_off_with_the_flag_but_a_slow_check(cpuinfo: Path, cache: Path) -> None:
    slow = bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=FakeCheck(1.0, 1.05), cache=cache)
    assert not slow.on
    assert slow.reason == "off: this CPU has AVX512-BF16 but the check ran it no faster (0.95x)"
    cache.unlink()
    marginal = bf16_decision(
        "auto", CPU, cpuinfo=cpuinfo, measure=FakeCheck(1.0, 0.95), cache=cache
    )
    assert not marginal.on
    assert "only 1.05x faster" in marginal.reason


def test_amx_is_named(cpuinfo: Path, cache: Path) -> None:
    cpuinfo.write_text(WITHOUT_FLAG.replace("avx2", "avx2 amx_bf16"), encoding="utf-8")
    decision = bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=FakeCheck(1, 0.5), cache=cache)
    assert decision.reason == "on: this CPU has AMX and ran the check 2.0x faster"


def test_the_check_runs_once_and_is_cached(cpuinfo: Path, cache: Path) -> None:
    check = FakeCheck(1.0, 0.4)
    first = bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    second = bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    assert check.calls == 1
    assert first == second
    document = json.loads(cache.read_text(encoding="utf-8"))
    assert document["schema"] == bf16.CHECK_SCHEMA
    (entry,) = document["entries"].values()
    assert entry["cpu"] == "Test CPU 9000"
    assert entry["bf16_flags"] == ["avx512_bf16"]
    assert (entry["fp32_median_s"], entry["bf16_median_s"]) == (1.0, 0.4)
    assert bf16.planned_cpu_decision(cpuinfo=cpuinfo, cache=cache) == first


def test_another_cpu_or_torch_checks_again(
    cpuinfo: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check = FakeCheck(1.0, 0.4)
    bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    monkeypatch.setattr(bf16, "torch_version", lambda: "99.0")
    assert bf16.planned_cpu_decision(cpuinfo=cpuinfo, cache=cache) is None
    bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    assert check.calls == 2
    cpuinfo.write_text(WITH_FLAG.replace("Test CPU 9000", "Other CPU"), encoding="utf-8")
    bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    assert check.calls == 3
    assert len(json.loads(cache.read_text(encoding="utf-8"))["entries"]) == 3


def test_a_damaged_cache_checks_again(cpuinfo: Path, cache: Path) -> None:
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json", encoding="utf-8")
    check = FakeCheck(1.0, 0.4)
    assert bf16.planned_cpu_decision(cpuinfo=cpuinfo, cache=cache) is None
    assert bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=check, cache=cache).on
    assert check.calls == 1


def test_the_cache_lives_in_the_user_data_folder(
    cpuinfo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EPT_STUDIO_DATA", str(tmp_path / "user-data"))
    bf16_decision("auto", CPU, cpuinfo=cpuinfo, measure=FakeCheck(1.0, 0.4))
    assert (tmp_path / "user-data" / "cache" / bf16.CHECK_FILE).is_file()


def test_on_and_off_override_with_their_reason(cpuinfo: Path, cache: Path) -> None:
    check = FakeCheck(1.0, 0.4)
    on = bf16_decision("on", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    off = bf16_decision("off", CPU, cpuinfo=cpuinfo, measure=check, cache=cache)
    assert on == bf16.Bf16Decision(True, "on, as chosen")
    assert off == bf16.Bf16Decision(False, "off, as chosen")
    assert bf16_decision("off", torch.device("cuda")).reason == "off, as chosen"
    assert check.calls == 0
    assert use_bf16("on", CPU)


def test_cuda_and_mps(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    decision = bf16_decision("auto", torch.device("cuda"))
    assert decision == bf16.Bf16Decision(True, "on: NVIDIA GPU with bfloat16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert not bf16_decision("auto", torch.device("cuda")).on
    assert not bf16_decision("auto", torch.device("mps")).on


def test_the_suite_runs_as_on_a_cpu_without_the_flag() -> None:
    assert not use_bf16("auto", CPU)


def test_the_real_check_returns_a_finite_ratio_and_a_reason(cpuinfo: Path, cache: Path) -> None:
    fp32_s, bf16_s = bf16.measure_cpu_bf16(rounds=1)
    assert fp32_s > 0
    assert bf16_s > 0
    check = bf16.CpuCheck(fp32_s, bf16_s)
    assert math.isfinite(check.speedup)
    decision = bf16_decision(
        "auto", CPU, cpuinfo=cpuinfo, measure=lambda: (fp32_s, bf16_s), cache=cache
    )
    assert decision.reason.startswith(("on: this CPU has", "off: this CPU has"))
