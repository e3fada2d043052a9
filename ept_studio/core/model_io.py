"""What both runners share: the exported model's description, its preprocessing and its outputs.

Torch-free (numpy and Pillow), like :mod:`ept_studio.core.onnx_runtime`. :class:`ModelInfo` is stored in
the ONNX file's ``metadata_props``; :func:`preprocess` is the torch engine's test-time transform
(bicubic antialiased resize, clamp, normalise) without torch, so the ONNX and torch runners see the same
pixels. A model with a detail view (:mod:`ept_studio.core.detail`) takes the same image twice: at
``input_size`` (``pixels``) and, resized separately from the rendered image, at ``detail_input_size``
(``detail_pixels``, :func:`preprocess_detail`); :func:`check_model_inputs` is the one rule both
runners apply to what they are given. :class:`ModelOutputs` is what :class:`~ept_studio.core.onnx_runtime.OnnxRunner` and
:class:`~ept_studio.core.torch_runner.TorchRunner` return, both through :func:`model_outputs`, which
applies the stored temperature and prediction-set thresholds the same way for either.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from PIL import Image

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common.errors import ConfigError, OnnxModelError
from ept_studio.core.conformal import ConformalSets, prediction_set
from ept_studio.core.temperature import Calibration, apply_temperature

ONNX_FORMAT = 1
"""The version of the ONNX layout and metadata this module writes and reads."""

FORMAT_KEY = "ept_studio.onnx_format"
INPUT_NAME = "pixels"
DETAIL_INPUT_NAME = "detail_pixels"
"""The second input of a model with a detail view: the image at ``detail_input_size``."""
OUTPUT_NAMES = ("logits", "probabilities", "attention", "rollout")
OPTIONAL_BLOCKS = ("calibration", "conformal", "precision")
"""Metadata entries a model may leave out: no ``calibration``, its scores are uncalibrated; no
``conformal``, it gives no prediction sets; no ``precision``, it is the fp32 export."""
OPTIONAL_ENTRIES = (*OPTIONAL_BLOCKS, "detail_input_size")
"""Every entry a model may leave out: the blocks, and ``detail_input_size`` (no detail view; files
exported before the detail view existed have none)."""
REDUCED_PRECISIONS = ("int8", "fp16")
MAX_INPUT_SIZE = 4096
"""The largest image side a model file may ask for: the size builds every image's pixels (and, for a
prompt file, the backbone's position grid), so an unchecked one could ask for terabytes."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrecisionRecord:
    """How an int8 or fp16 model was made from its fp32 export, and how close it stayed to it.

    Measured at export on the check images: ``top1_agreement`` is the share of images whose
    highest-scoring class is the fp32 model's; ``attention_correlation`` and
    ``rollout_correlation`` are the lowest per-image Pearson correlation with the fp32 model's map
    (the last block's attention, mean over heads, as the overlay shows it; and the rollout).
    ``provider`` is where the reduced model ran for the check.
    """

    precision: str
    method: str
    images: int
    top1_agreement: float
    attention_correlation: float
    rollout_correlation: float
    min_agreement: float
    min_correlation: float
    provider: str

    def __post_init__(self) -> None:
        if self.precision not in REDUCED_PRECISIONS:
            raise ValueError(f"'precision' is {self.precision[:20]!r}, not int8 or fp16")
        if isinstance(self.images, bool) or not isinstance(self.images, int) or self.images < 1:
            raise ValueError("'precision' counts no check image")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> PrecisionRecord:
        """Parse :meth:`to_dict` output (ValueError or TypeError when damaged)."""
        if not isinstance(data, dict):
            raise ValueError("'precision' is not a JSON object")
        precision, method, provider = (data[k] for k in ("precision", "method", "provider"))
        if not all(isinstance(v, str) for v in (precision, method, provider)):
            raise ValueError("'precision' has a field that is not text")
        return cls(
            precision=precision,
            method=method,
            images=data["images"],
            top1_agreement=float(data["top1_agreement"]),
            attention_correlation=float(data["attention_correlation"]),
            rollout_correlation=float(data["rollout_correlation"]),
            min_agreement=float(data["min_agreement"]),
            min_correlation=float(data["min_correlation"]),
            provider=provider,
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """What an exported model says about itself, stored as the ONNX file's ``metadata_props``.

    It describes the model and its preprocessing, never the images it was tuned on (no PHI).
    ``calibration``, ``conformal`` and ``precision`` are stored only when present (JSON objects).
    ``detail_input_size``: the side of the detail view's input (the graph's second input,
    :data:`DETAIL_INPUT_NAME`); None, stored as no entry, for a model without a detail view.
    """

    class_names: tuple[str, ...]
    label_mode: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    heads: int
    patch_grid: tuple[int, int]
    backbone: str
    backbone_sha256: str
    prompt_sha256: str
    method: dict[str, Any]
    rendering: dict[str, Any]
    app_version: str = __version__
    notice: str = RESEARCH_USE_NOTICE
    calibration: Calibration | None = None
    conformal: ConformalSets | None = None
    precision: PrecisionRecord | None = None
    detail_input_size: int | None = None

    @property
    def patches(self) -> int:
        return self.patch_grid[0] * self.patch_grid[1]

    def to_metadata_props(self) -> dict[str, str]:
        """Every field as text (JSON for lists and objects), plus the format marker."""
        props = {FORMAT_KEY: str(ONNX_FORMAT)}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, (Calibration, ConformalSets, PrecisionRecord)):
                props[field.name] = _json(value.to_dict())
            elif value is not None:
                props[field.name] = value if isinstance(value, str) else _json(value)
        return props

    @classmethod
    def from_metadata_props(cls, props: Mapping[str, str], source: str) -> ModelInfo:
        """Parse and check :meth:`to_metadata_props` output; ``source`` names the file in errors."""
        marker = props.get(FORMAT_KEY)
        if marker is None:
            raise OnnxModelError(
                f"{source}: this ONNX model was not exported by EPT Studio (it has no EPT Studio "
                "metadata); export the prompt file with `ept-studio export PROMPT --onnx OUT.onnx`"
            )
        if marker != str(ONNX_FORMAT):
            raise OnnxModelError(
                f"{source}: it uses EPT Studio ONNX format {marker[:20]!r}; this version "
                f"({__version__}) reads format {ONNX_FORMAT}. Export it again with this version."
            )
        try:
            return cls(**_parse_props(props))
        except (KeyError, ValueError, TypeError) as err:
            raise OnnxModelError(
                f"{source}: its EPT Studio metadata is missing or damaged ({err}); export it again"
            ) from err


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def _parse_props(props: Mapping[str, str]) -> dict[str, Any]:
    """Field values from text, each checked; a missing key is a KeyError naming it."""
    for name in (f.name for f in dataclasses.fields(ModelInfo)):
        if name not in props and name not in OPTIONAL_ENTRIES:
            raise KeyError(f"no {name!r} entry")
    names = json.loads(props["class_names"])
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError("'class_names' is not a list of texts")
    if props["label_mode"] not in ("single", "multi"):
        raise ValueError(f"'label_mode' is {props['label_mode'][:20]!r}")
    input_size = _bounded_size(
        props["input_size"], "input_size", MAX_INPUT_SIZE, "4096-pixel limit"
    )
    grid = json.loads(props["patch_grid"])
    if not isinstance(grid, list) or len(grid) != 2:
        raise ValueError("'patch_grid' is not 2 whole numbers")
    limit = f"{input_size}-pixel input size"
    rows, columns = (_bounded_size(side, "patch_grid", input_size, limit) for side in grid)
    method, rendering = json.loads(props["method"]), json.loads(props["rendering"])
    if not isinstance(method, dict) or not isinstance(rendering, dict):
        raise ValueError("'method' and 'rendering' must be JSON objects")
    return {
        "class_names": tuple(names),
        "label_mode": props["label_mode"],
        "input_size": input_size,
        "mean": _triple(props["mean"], "mean"),
        "std": _triple(props["std"], "std"),
        "heads": _positive_int(props["heads"], "heads"),
        "patch_grid": (rows, columns),
        "method": method,
        "rendering": rendering,
        **{k: props[k] for k in ("backbone", "backbone_sha256", "prompt_sha256")},
        **{k: props[k] for k in ("app_version", "notice")},
        **_blocks(props),
        **_detail(props, input_size),
    }


