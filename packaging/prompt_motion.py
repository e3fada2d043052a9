"""How far EPT's prompts, and the logits through them, move in one training run (recipes.md).

    .venv/bin/python packaging/prompt_motion.py --shots 3 --recipe paper

Trains EPT (L = 100, every block) on ``--shots`` textiles images a class with the offline backbone
on the CPU in float32, then prints the run's steps, the largest change of any prompt value, the
largest change of any head value, and how much the logits of the support images change when the
prompts go back to their start with the trained head kept: the part of the run the prompts did.
"""

from __future__ import annotations

import argparse
import random
import sys

import numpy as np
import torch

from ept_studio.common.training_events import StepFinished
from ept_studio.core.backbones import load_backbone
from ept_studio.core.methods import EptConfig
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.training import RECIPES, Sample, seed_everything, train
from ept_studio.core.training.transforms import batch_tensors, eval_transform
from ept_studio.evidence.datasets import load_dataset


def support_set(shots: int, seed: int) -> list[Sample]:
    data = load_dataset("textiles")
    rng = random.Random(seed)
    samples: list[Sample] = []
    for label in range(len(data.class_names)):
        members = [s for s in data.samples if s.label == label]
        for sample in rng.sample(members, shots):
            pixels = np.ascontiguousarray(sample.read().transpose(2, 0, 1))
            samples.append((torch.from_numpy(pixels), label))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="paper")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    support = support_set(args.shots, args.seed)
    backbone = load_backbone()
    spec = backbone.spec
    seed_everything(args.seed)
    model = TunedModel(backbone.model, EptConfig(length=100), 3)
    start = {name: t.clone() for name, t in model.trainable_state().items()}
    recipe = RECIPES[args.recipe].replace(device="cpu", bf16="off", seed=args.seed)
    events = train(
        model,
        support,
        recipe,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        label_mode=LabelMode.SINGLE,
    )
    steps = sum(isinstance(event, StepFinished) for event in events)
    trained = {name: t.clone() for name, t in model.trainable_state().items()}
    prompts = [name for name in start if not name.startswith("head.")]
    transform = eval_transform(spec.input_size, spec.mean, spec.std)
    pixels = batch_tensors([image for image, _ in support], transform)

    def logits() -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return model(pixels).float()

    after = logits()
    model.load_trainable_state({**trained, **{name: start[name] for name in prompts}})
    without_prompt_change = logits()
    prompt_change = max(float((trained[n] - start[n]).abs().max()) for n in prompts)
    prompt_size = max(float(start[n].abs().max()) for n in prompts)
    head_change = max(
        float((trained[n] - start[n]).abs().max()) for n in start if n.startswith("head.")
    )
    sys.stdout.write(
        f"{args.recipe}, {args.shots} shots x 3 classes: {steps} steps; largest prompt change "
        f"{prompt_change:.1e} (prompt values up to {prompt_size:.1e}); largest head change "
        f"{head_change:.1e}; the prompts' change moves the logits by at most "
        f"{float((after - without_prompt_change).abs().max()):.1e} (logits up to "
        f"{float(after.abs().max()):.2f})\n"
    )


if __name__ == "__main__":
    main()
