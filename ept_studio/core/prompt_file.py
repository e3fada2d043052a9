"""The prompt file: one ``.safetensors`` file with only the trainable tensors and a JSON document.

Layout (the safetensors format): an 8-byte little-endian header length ``N``, ``N`` bytes of JSON
header, then the raw tensor data. The header's ``__metadata__`` map holds one key, ``ept_studio``,
whose value is the :class:`PromptFileMetadata` as JSON (``indent=2, sort_keys=True``). No PHI is
stored: the metadata describes the model, not the images it was tuned on.

Reading never unpickles anything. The header is parsed and checked here before the validated bytes
are handed to ``safetensors``; every failure is a :class:`PromptFileError` naming the file and the
reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import secrets
import struct
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors
import safetensors.torch
import torch

from ept_studio import RESEARCH_USE_NOTICE, __version__
from ept_studio.common.errors import BackboneMismatchError, ConfigError, PromptFileError
from ept_studio.core.attention import compact_prompts
from ept_studio.core.backbones.manifest import load_manifest
from ept_studio.core.conformal import ConformalSets
from ept_studio.core.detail import DETAIL_BIAS, DETAIL_PREFIX, DETAIL_WEIGHT
from ept_studio.core.methods import (
    EptConfig,
    EptEmbedding,
    LoraConfig,
    MethodConfig,
    VptConfig,
    config_from_dict,
)
from ept_studio.core.model_io import MAX_INPUT_SIZE
from ept_studio.core.temperature import Calibration

if TYPE_CHECKING:
    from ept_studio.core.backbones import LoadedBackbone

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
"""The newest prompt-file format this version of EPT Studio reads and the one it writes."""

METADATA_KEY = "ept_studio"
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
MAX_HEADER_BYTES = 16 * 1024 * 1024
MAX_CLASSES = 10_000
"""The most classes a prompt file may name: the model allocates a head row per class before the
stored head is copied in (far above any few-shot task, far below what could exhaust memory)."""
PROMPT_SUFFIX = ".prompt.prompt"
"""How EPT's Pure_Cat prompt parameters end (``backbone.blocks.{i}.attn.prompt.prompt``)."""

_DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LABEL_MODES = ("single", "multi")
_CONCAT_EMBEDDINGS = (EptEmbedding.PURE_CAT, EptEmbedding.MULTI_CAT)
_OPTIONAL = ("calibration", "conformal")
"""Blocks a file may leave out: no ``calibration``, the scores are uncalibrated; no ``conformal``,
there are no prediction sets. Written only when present."""


