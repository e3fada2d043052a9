"""Write the Hugging Face DINOv2 reference files that ``test_backbone_converters.py`` reads.

Not run by the tests (they stay offline and need no ``transformers``): run it by hand, with
``transformers`` importable, to remake the files. Each file holds a tiny seeded ``Dinov2Model``
(or ``Dinov2WithRegistersModel``) under transformers 4's tensor names (``state.`` + name, as
published checkpoints such as RAD-DINO's are), an input (``pixels``) and the model's
``last_hidden_state`` for it (``expected``), in float32.

    PYTHONPATH=<folder with transformers> .venv/bin/python tests/core/reference/make_hf_dinov2_reference.py
"""

from __future__ import annotations

from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
SIZES = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "patch_size": 14,
    "image_size": 28,
}
TRANSFORMERS_5_TO_4 = (
    ("attention.q_proj", "attention.attention.query"),
    ("attention.k_proj", "attention.attention.key"),
    ("attention.v_proj", "attention.attention.value"),
    ("attention.o_proj", "attention.output.dense"),
)


def published_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for name, tensor in state.items():
        for new, old in TRANSFORMERS_5_TO_4:
            name = name.replace(new, old)
        renamed[name] = tensor
    return renamed


def write(model: torch.nn.Module, path: Path) -> None:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lambda1" in name:  # layer scale starts at 1.0; make it tell blocks' parts apart
                parameter.copy_(torch.rand(parameter.shape, generator=generator) + 0.5)
            elif "cls_token" in name or "register_tokens" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    model.eval()
    pixels = torch.randn(2, 3, 28, 28, generator=generator)
    with torch.no_grad():
        expected = model(pixel_values=pixels).last_hidden_state
    tensors = {f"state.{k}": v.contiguous() for k, v in published_names(model.state_dict()).items()}
    tensors.update(pixels=pixels, expected=expected.contiguous())
    save_file(tensors, path, metadata={"transformers": transformers.__version__})


def main() -> None:
    torch.manual_seed(0)
    write(
        transformers.Dinov2Model(transformers.Dinov2Config(**SIZES)),
        HERE / "hf_dinov2_tiny.safetensors",
    )
    config = transformers.Dinov2WithRegistersConfig(num_register_tokens=4, **SIZES)
    write(transformers.Dinov2WithRegistersModel(config), HERE / "hf_dinov2_reg4_tiny.safetensors")


if __name__ == "__main__":
    main()
