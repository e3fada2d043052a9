"""Export a tuned model to ONNX with its attention maps, then prove the export matches torch.

The graph takes ``pixels [batch, 3, S, S]`` (normalised, see :func:`~ept_studio.core.model_io.preprocess`)
and, for a model with a detail view (:mod:`ept_studio.core.detail`), also ``detail_pixels [batch, 3,
D, D]``, the same images at the detail view's size (:func:`~ept_studio.core.model_io.preprocess_detail`);
it returns ``logits [batch, C]``, ``probabilities [batch, C]`` (softmax, or per-class sigmoid for
multi-label models), ``attention [batch, heads, patches]`` (the CLS row of the last block over the
patch tokens, after the tuning method: EPT's prompt columns are dropped, so it is the tuned model's
attention) and ``rollout [batch, patches]`` (attention rollout over every block, see
:func:`attention_rollout`). Every method exports the same way, through the legacy (tracing)
exporter: all blocks run the reference attention path with capture on, and VPT's prompt tokens come
in through its forward pre-hooks, which tracing records like any other operation. EPT's Pure_Cat
prompts are traced in their exact compact form (:class:`LogsumexpPrompt`, from
:mod:`ept_studio.core.attention`), one column per row instead of ``L``.

With a detail view, ``logits`` are the combined ones,
``log((softmax(tuned) + softmax(detail)) / 2)`` (:func:`~ept_studio.core.detail.combine_logits_torch`,
traced as :func:`exportable_combine`), and ``probabilities`` their softmax (the mean of the two
views' probabilities); ``attention`` and ``rollout`` stay the tuned model's, the maps the overlay
shows. The detail view runs the same frozen backbone weights (its position embedding resampled for the
larger grid), and the exporter stores equal weights once, so the file grows by little more than the
detail view's position embedding and head (unless the tuning method changed the backbone's own
weights, as full fine-tuning does: then both are stored). An export never drops it: a model whose metadata has a
detail size must be exported with its detail view, and the parity check feeds both inputs.

Every export is checked before the file appears: ONNX Runtime runs the new file on real rendered
images and its outputs must match torch (logits within 1e-4, attention and rollout within 1e-5; a
detail model's torch logits are its two views' own forward passes, combined), else
:class:`~ept_studio.common.errors.ParityError` and nothing is written.

The graph's ``probabilities`` are never calibrated: a stored temperature (``ModelInfo.calibration``)
is applied by the runners, in numpy, to the ``logits`` (:func:`~ept_studio.core.model_io.model_outputs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import secrets
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common.errors import ConfigError, ExportError, OnnxModelError, ParityError
from ept_studio.core.attention import ConcatPrompt, LogsumexpPrompt
from ept_studio.core.detail import combine_logits_torch
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.model_io import (
    DETAIL_INPUT_NAME,
    INPUT_NAME,
    OUTPUT_NAMES,
    ModelInfo,
    calibrated_probabilities,
    preprocess_inputs,
)
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata

logger = logging.getLogger(__name__)

DEFAULT_OPSET = 17
LOGITS_TOLERANCE = 1e-4
ATTENTION_TOLERANCE = 1e-5
_TRACER_WARNING: type[Warning] = getattr(torch.jit, "TracerWarning", Warning)


def attention_rollout(weights: Sequence[torch.Tensor], prefix_tokens: int) -> torch.Tensor:
    """The CLS row of the attention rollout (Abnar & Zuidema 2020) over the patch tokens, ``[B, P]``.

    Per block: the mean over heads, plus the identity (the residual path), each row renormalised to
    sum to 1; then the product through the blocks, ``A_last ... A_first``. EPT's rows sum to less
    than 1 (the prompt columns were dropped after the softmax); renormalising after adding the
    identity treats that missing mass like the rest, so every factor is row-stochastic. The result
    is the CLS row of the product over the patch columns; its entries sum to at most 1 (the class
    token and any prompt or register tokens take the rest). Only the CLS row is carried through the
    product (a vector times each matrix, last block first), which costs next to nothing.
    """
    if not weights:
        raise ExportError("attention rollout needs the weights of at least one block")
    last, *earlier = reversed(weights)
    row = _residual_mix(last)[:, :1, :]
    for block_weights in earlier:
        row = row @ _residual_mix(block_weights)
    return row[:, 0, prefix_tokens:]


def _residual_mix(weights: torch.Tensor) -> torch.Tensor:
    """``[B, N, N]``: the head-mean attention plus the identity, rows renormalised to sum to 1."""
    mixed = weights.mean(dim=1)
    mixed = mixed + torch.eye(mixed.shape[-1], dtype=mixed.dtype, device=mixed.device)
    return mixed / mixed.sum(dim=-1, keepdim=True)


class InferenceModule(nn.Module):
    """A tuned model with the four outputs of the ONNX graph (what is exported, and what
    :class:`~ept_studio.core.torch_runner.TorchRunner` runs).

    ``detail``: the model's detail view (single-label only); then :meth:`forward` takes the detail
    pixels too and its logits are the two views' combined ones, while the attention maps stay the
    tuned model's.
    """

    def __init__(
        self, model: TunedModel, label_mode: LabelMode | str, detail: TunedModel | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.multi_label = LabelMode(label_mode) is LabelMode.MULTI
        if detail is not None and self.multi_label:
            raise ConfigError("a multi-label model has no detail view; export it without one")
        self.detail = detail
        self.blocks = tuple(range(len(model.backbone.blocks)))
        self.detail_blocks = () if detail is None else tuple(range(len(detail.backbone.blocks)))

    def forward(
        self, pixels: torch.Tensor, detail_pixels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        if (self.detail is None) != (detail_pixels is None):
            raise ConfigError(
                "the detail pixels go with a detail view: give both or neither"
                if self.detail is None
                else "this model has a detail view and needs the detail pixels too"
            )
        logits, weights = self.model.forward_with_attention(pixels, self.blocks)
        if self.detail is not None and detail_pixels is not None:
            # The reference attention path, like the tuned model's (the fused one traces to a
            # graph that ONNX Runtime's fp16 converter breaks); the maps themselves are unused.
            detail_logits, _ = self.detail.forward_with_attention(detail_pixels, self.detail_blocks)
            logits = exportable_combine(logits, detail_logits)
        probabilities = logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)
        attention = self.model.cls_attention(weights[-1])
        rollout = attention_rollout(weights, self.model.prefix_tokens)
        return logits, probabilities, attention, rollout


def exportable_combine(tuned: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
    """:func:`~ept_studio.core.detail.combine_logits_torch` in operators the ONNX exporter has.

    ``logaddexp`` has no ONNX form, so the pair of log-softmaxes is stacked and reduced with
    ``logsumexp`` (ONNX ``ReduceLogSumExp``, which subtracts the maximum first): the same
    ``log((softmax(tuned) + softmax(detail)) / 2)``, as stable for large logits.
    """
    both = torch.stack((torch.log_softmax(tuned, dim=-1), torch.log_softmax(detail, dim=-1)))
    return torch.logsumexp(both, dim=0) - math.log(2.0)


@contextlib.contextmanager
def compact_prompts_for_export(model: TunedModel) -> Iterator[None]:
    """While tracing, Pure_Cat prompts run as :class:`LogsumexpPrompt` (put back afterwards)."""
    swapped = []
    for block in model.backbone.blocks:
        prompt = getattr(block.attn, "prompt", None)
        if type(prompt) is ConcatPrompt and prompt.prompt.shape[-1] > 1:
            block.attn.prompt = LogsumexpPrompt(prompt)
            swapped.append((block.attn, prompt))
    try:
        yield
    finally:
        for attention, prompt in swapped:
            attention.prompt = prompt


def model_info(model: TunedModel, metadata: PromptFileMetadata, prompt_sha256: str) -> ModelInfo:
    """The description an export stores, from the prompt file the model was loaded from (with its
    detail view's size when the file has one: export it with that view, ``detail=``)."""
    grid = tuple(int(g) for g in model.backbone.patch_embed.grid_size)
    return ModelInfo(
        class_names=tuple(metadata.class_names),
        label_mode=str(metadata.label_mode),
        input_size=int(metadata.input_size),
        mean=metadata.mean,
        std=metadata.std,
        heads=int(model.backbone.blocks[-1].attn.num_heads),
        patch_grid=(grid[0], grid[1]),
        backbone=metadata.backbone,
        backbone_sha256=metadata.backbone_sha256,
        prompt_sha256=prompt_sha256,
        method=dict(metadata.method),
        rendering=dict(metadata.rendering),
        app_version=__version__,
        notice=RESEARCH_USE_NOTICE,
        calibration=metadata.calibration,
        conformal=metadata.conformal,
        detail_input_size=metadata.detail_input_size,
    )


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """How far ONNX Runtime's outputs are from torch's on the check images (max absolute errors)."""

    images: int
    provider: str
    logits_error: float
    probabilities_error: float
    attention_error: float
    rollout_error: float
    logits_tolerance: float
    attention_tolerance: float


@dataclasses.dataclass(frozen=True)
class ExportReport:
    """A written, checked ONNX file."""

    path: Path
    sha256: str
    size_bytes: int
    opset: int
    seconds: float
    parity: ParityReport


def export_onnx(
    model: TunedModel,
    path: Path,
    info: ModelInfo,
    check_images: Sequence[np.ndarray],
    *,
    opset: int = DEFAULT_OPSET,
    logits_tolerance: float = LOGITS_TOLERANCE,
    attention_tolerance: float = ATTENTION_TOLERANCE,
    detail: TunedModel | None = None,
) -> ExportReport:
    """Write ``model`` to ``path`` as ONNX with ``info`` as metadata, after a parity check.

    ``check_images`` are rendered images (``H x W x 3`` uint8); at least one, two or more also check
    the dynamic batch. The file is built next to ``path`` and renamed over it only once it passed.
    ``detail``: the model's detail view, required exactly when ``info.detail_input_size`` is set
    (the graph then takes ``detail_pixels`` too and returns the combined logits).
    """
    path = Path(path)
    _check_request(path, check_images, opset)
    _check_detail(path, info, detail)
    start = time.perf_counter()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        _trace_to_onnx(model, info, temporary, opset, detail)
        _write_metadata(temporary, info)
        parity = check_parity(
            model,
            temporary,
            check_images,
            logits_tolerance=logits_tolerance,
            attention_tolerance=attention_tolerance,
            detail=detail,
        )
        os.replace(temporary, path)
    except ExportError as err:
        raise type(err)(f"{path}: not exported, {err}") from err
    except OSError as err:
        raise ExportError(f"{path}: not exported, {err.strerror or err}") from err
    finally:
        temporary.unlink(missing_ok=True)
    data = path.read_bytes()
    digest, seconds = hashlib.sha256(data).hexdigest(), time.perf_counter() - start
    report = ExportReport(path, digest, len(data), opset, seconds, parity)
    logger.info("exported an ONNX model (%d bytes), parity %s", report.size_bytes, parity)
    return report


def _check_request(path: Path, check_images: Sequence[np.ndarray], opset: int) -> None:
    if not check_images:
        raise ExportError(f"{path}: not exported, the parity check needs at least one image")
    if opset < DEFAULT_OPSET:
        raise ExportError(f"{path}: not exported, ONNX opset {opset} is below {DEFAULT_OPSET}")
    if not path.parent.is_dir():
        raise ExportError(f"{path}: not exported, the folder {path.parent} does not exist")


def _check_detail(path: Path, info: ModelInfo, detail: TunedModel | None) -> None:
    """The detail view and the metadata's detail size come together (nothing dropped silently)."""
    if info.detail_input_size is not None and detail is None:
        raise ExportError(
            f"{path}: not exported, the model has a {info.detail_input_size} px detail view but "
            "none was given to export; load the prompt file with its detail view"
        )
    if info.detail_input_size is None and detail is not None:
        raise ExportError(
            f"{path}: not exported, a detail view was given but the model's description has no "
            "detail size; describe it with model_info from a prompt file that has the view"
        )
    if detail is not None and info.label_mode != "single":
        raise ExportError(f"{path}: not exported, only single-label models have a detail view")


def _trace_to_onnx(
    model: TunedModel,
    info: ModelInfo,
    path: Path,
    opset: int,
    detail: TunedModel | None = None,
) -> None:
    """The legacy (tracing) exporter: fast, and it records VPT's pre-hooks and EPT's capture path."""
    module = InferenceModule(model, info.label_mode, detail)
    device = next(model.parameters()).device
    example: tuple[torch.Tensor, ...] = (
        torch.zeros(2, 3, info.input_size, info.input_size, device=device),
    )
    inputs = [INPUT_NAME]
    if detail is not None and info.detail_input_size is not None:
        size = info.detail_input_size
        example = (*example, torch.zeros(2, 3, size, size, device=device))
        inputs.append(DETAIL_INPUT_NAME)
    batch = {0: "batch"}
    was_training = model.training
    model.eval()
    if detail is not None:
        detail.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad(), compact_prompts_for_export(model):
            # The legacy exporter announces its deprecation and tracing notes; neither is actionable.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=_TRACER_WARNING)
            torch.onnx.export(
                module,
                example,
                str(path),
                input_names=inputs,
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={name: batch for name in (*inputs, *OUTPUT_NAMES)},
                opset_version=opset,
                dynamo=False,
                external_data=False,
                do_constant_folding=True,
            )
    except (RuntimeError, TypeError, ValueError, torch.onnx.errors.OnnxExporterError) as err:
        raise ExportError(f"the model could not be traced to ONNX ({err})") from err
    finally:
        model.train(was_training)


def _write_metadata(path: Path, info: ModelInfo) -> None:
    proto = onnx.load(str(path))
    _declare_shapes(proto, info)
    del proto.metadata_props[:]
    for key, value in sorted(info.to_metadata_props().items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "EPT Studio"
    proto.producer_version = __version__
    proto.doc_string = RESEARCH_USE_NOTICE
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"the exported ONNX graph is not valid ONNX ({err})") from err
    onnx.save(proto, str(path))


def _declare_shapes(proto: onnx.ModelProto, info: ModelInfo) -> None:
    """State every output's fixed sizes (tracing can leave some symbolic); batch stays dynamic."""
    classes = len(info.class_names)
    sizes = {
        INPUT_NAME: [3, info.input_size, info.input_size],
        "logits": [classes],
        "probabilities": [classes],
        "attention": [info.heads, info.patches],
        "rollout": [info.patches],
    }
    if info.detail_input_size is not None:
        sizes[DETAIL_INPUT_NAME] = [3, info.detail_input_size, info.detail_input_size]
    for value in (*proto.graph.input, *proto.graph.output):
        if value.name not in sizes:
            continue
        shape = value.type.tensor_type.shape
        del shape.dim[:]
        shape.dim.add().dim_param = "batch"
        for size in sizes[value.name]:
            shape.dim.add().dim_value = size


@torch.no_grad()
def check_parity(
    model: TunedModel,
    onnx_path: Path,
    images: Sequence[np.ndarray],
    *,
    logits_tolerance: float = LOGITS_TOLERANCE,
    attention_tolerance: float = ATTENTION_TOLERANCE,
    detail: TunedModel | None = None,
) -> ParityReport:
    """Run ``onnx_path`` in ONNX Runtime (CPU) and ``model`` in torch on ``images``; compare.

    The torch logits come from the model's own forward pass (EPT's fast path), its attention from
    the capture path; ONNX Runtime runs the whole batch and, to check the dynamic batch, the first
    image alone. With ``detail`` (the model's detail view) both get the detail pixels too and the
    torch logits are the two views' own forward passes combined. Raises :class:`ParityError` when
    any output is further off than the tolerances.
    """
    try:
        runner = OnnxRunner(Path(onnx_path), device="cpu")
    except OnnxModelError as err:
        raise ExportError(f"the exported model cannot be opened by ONNX Runtime: {err}") from err
    if (detail is None) != (runner.info.detail_input_size is None):
        raise ExportError(
            "the exported model and the torch model differ in having a detail view; export again"
        )
    pixels, detail_pixels = preprocess_inputs(images, runner.info)
    ours = runner.run(pixels, detail_pixels)
    single = runner.run(pixels[:1], None if detail_pixels is None else detail_pixels[:1])
    reference = _torch_reference(model, pixels, runner.info.label_mode, detail, detail_pixels)
    reference[1] = calibrated_probabilities(runner.info, reference[0], reference[1])
    pairs = zip(
        (ours.logits, ours.probabilities, ours.attention, ours.rollout),
        reference,
        (single.logits, single.probabilities, single.attention, single.rollout),
        strict=True,
    )
    logits, probabilities, attention, rollout = (_max_error(*pair) for pair in pairs)
    report = ParityReport(
        len(images),
        runner.provider,
        logits,
        probabilities,
        attention,
        rollout,
        logits_tolerance,
        attention_tolerance,
    )
    _raise_unless_close(report)
    return report


def _torch_reference(
    model: TunedModel,
    pixels: np.ndarray,
    label_mode: str,
    detail: TunedModel | None = None,
    detail_pixels: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Logits from the model's own forward pass (combined with the detail view's own), the other
    outputs from the export graph."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        tensor = torch.from_numpy(pixels).to(device)
        if detail is None or detail_pixels is None:
            outputs = list(InferenceModule(model, label_mode)(tensor))
            outputs[0] = model(tensor)
        else:
            second = torch.from_numpy(detail_pixels).to(device)
            outputs = list(InferenceModule(model, label_mode, detail.eval())(tensor, second))
            outputs[0] = combine_logits_torch(model(tensor), detail(second))
    finally:
        model.train(was_training)
    return [t.float().cpu().numpy() for t in outputs]


def _max_error(onnx_batch: np.ndarray, torch_batch: np.ndarray, onnx_single: np.ndarray) -> float:
    if onnx_batch.shape != torch_batch.shape or onnx_single.shape[1:] != torch_batch.shape[1:]:
        return float("inf")
    batch = float(np.max(np.abs(onnx_batch.astype(np.float64) - torch_batch)))
    single = float(np.max(np.abs(onnx_single.astype(np.float64) - torch_batch[:1])))
    return max(batch, single)


def _raise_unless_close(report: ParityReport) -> None:
    failures = [
        f"{name} differ by {error:.3g} (tolerance {tolerance:g})"
        for name, error, tolerance in (
            ("logits", report.logits_error, report.logits_tolerance),
            ("probabilities", report.probabilities_error, report.logits_tolerance),
            ("attention maps", report.attention_error, report.attention_tolerance),
            ("rollout maps", report.rollout_error, report.attention_tolerance),
        )
        if not error <= tolerance  # also catches NaN
    ]
    if failures:
        raise ParityError(
            f"the ONNX export does not reproduce the torch model on {report.images} check "
            f"images: {'; '.join(failures)}; please report this as a bug"
        )