def _detail(props: Mapping[str, str], input_size: int) -> dict[str, Any]:
    """The detail view's input size when the model has one: larger than ``input_size``."""
    if "detail_input_size" not in props:
        return {}
    size = _bounded_size(
        props["detail_input_size"], "detail_input_size", MAX_INPUT_SIZE, "4096-pixel limit"
    )
    if size <= input_size:
        raise ValueError(f"'detail_input_size' {size} is not above the input size {input_size}")
    if props["label_mode"] != "single":
        raise ValueError("it has a detail view, which only single-label models have")
    return {"detail_input_size": size}


def _blocks(props: Mapping[str, str]) -> dict[str, Any]:
    """The optional calibration and conformal blocks (ValueError when damaged)."""
    blocks: dict[str, Any] = {}
    if "calibration" in props:
        blocks["calibration"] = Calibration.from_dict(json.loads(props["calibration"]))
    if "conformal" in props:
        conformal = ConformalSets.from_dict(json.loads(props["conformal"]))
        names = json.loads(props["class_names"])
        if conformal.classes != len(names) or conformal.label_mode != props["label_mode"]:
            raise ValueError("its prediction-set thresholds do not fit its classes")
        blocks["conformal"] = conformal
    if "precision" in props:
        blocks["precision"] = PrecisionRecord.from_dict(json.loads(props["precision"]))
    return blocks


