"""``ept-studio bench speed``: one training step per method against the frozen floor, interleaved.

The floor is the same frozen backbone with one learnable tensor added to its input tokens, so a
forward and a backward pass run through every block: the least any prompt method can cost.
Methods are timed round-robin in one process so that machine noise hits them all alike.
With ``bf16`` the linear probe and EPT are timed again under bfloat16 autocast in the same rounds,
so their rows against the fp32 ones are the speed-up on this machine.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ept_studio.core.methods import (
    BiasConfig,
    EptConfig,
    FullConfig,
    LinearConfig,
    LoraConfig,
    MethodConfig,
    VptConfig,
)
from ept_studio.core.methods.base import Backbone, MethodName, TuningMethod, freeze
from ept_studio.core.model import TunedModel


@dataclasses.dataclass(frozen=True)
class InputOffsetConfig(MethodConfig):
    """The benchmark floor: one learnable ``[1, 1, width]`` tensor added to every input token."""

    method = MethodName.LINEAR


class InputOffset(TuningMethod):
    def __init__(self) -> None:
        self.config = InputOffsetConfig()

    def apply(self, backbone: Backbone) -> None:
        freeze(backbone)
        offset = nn.Parameter(torch.zeros(1, 1, int(backbone.embed_dim)))
        backbone.input_offset = offset

        def add_offset(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
            return (args[0] + offset.to(args[0].dtype), *args[1:])

        backbone.blocks[0].register_forward_pre_hook(add_offset)


@dataclasses.dataclass(frozen=True)
class SpeedVariant:
    label: str
    build: Callable[[], TuningMethod | MethodConfig]
    bf16: bool = False
    """Run the step under bfloat16 autocast (the weights stay fp32)."""


def default_variants() -> list[SpeedVariant]:
    """What the README's speed table compares."""
    return [
        SpeedVariant("floor (input offset)", InputOffset),
        SpeedVariant("linear (head only)", LinearConfig),
        SpeedVariant("EPT L=100 deep, fast path", _ept_100),
        SpeedVariant("EPT L=100 deep, reference", lambda: EptConfig(length=100, fast_path=False)),
        SpeedVariant("VPT-deep L=50", lambda: VptConfig(length=50)),
        SpeedVariant("LoRA r=8 (q, v)", lambda: LoraConfig(rank=8)),
        SpeedVariant("bias (BitFit)", BiasConfig),
        SpeedVariant("full fine-tune", FullConfig),
    ]


def bf16_variants() -> list[SpeedVariant]:
    """The bfloat16 autocast rows ``bench speed --bf16`` adds: the linear probe and EPT."""
    return [
        SpeedVariant("linear (head only), bf16 autocast", LinearConfig, bf16=True),
        SpeedVariant("EPT L=100 deep, fast path, bf16 autocast", _ept_100, bf16=True),
    ]


def _ept_100() -> MethodConfig:
    return EptConfig(length=100)


@dataclasses.dataclass(frozen=True)
class SpeedRow:
    """One method's median step time, its ratio to the floor, and its memory."""

    label: str
    median_s: float
    ratio_to_floor: float
    memory_mib: float
    trainable_parameters: int


@contextmanager
def _saved_activation_bytes(counter: list[int]) -> Iterator[None]:
    """Count the bytes autograd saves for backward (unique storages): the step's activation memory."""
    seen: set[int] = set()

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen.add(key)
            counter[0] += storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield


def _step(
    model: TunedModel,
    optimiser: torch.optim.Optimizer,
    pixels: torch.Tensor,
    targets: torch.Tensor,
    bf16: bool = False,
) -> None:
    optimiser.zero_grad(set_to_none=True)
    with torch.autocast(pixels.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(pixels)
    loss = nn.functional.cross_entropy(logits.float(), targets)
    loss.backward()  # type: ignore[no-untyped-call]
    optimiser.step()


def _memory_of_step(
    model: TunedModel,
    optimiser: torch.optim.Optimizer,
    pixels: torch.Tensor,
    targets: torch.Tensor,
    bf16: bool,
) -> float:
    device = pixels.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        _step(model, optimiser, pixels, targets, bf16)
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    counter = [0]
    with _saved_activation_bytes(counter):
        _step(model, optimiser, pixels, targets, bf16)
    return counter[0] / 2**20


def run_speed_bench(
    backbone: Backbone,
    variants: list[SpeedVariant] | None = None,
    *,
    batch_size: int = 4,
    rounds: int = 5,
    warmup: int = 1,
    device: torch.device | None = None,
    num_classes: int = 4,
    seed: int = 0,
) -> list[SpeedRow]:
    """Median seconds per training step of each variant, interleaved round-robin, and the ratios."""
    device = device or torch.device("cpu")
    variants = variants or default_variants()
    size = int(backbone.patch_embed.img_size[0])
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randn(batch_size, 3, size, size, generator=generator).to(device)
    targets = torch.randint(0, num_classes, (batch_size,), generator=generator).to(device)
    models, optimisers, memory = [], [], []
    for variant in variants:
        torch.manual_seed(seed)
        model = TunedModel(backbone, variant.build(), num_classes).to(device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        optimiser = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
        memory.append(_memory_of_step(model, optimiser, pixels, targets, variant.bf16))
        models.append(model)
        optimisers.append(optimiser)
    times: list[list[float]] = [[] for _ in variants]
    for round_index in range(warmup + rounds):
        for index, (model, optimiser) in enumerate(zip(models, optimisers, strict=True)):
            start = time.perf_counter()
            _step(model, optimiser, pixels, targets, variants[index].bf16)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_index >= warmup:
                times[index].append(time.perf_counter() - start)
    medians = [statistics.median(t) for t in times]
    return [
        SpeedRow(v.label, m, m / medians[0], mem, model.trainable_parameter_count())
        for v, m, mem, model in zip(variants, medians, memory, models, strict=True)
    ]


def format_speed_table(title: str, rows: list[SpeedRow], memory_label: str) -> str:
    """A markdown table of the rows."""
    lines = [
        f"### {title}",
        "",
        f"| method | s / step (median) | x floor | {memory_label} | trainable params |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.median_s:.3f} | {row.ratio_to_floor:.2f} | "
            f"{row.memory_mib:.0f} | {row.trainable_parameters:,} |"
        )
    return "\n".join(lines)