class _Reject(Exception):
    """Internal: why a file is refused; turned into a PromptFileError that names the file."""


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptFileMetadata:
    """What a prompt file says about itself; validated on construction, so a bad one is never saved.

    ``method`` is :meth:`MethodConfig.to_dict` output; ``rendering`` the display policy used for
    training (window / inversion), reused at inference; ``metrics`` the evaluation numbers.
    ``calibration`` (the fitted temperature) and ``conformal`` (the prediction-set thresholds) are
    optional, given as their objects or as their JSON dicts.
    """

    method: dict[str, Any]
    backbone: str
    backbone_sha256: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    label_mode: str
    class_names: tuple[str, ...]
    rendering: dict[str, Any] = dataclasses.field(default_factory=lambda: {"policy": "file"})
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    app_version: str = __version__
    created: str = dataclasses.field(default_factory=_utc_now)
    notice: str = RESEARCH_USE_NOTICE
    compact: bool = False
    seed: int | None = None
    calibration: Calibration | None = None
    conformal: ConformalSets | None = None
    detail_input_size: int | None = None
    """The detail view's input size (:mod:`ept_studio.core.detail`): the file then also holds its
    prototype head, ``detail.weight`` and ``detail.bias``. None: no detail view."""

    def __post_init__(self) -> None:
        try:
            _validate(self)
        except _Reject as err:
            raise PromptFileError(f"invalid prompt-file metadata: {err}") from err

    @property
    def method_config(self) -> MethodConfig:
        """The tuning method's config, rebuilt from :attr:`method`."""
        return config_from_dict(self.method)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (tuples as lists)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for name in ("mean", "std", "class_names"):
            data[name] = list(data[name])
        data["method"] = dict(self.method)
        data["rendering"] = dict(self.rendering)
        data["metrics"] = dict(self.metrics)
        for name in _OPTIONAL:
            block = data.pop(name)
            if block is not None:
                data[name] = block.to_dict()
        if data["detail_input_size"] is None:
            del data["detail_input_size"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptFileMetadata:
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored with a warning."""
        try:
            known = _known_fields(data)
        except _Reject as err:
            raise PromptFileError(str(err)) from err
        return cls(**known)


def _known_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    version = data.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _Reject("metadata has no valid 'format_version'")
    if version > FORMAT_VERSION:
        raise _Reject(
            f"it uses prompt-file format {version}, newer than the {FORMAT_VERSION} this version "
            f"of EPT Studio ({__version__}) reads; update EPT Studio to open it"
        )
    names = {f.name for f in dataclasses.fields(PromptFileMetadata)}
    missing = sorted(names - set(data) - set(_OPTIONAL) - {"detail_input_size"})
    if missing:
        raise _Reject(f"metadata is missing the required keys {missing}")
    unknown = sorted(set(data) - names)
    if unknown:
        logger.warning(
            "prompt-file metadata has keys this version of EPT Studio does not know, ignored: %s",
            [key[:40] for key in unknown[:10]],
        )
    return {name: data[name] for name in names if name in data}


def _validate(meta: PromptFileMetadata) -> None:
    """Check every field's type and range; normalise lists to tuples (the dataclass is frozen)."""
    _require_int("format_version", meta.format_version, minimum=1)
    _require_str("backbone", meta.backbone)
    sha = _require_str("backbone_sha256", meta.backbone_sha256).lower()
    if not _SHA256.fullmatch(sha):
        raise _Reject(f"'backbone_sha256' must be 64 hexadecimal digits, got {sha[:70]!r}")
    object.__setattr__(meta, "backbone_sha256", sha)
    _require_int("input_size", meta.input_size, minimum=1)
    if meta.input_size > MAX_INPUT_SIZE:
        raise _Reject(
            f"its input size {meta.input_size} is above the {MAX_INPUT_SIZE}-pixel limit "
            "(no backbone takes images that large)"
        )
    object.__setattr__(meta, "mean", _triple("mean", meta.mean))
    std = _triple("std", meta.std)
    if min(std) <= 0:
        raise _Reject(f"'std' must be positive, got {list(std)}")
    object.__setattr__(meta, "std", std)
    mode = next((m for m in _LABEL_MODES if m == meta.label_mode), None)  # also a LabelMode
    if mode is None:
        raise _Reject(
            f"'label_mode' must be one of {list(_LABEL_MODES)}, got {meta.label_mode!r:.40}"
        )
    object.__setattr__(meta, "label_mode", mode)
    object.__setattr__(meta, "class_names", _class_names(meta.class_names))
    object.__setattr__(meta, "rendering", _json_ready("rendering", meta.rendering))
    object.__setattr__(meta, "metrics", _metrics(meta.metrics))
    for name in ("app_version", "created", "notice"):
        _require_str(name, getattr(meta, name))
    _check_created(meta.created)
    if not isinstance(meta.compact, bool):
        raise _Reject(f"'compact' must be true or false, got {meta.compact!r}")
    if meta.seed is not None:
        _require_int("seed", meta.seed)
    object.__setattr__(meta, "method", _method(meta.method, meta.compact))
    _validate_blocks(meta)
    _validate_detail(meta)


def _validate_detail(meta: PromptFileMetadata) -> None:
    size = meta.detail_input_size
    if size is None:
        return
    _require_int("detail_input_size", size, minimum=meta.input_size + 1)
    if size > MAX_INPUT_SIZE:
        raise _Reject(f"its detail view's size {size} is above the {MAX_INPUT_SIZE}-pixel limit")
    if meta.label_mode != "single":
        raise _Reject("it has a detail view, which only single-label models have")


def _validate_blocks(meta: PromptFileMetadata) -> None:
    """The optional calibration and conformal blocks: objects from dicts, checked against the model."""
    calibration: object = meta.calibration
    conformal: object = meta.conformal
    try:
        if calibration is not None and not isinstance(calibration, Calibration):
            calibration = Calibration.from_dict(calibration)
        if conformal is not None and not isinstance(conformal, ConformalSets):
            conformal = ConformalSets.from_dict(conformal)
    except (ValueError, TypeError) as err:
        raise _Reject(f"its calibration metadata is damaged ({err})") from err
    if isinstance(conformal, ConformalSets) and (
        conformal.classes != len(meta.class_names) or conformal.label_mode != meta.label_mode
    ):
        raise _Reject(
            f"its prediction-set thresholds are for {conformal.classes} {conformal.label_mode}-label "
            f"classes, not this model's {len(meta.class_names)} {meta.label_mode}-label classes"
        )
    object.__setattr__(meta, "calibration", calibration)
    object.__setattr__(meta, "conformal", conformal)


def _require_int(name: str, value: object, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Reject(f"'{name}' must be a whole number, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise _Reject(f"'{name}' must be at least {minimum}, got {value}")
    return value


def _require_str(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _Reject(f"'{name}' must be a non-empty text, got {type(value).__name__}")
    return value


def _require_dict(name: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise _Reject(f"'{name}' must be a JSON object, got {type(value).__name__}")
    return value


def _json_ready(name: str, value: object) -> dict[str, Any]:
    data = dict(_require_dict(name, value))
    try:
        json.dumps(data)
    except (TypeError, ValueError, RecursionError) as err:
        raise _Reject(f"'{name}' must hold only JSON values ({err})") from err
    return data


def _is_number(value: object) -> bool:
    """An int or float that also fits a float (a 400-digit JSON integer does not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, float) or abs(value) < 2**1023


def _triple(name: str, value: object) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(map(_is_number, value)):
        raise _Reject(f"'{name}' must be 3 numbers (one per colour channel), got {value!r:.80}")
    triple = (float(value[0]), float(value[1]), float(value[2]))
    if not all(map(math.isfinite, triple)):
        raise _Reject(f"'{name}' must be finite, got {list(triple)}")
    return triple


def _class_names(value: object) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _Reject(f"'class_names' must be a non-empty list, got {type(value).__name__}")
    if len(value) > MAX_CLASSES:
        raise _Reject(f"it names {len(value)} classes, above the limit of {MAX_CLASSES}")
    if not all(isinstance(name, str) and name for name in value):
        raise _Reject("'class_names' must all be non-empty texts")
    if len(set(value)) != len(value):
        raise _Reject(f"'class_names' must be unique, got {list(value)!r:.200}")
    return tuple(value)


def _metrics(value: object) -> dict[str, float]:
    metrics = _require_dict("metrics", value)
    bad = [key for key, number in metrics.items() if not _is_number(number)]
    if bad:
        raise _Reject(f"'metrics' must map names to numbers; not numbers: {bad[:5]}")
    return {key: float(number) for key, number in metrics.items()}


def _check_created(value: str) -> None:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as err:
        raise _Reject(f"'created' must be an ISO-8601 time, got {value[:40]!r}") from err


def _method(value: object, compact: bool) -> dict[str, Any]:
    data = dict(_require_dict("method", value))
    try:
        config = config_from_dict(data)
    except (ConfigError, ValueError, TypeError) as err:  # a bad enum value escapes as ValueError
        raise _Reject(f"'method' is not a valid tuning-method config: {err}") from err
    if bool(getattr(config, "compact", False)) != compact:
        raise _Reject(f"'compact' is {compact} but the method config says otherwise")
    return data


# ---------------------------------------------------------------------------------------------
# Writing


def backbone_fields(loaded: LoadedBackbone) -> dict[str, Any]:
    """The :class:`PromptFileMetadata` fields that describe the backbone a model was tuned on."""
    spec = loaded.spec
    return {
        "backbone": spec.name,
        "backbone_sha256": loaded.weights_sha256,
        "input_size": spec.input_size,
        "mean": spec.mean,
        "std": spec.std,
    }


def save_prompt_file(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: PromptFileMetadata
) -> str:
    """Write ``tensors`` (contiguous CPU float32) and ``metadata`` atomically; return the sha256."""
    path = Path(path)
    prepared = {
        name: t.detach().to("cpu", torch.float32).contiguous().clone()
        for name, t in tensors.items()
    }
    try:
        _check_tensors(prepared, metadata)
        blob = safetensors.torch.save(prepared, metadata={METADATA_KEY: metadata.to_json()})
        _parse_metadata(_parse_header(blob))  # never write what read_prompt_file would refuse
    except _Reject as err:
        raise PromptFileError(f"{path}: not saved, {err}") from err
    if len(blob) > DEFAULT_MAX_BYTES:
        logger.warning(
            "the prompt file is %.0f MB; reading it back needs a max_bytes above the default",
            len(blob) / 1e6,
        )
    _write_atomically(path, blob)
    return hashlib.sha256(blob).hexdigest()


def _write_atomically(path: Path, blob: bytes) -> None:
    """A temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    if not path.parent.is_dir():
        raise PromptFileError(f"{path}: not saved, the folder {path.parent} does not exist")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temporary, "xb") as handle:
            handle.write(blob)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise PromptFileError(f"{path}: not saved, {err.strerror or err}") from err


# ---------------------------------------------------------------------------------------------
# Reading


def read_prompt_file(
    path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[dict[str, torch.Tensor], PromptFileMetadata]:
    """The tensors (CPU float32) and metadata of a prompt file, after checking every header byte."""
    path = Path(path)
    try:
        data = _read_bytes(path, max_bytes)
        header = _parse_header(data)
        metadata = _parse_metadata(header)
        _check_named_backbone_size(metadata)
        tensors = _load_tensors(data)
        _check_tensors(tensors, metadata)
    except _Reject as err:
        raise PromptFileError(f"{path}: cannot be used as a prompt file, {err}") from err
    return tensors, metadata


def _read_bytes(path: Path, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise _Reject("it is a folder")
        if size == 0:
            raise _Reject("file is empty")
        if size > max_bytes:
            raise _Reject(f"file is {size / 1e6:.1f} MB, above the {max_bytes / 1e6:.1f} MB limit")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError as err:
        raise _Reject("file not found") from err
    except OSError as err:
        raise _Reject(f"file cannot be read ({err.strerror or err})") from err
    if len(data) < 8:
        raise _Reject(f"file is truncated ({len(data)} bytes, not even a header length)")
    if len(data) > max_bytes:
        raise _Reject(f"file grew above the {max_bytes / 1e6:.1f} MB limit while being read")
    return data


def _parse_header(data: bytes) -> dict[str, Any]:
    (length,) = struct.unpack("<Q", data[:8])
    available = len(data) - 8
    if length == 0:
        raise _Reject("its header length is 0 (not a safetensors file)")
    if length > min(available, MAX_HEADER_BYTES):
        raise _Reject(
            f"its header length {length} does not fit the {available} bytes that follow or the "
            f"{MAX_HEADER_BYTES // (1024 * 1024)} MiB limit (truncated or not a safetensors file)"
        )
    header = _json_object(data[8 : 8 + length], "its header")
    _check_layout(header, available - length)
    return header


def _json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """``json.loads`` refusing duplicate keys, every failure turned into a :class:`_Reject`."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        value = json.loads(text, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as err:
        raise _Reject(f"{what} is not UTF-8 text") from err
    except (ValueError, RecursionError) as err:
        raise _Reject(f"{what} is not valid JSON ({str(err)[:80]})") from err
    if not isinstance(value, dict):
        raise _Reject(f"{what} must be a JSON object, got a {type(value).__name__}")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key appears twice")
    return result


def _check_layout(header: Mapping[str, Any], data_size: int) -> None:
    """Every tensor entry well typed and sized; together they tile the data section exactly."""
    spans = sorted(
        _tensor_span(name, entry, data_size)
        for name, entry in header.items()
        if name != "__metadata__"
    )
    position = 0
    for begin, end in spans:
        if begin != position:
            raise _Reject("its tensors overlap or leave gaps in the data section")
        position = end
    if position != data_size:
        raise _Reject(f"its tensors cover {position} of the {data_size} data bytes")


def _tensor_span(name: str, entry: object, data_size: int) -> tuple[int, int]:
    label = f"tensor {name[:80]!r}"
    if not isinstance(entry, dict):
        raise _Reject(f"{label} is not described by a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in _DTYPE_SIZES:
        raise _Reject(f"{label} has dtype {dtype!r:.20}; only {sorted(_DTYPE_SIZES)} are allowed")
    if not isinstance(shape, list) or not all(_is_whole(d) for d in shape):
        raise _Reject(f"{label} has a shape that is not a list of non-negative whole numbers")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(map(_is_whole, offsets)):
        raise _Reject(f"{label} has data_offsets that are not two non-negative whole numbers")
    begin, end = offsets
    if not begin <= end <= data_size:
        raise _Reject(
            f"{label} has data_offsets [{begin}, {end}] outside the {data_size} data bytes"
        )
    if end - begin != _DTYPE_SIZES[dtype] * math.prod(shape):
        raise _Reject(
            f"{label} has {end - begin} bytes, not what dtype {dtype} x shape {shape} needs"
        )
    return begin, end


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_metadata(header: Mapping[str, Any]) -> PromptFileMetadata:
    strings = header.get("__metadata__")
    if strings is None:
        raise _Reject("it has no metadata (not a prompt file written by EPT Studio)")
    if not isinstance(strings, dict) or not all(isinstance(v, str) for v in strings.values()):
        raise _Reject("its __metadata__ must map names to texts")
    document = strings.get(METADATA_KEY)
    if document is None:
        raise _Reject(f"its metadata has no '{METADATA_KEY}' entry (not written by EPT Studio)")
    document_object = _json_object(document, "its EPT Studio metadata")
    try:
        return PromptFileMetadata.from_dict(document_object)
    except PromptFileError as err:
        raise _Reject(str(err)) from err


def _check_named_backbone_size(metadata: PromptFileMetadata) -> None:
    """A backbone of the manifest takes one image size, the one its prompts were tuned at.

    Checked before the backbone is built at the file's size, which would otherwise allocate its
    position grid (and every image) at whatever size the file claims.
    """
    spec = load_manifest().get(metadata.backbone)
    if spec is not None and spec.input_size != metadata.input_size:
        raise _Reject(
            f"its input size {metadata.input_size} is not the {spec.input_size} pixels that "
            f"backbone {spec.name} takes"
        )


def _load_tensors(data: bytes) -> dict[str, torch.Tensor]:
    """Only after every check: the validated bytes themselves (no second read of the file)."""
    try:
        loaded = safetensors.torch.load(data)
    except (safetensors.SafetensorError, ValueError, RuntimeError, TypeError, OverflowError) as err:
        raise _Reject(f"its tensors cannot be read ({str(err)[:120]})") from err
    return {name: tensor.to(torch.float32) for name, tensor in loaded.items()}


def _check_tensors(tensors: Mapping[str, torch.Tensor], metadata: PromptFileMetadata) -> None:
    if not tensors:
        raise _Reject("it holds no tensors")
    for name, tensor in tensors.items():
        if not name:
            raise _Reject("a tensor has an empty name")
        if not bool(torch.isfinite(tensor).all()):
            raise _Reject(f"tensor {name[:80]!r} holds NaN or infinite values")
    head = tensors.get("head.weight")
    classes = len(metadata.class_names)
    if head is None:
        raise _Reject("it has no classification head ('head.weight')")
    if head.ndim != 2 or head.shape[0] != classes:
        raise _Reject(f"the head has shape {tuple(head.shape)} but there are {classes} class names")
    _check_method_shapes(tensors, metadata.method_config)
    _check_detail_tensors(tensors, metadata, tuple(head.shape))


def _check_detail_tensors(
    tensors: Mapping[str, torch.Tensor], metadata: PromptFileMetadata, head: tuple[int, ...]
) -> None:
    """A file with a detail view holds its head (the shape of the tuned head); one without, none."""
    stored = {name for name in tensors if name.startswith(DETAIL_PREFIX)}
    if metadata.detail_input_size is None:
        if stored:
            raise _Reject(f"it holds detail-view tensors {sorted(stored)[:2]} but no detail size")
        return
    expected = {DETAIL_WEIGHT: head, DETAIL_BIAS: head[:1]}
    if stored != set(expected):
        raise _Reject(
            f"its detail view needs the tensors {sorted(expected)}, the file holds {sorted(stored)}"
        )
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise _Reject(
                f"tensor {name!r} has shape {tuple(tensors[name].shape)}, the head's is {shape}"
            )


def _check_method_shapes(tensors: Mapping[str, torch.Tensor], config: MethodConfig) -> None:
    """The sizes the config promises are the sizes stored, so building the model cannot explode.

    The model allocates the method's tensors at the config's sizes before the stored ones are copied
    in, so a config that promises a size must also hold the tensors that bound it.
    """
    if isinstance(config, EptConfig) and config.embedding in _CONCAT_EMBEDDINGS:
        expected, suffix, axis = config.length, PROMPT_SUFFIX, -1
    elif isinstance(config, VptConfig):
        expected, suffix, axis = config.length, "vpt.tokens", 1
    elif isinstance(config, LoraConfig):
        expected, suffix, axis = config.rank, ".lora_a_q", 0
    else:
        return
    sized = {name: tensor for name, tensor in tensors.items() if name.endswith(suffix)}
    if not sized:
        raise _Reject(
            f"its method config promises {config.method.value} tensors of size {expected} but the "
            f"file holds none of the method's tensors (names ending in {suffix!r})"
        )
    for name, tensor in sized.items():
        if tensor.ndim < 2 or tensor.shape[axis] != expected:
            raise _Reject(
                f"tensor {name[:80]!r} has shape {tuple(tensor.shape)}, "
                f"which does not match the method config ({expected} along axis {axis})"
            )


# ---------------------------------------------------------------------------------------------
# Backbone check and the compact form


def check_backbone(metadata: PromptFileMetadata, backbone_name: str, backbone_sha256: str) -> None:
    """Refuse to put prompts on other weights than the ones they were tuned on, or at another size.

    The size is checked again here for a backbone loaded before the file was read (the GUI keeps
    one): a file may carry its weights' checksum under another backbone name.
    """
    if metadata.backbone_sha256 == backbone_sha256.strip().lower():
        spec = load_manifest().get(backbone_name)
        if spec is not None and spec.input_size != metadata.input_size:
            raise BackboneMismatchError(
                f"this prompt file's input size {metadata.input_size} is not the "
                f"{spec.input_size} pixels that backbone {spec.name} takes"
            )
        return
    raise BackboneMismatchError(
        f"this prompt file was tuned on backbone {metadata.backbone} "
        f"(sha256 {metadata.backbone_sha256[:12]}...) but the loaded backbone is {backbone_name} "
        f"(sha256 {backbone_sha256[:12]}...); load the same backbone"
    )


def to_compact(
    tensors: Mapping[str, torch.Tensor], metadata: PromptFileMetadata
) -> tuple[dict[str, torch.Tensor], PromptFileMetadata]:
    """The inference-only form of an EPT Pure_Cat model: each prompt ``[N, L]`` becomes ``[N, 1]``.

    Exact: the forward pass depends on a prompt row only through its logsumexp. The compact model
    cannot be trained further; build it with ``EptConfig(length=1, compact=True)``.
    """
    config = metadata.method_config
    if not isinstance(config, EptConfig) or config.embedding is not EptEmbedding.PURE_CAT:
        raise PromptFileError(
            f"only EPT with the pure_cat embedding has a compact form, not {metadata.method!r:.120}"
        )
    prompts = {name: t for name, t in tensors.items() if name.endswith(PROMPT_SUFFIX)}
    if not prompts:
        raise PromptFileError("there are no EPT prompt tensors to compact")
    bad = [name for name, t in prompts.items() if t.ndim != 2]
    if bad:
        raise PromptFileError(f"EPT prompt {bad[0]!r} is not a [tokens, length] matrix")
    if config.compact:
        return dict(tensors), metadata
    compacted = {**tensors, **compact_prompts(prompts)}
    method = dataclasses.replace(config, length=1, compact=True).to_dict()
    return compacted, dataclasses.replace(metadata, method=method, compact=True)