def _positive_int(value: object, name: str) -> int:
    number = json.loads(value) if isinstance(value, str) else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"{name!r} is not a whole number >= 1")
    return number


def _bounded_size(value: object, name: str, maximum: int, limit: str) -> int:
    """A size that allocates (pixels, overlay grid): a whole number from 1 to ``maximum``."""
    number = _positive_int(value, name)
    if number > maximum:
        raise ValueError(f"{name!r} {number} is above the {limit}")
    return number


def _triple(text: str, name: str) -> tuple[float, float, float]:
    values = json.loads(text)
    if not isinstance(values, list) or len(values) != 3:
        raise ValueError(f"{name!r} is not 3 numbers")
    first, second, third = (float(v) for v in values)
    return first, second, third


@dataclasses.dataclass(frozen=True)
class ModelOutputs:
    """One batch through the model: the four outputs of the ONNX graph, as float32 arrays.

    ``attention`` is ``[B, heads, patches]``: the CLS row of the last block over the patch tokens,
    after the tuning method (EPT's prompt columns dropped). ``rollout`` is ``[B, patches]``: the CLS
    row of the attention rollout over all blocks. ``provider`` says what actually ran it.
    ``probabilities`` are calibrated when the model carries a temperature; ``sets`` holds each
    image's prediction set (class indices) when it carries prediction-set thresholds, else None.
    """

    logits: np.ndarray
    probabilities: np.ndarray
    attention: np.ndarray
    rollout: np.ndarray
    provider: str
    sets: tuple[tuple[int, ...], ...] | None = None


def calibrated_probabilities(
    info: ModelInfo, logits: np.ndarray, probabilities: np.ndarray
) -> np.ndarray:
    """The model's probabilities with its stored temperature applied (unchanged without one)."""
    if info.calibration is None:
        return probabilities
    return apply_temperature(logits, info.calibration.temperature, info.label_mode)


def model_outputs(
    info: ModelInfo,
    logits: np.ndarray,
    probabilities: np.ndarray,
    attention: np.ndarray,
    rollout: np.ndarray,
    provider: str,
) -> ModelOutputs:
    """What a runner returns for one batch of graph outputs: calibrated probabilities and, when the
    model has thresholds, every image's prediction set. Both runners go through here."""
    calibrated = calibrated_probabilities(info, logits, probabilities)
    sets = None
    if info.conformal is not None:
        thresholds = info.conformal.thresholds
        sets = tuple(tuple(prediction_set(row, thresholds)) for row in calibrated)
    return ModelOutputs(logits, calibrated, attention, rollout, provider, sets)


