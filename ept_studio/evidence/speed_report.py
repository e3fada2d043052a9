"""``ept-studio bench speed``: the training-step cost of each method against the frozen floor."""

from __future__ import annotations

import platform

RANDOM_PREFIX = "random:"


def speed_report(
    backbones: list[str], *, rounds: int, batch_size: int, device: str = "cpu", bf16: bool = False
) -> str:
    """A markdown report: one table per backbone (a manifest name, or ``random:TIMM_NAME``);
    ``bf16`` adds the bfloat16 autocast rows (:func:`~ept_studio.evidence.speed.bf16_variants`)."""
    import torch

    from ept_studio.core.backbones import load_backbone, random_backbone
    from ept_studio.core.device import describe_device, resolve_device
    from ept_studio.evidence.speed import (
        bf16_variants,
        default_variants,
        format_speed_table,
        run_speed_bench,
    )

    target = resolve_device(device)
    memory = "peak CUDA MiB" if target.type == "cuda" else "saved activations MiB"
    sections = [
        f"Machine: {platform.machine()}, {describe_device(target)}, torch {torch.__version__}; "
        f"batch {batch_size}, median of {rounds} interleaved rounds."
    ]
    for name in backbones:
        if name.startswith(RANDOM_PREFIX):
            timm_name = name.removeprefix(RANDOM_PREFIX)
            loaded = random_backbone(timm_name, seed=0)
            title = f"{timm_name} (random init, {loaded.spec.input_size} px)"
        else:
            loaded = load_backbone(name)
            title = f"{loaded.spec.name} ({loaded.spec.timm_name}, {loaded.spec.input_size} px)"
        variants = default_variants() + (bf16_variants() if bf16 else [])
        rows = run_speed_bench(
            loaded.model, variants, rounds=rounds, batch_size=batch_size, device=target
        )
        sections.append(format_speed_table(title, rows, memory))
    return "\n\n".join(sections) + "\n"
