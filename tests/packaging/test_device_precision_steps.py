"""The GPU check's precision steps, run here on the CPU with a tiny backbone: exports and their
checks, tune-time's precision columns, the stand-in backbone, and the time guard."""

from __future__ import annotations

import argparse
import importlib.util
import re
import time
from pathlib import Path
from types import ModuleType

from support import tiny_backbone

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "packaging" / "device" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_quick_model_is_exported_in_three_precisions_each_checked() -> None:
    section = _script("precision_steps").export_section(tiny_backbone(), "cpu")
    lines = {line[2:6]: line for line in section.splitlines() if line.startswith("- ")}
    assert sorted(lines) == ["fp16", "fp32", "int8"]
    parity = re.search(r"logits within ([0-9.e-]+)", lines["fp32"])
    assert parity is not None
    assert float(parity.group(1)) < 1e-4
    for precision in ("int8", "fp16"):
        check = re.search(
            r"against fp32 on CPUExecutionProvider \(2 images\): top-1 agreement ([0-9.]+), "
            r"attention r ([0-9.]+), rollout r ([0-9.]+)",
            lines[precision],
        )
        assert check is not None, lines[precision]
        agreement, attention, rollout = (float(v) for v in check.groups())
        assert agreement >= 0.99
        assert min(attention, rollout) >= 0.95
    assert "no CUDA GPU here" in lines["fp16"]
    assert "no CUDA GPU here" not in lines["int8"]


def test_tune_time_on_a_cpu_without_bf16_times_fp32_once_and_says_why() -> None:
    section = _script("precision_steps").tune_time_section(tiny_backbone(), "cpu", ("default",))
    assert "- fp32: bf16 off, off, as chosen." in section
    assert "- bf16 auto is fp32 here (off: this CPU has no AVX512-BF16 or AMX)" in section
    row = next(line for line in section.splitlines() if line.startswith("| default |"))
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1:3] == ["20 (4)", "52"]
    assert cells[4:6] == ["-", "-"]


def test_the_half_copy_stands_in_for_the_offline_backbone_only_inside_the_block() -> None:
    from ept_studio.core import backbones

    steps = _script("precision_steps")
    loaded, original = tiny_backbone(), backbones.load_backbone
    with steps.offline_backbone_is(loaded):
        from ept_studio.core.backbones import load_backbone

        assert load_backbone() is loaded
    assert backbones.load_backbone is original


def test_steps_are_skipped_as_asked_or_when_time_runs_short() -> None:
    check = _script("bf16_check")
    args = argparse.Namespace(
        skip=check._names("exports,latency"),
        hard_s=60.0,
        device="cpu",
        latency_rounds=1,
        tune_presets="default",
    )
    sections = check.precision_sections(tiny_backbone(), args, time.monotonic())
    assert sections[:2] == [
        "### exports\n\nskipped, as asked (--skip).",
        "### latency\n\nskipped, as asked (--skip).",
    ]
    assert re.fullmatch(
        r"### tune-time\n\nskipped: out of time \((59|60) s left before the 60 s limit; it takes "
        r"about 90 s\)\.",
        sections[2],
    )