class Runner(Protocol):
    """What the ONNX runner and the torch runner share, so callers need not know which one runs."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def provider(self) -> str: ...

    @property
    def notes(self) -> tuple[str, ...]: ...

    def run(self, pixels: np.ndarray, detail_pixels: np.ndarray | None = None) -> ModelOutputs:
        """Model outputs for preprocessed pixels ``[B, 3, S, S]`` float32 and, for a model with
        a detail view (only then), the same images at its size ``[B, 3, D, D]``."""
        ...

    def predict(self, images: Sequence[np.ndarray]) -> ModelOutputs:
        """Model outputs for rendered images (``H x W x 3`` uint8, any size)."""
        ...


def check_model_inputs(
    info: ModelInfo, pixels: np.ndarray, detail_pixels: np.ndarray | None
) -> None:
    """What a runner is given must be what the model takes: ``pixels [B, 3, S, S]`` and, exactly
    when the model has a detail view, ``detail_pixels [B, 3, D, D]`` of the same images.

    A detail model run without its second input would silently be another model, and a plain
    model given one would silently ignore it, so both are a :class:`ConfigError`.
    """
    size = info.input_size
    if pixels.ndim != 4 or tuple(pixels.shape[1:]) != (3, size, size):
        raise ConfigError(
            f"the model takes pixels [batch, 3, {size}, {size}], got {tuple(pixels.shape)}"
        )
    detail = info.detail_input_size
    if detail is None:
        if detail_pixels is not None:
            raise ConfigError(
                "this model has no detail view, so it takes no detail pixels; pass only the pixels"
            )
        return
    if detail_pixels is None:
        raise ConfigError(
            f"this model has a detail view and also takes the images at {detail} px "
            f"(detail pixels [batch, 3, {detail}, {detail}]); preprocess them with "
            "preprocess_detail"
        )
    expected = (pixels.shape[0], 3, detail, detail)
    if tuple(detail_pixels.shape) != expected:
        raise ConfigError(
            f"the model's detail view takes detail pixels {list(expected)} (one per image), got "
            f"{list(detail_pixels.shape)}"
        )


# ---------------------------------------------------------------------------------------------
# Preprocessing: the engine's eval_transform without torch


def resize_plane(plane: np.ndarray, size: int) -> np.ndarray:
    """One float32 plane resized to ``size x size``: bicubic, antialiased (Pillow's resampler).

    torchvision's ``resize(..., BICUBIC, antialias=True)`` on float tensors is a port of this same
    algorithm (kernel ``a = -0.5`` stretched by the scale on downscaling), so both give the same
    values to float32 rounding; Pillow's is single-threaded C, which leaves the cores to the model.
    """
    resized = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F").resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return np.asarray(resized, dtype=np.float32)


def preprocess_image(image: np.ndarray, info: ModelInfo, size: int | None = None) -> np.ndarray:
    """One rendered image (``H x W x 3`` or ``H x W`` uint8) -> normalised ``[3, S, S]`` float32.

    Resize the whole image to ``S x S`` (bicubic, antialiased), clamp to [0, 1], then
    ``(x - mean) / std``: what the torch engine does at test time. A grey image (three equal
    channels) is resized once. ``size``: ``S``, the model's ``input_size`` unless given (the
    detail view's input is the same image at ``detail_input_size``).
    """
    pixels = _rgb(image)
    size = info.input_size if size is None else size
    unit = pixels.astype(np.float32) / np.float32(255.0)
    grey = bool(
        (pixels[:, :, 0] == pixels[:, :, 1]).all() and (pixels[:, :, 0] == pixels[:, :, 2]).all()
    )
    if grey:
        plane = resize_plane(unit[:, :, 0], size)
        resized = np.stack([plane, plane, plane])
    else:
        resized = np.stack([resize_plane(unit[:, :, c], size) for c in range(3)])
    np.clip(resized, 0.0, 1.0, out=resized)
    mean = np.asarray(info.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(info.std, dtype=np.float32).reshape(3, 1, 1)
    return np.ascontiguousarray((resized - mean) / std, dtype=np.float32)


def preprocess(images: Sequence[np.ndarray], info: ModelInfo) -> np.ndarray:
    """A batch ``[B, 3, S, S]`` float32 from rendered images."""
    if not images:
        raise ConfigError("there are no images to run the model on")
    return np.stack([preprocess_image(image, info) for image in images])


def preprocess_detail(images: Sequence[np.ndarray], info: ModelInfo) -> np.ndarray:
    """The detail view's batch ``[B, 3, D, D]`` float32: :func:`preprocess` at the model's
    ``detail_input_size``, from the rendered images themselves (not from the smaller pixels)."""
    size = _detail_size(info)
    if not images:
        raise ConfigError("there are no images to run the model on")
    return np.stack([preprocess_image(image, info, size) for image in images])


def preprocess_inputs(
    images: Sequence[np.ndarray], info: ModelInfo
) -> tuple[np.ndarray, np.ndarray | None]:
    """Everything the model takes for rendered images: its pixels and, when it has a detail view,
    its detail pixels (else None); what ``Runner.predict`` runs."""
    pixels = preprocess(images, info)
    if info.detail_input_size is None:
        return pixels, None
    return pixels, preprocess_detail(images, info)


def _detail_size(info: ModelInfo) -> int:
    if info.detail_input_size is None:
        raise ConfigError("this model has no detail view, so it takes no detail pixels")
    return info.detail_input_size


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ConfigError(f"a rendered image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] == 3 and image.shape[0] > 0 and image.shape[1] > 0:
        return image
    raise ConfigError(f"a rendered image must be H x W x 3, got shape {image.shape}")
