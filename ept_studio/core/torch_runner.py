"""The same runner API over the torch model, for use in the app before anything is exported.

It runs exactly the graph that :func:`~ept_studio.core.onnx_export.export_onnx` exports
(:class:`~ept_studio.core.onnx_export.InferenceModule`) on the same numpy preprocessing, and returns
the same :class:`~ept_studio.core.model_io.ModelOutputs`, so a caller can switch between the two; a
model with a detail view runs with it (its logits the two views' combined ones), as exported.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ept_studio.common.errors import ConfigError
from ept_studio.core.device import resolve_device
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import (
    ModelInfo,
    ModelOutputs,
    check_model_inputs,
    model_outputs,
    preprocess_inputs,
)
from ept_studio.core.onnx_export import InferenceModule


class TorchRunner:
    """A tuned torch model behind the :class:`~ept_studio.core.model_io.Runner` API.

    ``device``: None keeps the model where it is; otherwise it is moved there (``auto``, ``cpu``,
    ``cuda``...). The model is put in eval mode. ``detail``: the model's detail view, required
    exactly when ``info.detail_input_size`` is set (it runs on the model's device).
    """

    def __init__(
        self,
        model: TunedModel,
        info: ModelInfo,
        *,
        device: str | torch.device | None = None,
        detail: TunedModel | None = None,
    ) -> None:
        if (detail is None) != (info.detail_input_size is None):
            raise ConfigError(
                "the model's description and its torch modules differ in having a detail view; "
                "load the prompt file again"
            )
        if device is not None:
            model.to(device if isinstance(device, torch.device) else resolve_device(device))
        self._device = next(model.parameters()).device
        if detail is not None:
            detail.to(self._device).eval()
        self._module = InferenceModule(model.eval(), info.label_mode, detail)
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
    def run(self, pixels: np.ndarray, detail_pixels: np.ndarray | None = None) -> ModelOutputs:
        check_model_inputs(self._info, pixels, detail_pixels)
        tensors = [
            torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32)).to(self._device)
            for array in (pixels, detail_pixels)
            if array is not None
        ]
        outputs = [t.float().cpu().numpy() for t in self._module(*tensors)]
        logits, probabilities, attention, rollout = outputs
        return model_outputs(self._info, logits, probabilities, attention, rollout, self._provider)

    def predict(self, images: Sequence[np.ndarray]) -> ModelOutputs:
        return self.run(*preprocess_inputs(images, self._info))
