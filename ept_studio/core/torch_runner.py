"""The same runner API over the torch model, for use in the app before anything is exported.

It runs exactly the graph that :func:`~ept_studio.core.onnx_export.export_onnx` exports
(:class:`~ept_studio.core.onnx_export.InferenceModule`) on the same numpy preprocessing, and returns
the same :class:`~ept_studio.core.model_io.ModelOutputs`, so a caller can switch between the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ept_studio.common.errors import ConfigError
from ept_studio.core.device import resolve_device
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import ModelInfo, ModelOutputs, model_outputs, preprocess
from ept_studio.core.onnx_export import InferenceModule


class TorchRunner:
    """A tuned torch model behind the :class:`~ept_studio.core.model_io.Runner` API.

    ``device``: None keeps the model where it is; otherwise it is moved there (``auto``, ``cpu``,
    ``cuda``...). The model is put in eval mode.
    """

    def __init__(
        self, model: TunedModel, info: ModelInfo, *, device: str | torch.device | None = None
    ) -> None:
        if device is not None:
            model.to(device if isinstance(device, torch.device) else resolve_device(device))
        self._device = next(model.parameters()).device
        self._module = InferenceModule(model.eval(), info.label_mode)
        self._info = info
        self._provider = f"torch-{self._device}"

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def notes(self) -> tuple[str, ...]:
        return ()

    @torch.inference_mode()
    def run(self, pixels: np.ndarray) -> ModelOutputs:
        size = self._info.input_size
        if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
            raise ConfigError(
                f"the model takes pixels [batch, 3, {size}, {size}], got {tuple(pixels.shape)}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).to(self._device)
        outputs = [t.float().cpu().numpy() for t in self._module(tensor)]
        logits, probabilities, attention, rollout = outputs
        return model_outputs(self._info, logits, probabilities, attention, rollout, self._provider)

    def predict(self, images: Sequence[np.ndarray]) -> ModelOutputs:
        return self.run(preprocess(images, self._info))
