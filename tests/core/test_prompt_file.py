"""The prompt file: round trips on real tiny models, the compact EPT form, sizes, hostile files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from torch import nn

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.common.errors import BackboneMismatchError, PromptFileError
from ept_studio.core.methods import (
    BiasConfig,
    EptConfig,
    FullConfig,
    LinearConfig,
    LoraConfig,
    MethodConfig,
    VptConfig,
)
from ept_studio.core.model import LabelMode, TunedModel
from ept_studio.core.prompt_file import (
    PromptFileMetadata,
    check_backbone,
    read_prompt_file,
    save_prompt_file,
    to_compact,
)

SHA_A = hashlib.sha256(b"backbone a").hexdigest()
SHA_B = hashlib.sha256(b"backbone b").hexdigest()
CLASSES = ("benign", "malignant")

torch.set_num_threads(1)


def _metadata(method: MethodConfig, **overrides: Any) -> PromptFileMetadata:
    fields: dict[str, Any] = {
        "method": method.to_dict(),
        "backbone": "tiny-vit-test",
        "backbone_sha256": SHA_A,
        "input_size": 32,
        "mean": (0.5, 0.5, 0.5),
        "std": (0.25, 0.25, 0.25),
        "label_mode": "single",
        "class_names": CLASSES,
        "metrics": {"accuracy": 0.75},
        "seed": 7,
    }
    fields.update(overrides)
    return PromptFileMetadata(**fields)


def _tuned(
    make_vit: Callable[..., nn.Module], method: MethodConfig, scramble: int | None = 0
) -> TunedModel:
    """A tiny tuned model; ``scramble`` seeds random trainable tensors so the method matters."""
    model = TunedModel(make_vit(seed=0), method, num_classes=len(CLASSES))
    if scramble is not None:
        generator = torch.Generator().manual_seed(scramble)
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.requires_grad:
                    parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.eval()


def _pixels() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def _logits(model: nn.Module) -> torch.Tensor:
    return model(_pixels())


def _header(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length])  # type: ignore[no-any-return]


METHODS = {
    "ept-deep": EptConfig(length=4),
    "ept-shallow": EptConfig.shallow(length=3),
    "ept-reference-path": EptConfig(length=4, fast_path=False),
    "ept-multi-cat": EptConfig(length=4, embedding="multi_cat"),
    "linear": LinearConfig(),
    "bias": BiasConfig(),
    "lora": LoraConfig(rank=2),
    "vpt-deep": VptConfig(length=2),
    "full": FullConfig(),
}


@pytest.mark.parametrize("method", METHODS.values(), ids=METHODS.keys())
def test_round_trip_reproduces_logits_exactly(
    tmp_path: Path, tiny_vit: Callable[..., nn.Module], method: MethodConfig
) -> None:
    model = _tuned(tiny_vit, method)
    metadata = _metadata(method)
    path = tmp_path / "model.safetensors"
    sha = save_prompt_file(path, model.trainable_state(), metadata)
    assert sha == hashlib.sha256(path.read_bytes()).hexdigest()

    tensors, loaded = read_prompt_file(path)
    assert loaded == metadata
    assert set(tensors) == set(model.trainable_state())
    fresh = _tuned(tiny_vit, loaded.method_config, scramble=None)
    assert (_logits(fresh) - _logits(model)).abs().max().item() > 1e-4
    fresh.load_trainable_state(tensors)
    assert (_logits(fresh) - _logits(model)).abs().max().item() == 0.0


def test_file_holds_only_trainable_tensors_and_one_metadata_document(
    tmp_path: Path, tiny_vit: Callable[..., nn.Module]
) -> None:
    model = _tuned(tiny_vit, EptConfig(length=5))
    metadata = _metadata(EptConfig(length=5))
    path = tmp_path / "ept.safetensors"
    save_prompt_file(path, model.trainable_state(), metadata)
    header = _header(path)
    assert header.pop("__metadata__") == {"ept_studio": metadata.to_json()}
    assert metadata.to_json() == json.dumps(metadata.to_dict(), indent=2, sort_keys=True)
    assert sorted(header) == sorted(model.trainable_state())
    assert header["backbone.blocks.0.attn.prompt.prompt"]["shape"] == [17, 5]
    assert {entry["dtype"] for entry in header.values()} == {"F32"}
    document = json.loads(metadata.to_json())
    assert document["notice"] == RESEARCH_USE_NOTICE
    assert document["format_version"] == 1
    assert document["created"].endswith("+00:00")
    assert document["class_names"] == list(CLASSES)


def test_tensors_are_saved_as_contiguous_cpu_float32(tmp_path: Path) -> None:
    weight = torch.arange(6, dtype=torch.float64).reshape(3, 2).t()  # [2, 3], not contiguous
    path = tmp_path / "head.safetensors"
    save_prompt_file(
        path, {"head.weight": weight, "head.bias": torch.zeros(2)}, _metadata(LinearConfig())
    )
    tensors, _ = read_prompt_file(path)
    assert tensors["head.weight"].dtype == torch.float32
    assert tensors["head.weight"].tolist() == [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]]


def test_save_replaces_atomically_and_a_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "head.safetensors"
    good = {"head.weight": torch.ones(2, 3), "head.bias": torch.zeros(2)}
    save_prompt_file(path, good, _metadata(LinearConfig()))
    before = path.read_bytes()
    bad = {"head.weight": torch.full((2, 3), float("nan")), "head.bias": torch.zeros(2)}
    with pytest.raises(PromptFileError, match="NaN"):
        save_prompt_file(path, bad, _metadata(LinearConfig()))
    assert path.read_bytes() == before
    save_prompt_file(path, {**good, "head.bias": torch.ones(2)}, _metadata(LinearConfig()))
    assert read_prompt_file(path)[0]["head.bias"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["head.safetensors"]


def test_save_into_a_missing_folder_is_a_prompt_file_error(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="does not exist"):
        save_prompt_file(
            tmp_path / "nope" / "x.safetensors",
            {"head.weight": torch.zeros(2, 3), "head.bias": torch.zeros(2)},
            _metadata(LinearConfig()),
        )


def test_tensors_that_do_not_fit_the_metadata_are_not_saved(
    tmp_path: Path, tiny_vit: Callable[..., nn.Module]
) -> None:
    state = _tuned(tiny_vit, EptConfig(length=3)).trainable_state()
    path = tmp_path / "x.safetensors"
    with pytest.raises(PromptFileError, match="does not match the method config"):
        save_prompt_file(path, state, _metadata(EptConfig(length=100)))
    with pytest.raises(PromptFileError, match="no classification head"):
        save_prompt_file(path, {"head.bias": torch.zeros(2)}, _metadata(LinearConfig()))
    with pytest.raises(PromptFileError, match="3 class names"):
        save_prompt_file(path, state, _metadata(EptConfig(length=3), class_names=("a", "b", "c")))
    assert not path.exists()


# --------------------------------------------------------------------------------- compact form


@pytest.mark.parametrize("fast_path", [True, False])
def test_compact_form_reproduces_the_full_model(
    tmp_path: Path, tiny_vit: Callable[..., nn.Module], fast_path: bool
) -> None:
    config = EptConfig(length=8, fast_path=fast_path)
    model = _tuned(tiny_vit, config)
    linear = _tuned(tiny_vit, LinearConfig())
    linear.head.load_state_dict(model.head.state_dict())
    assert (_logits(model) - _logits(linear)).abs().max().item() > 1e-3  # the prompts matter

    tensors, metadata = to_compact(model.trainable_state(), _metadata(config))
    path = tmp_path / "compact.safetensors"
    save_prompt_file(path, tensors, metadata)
    loaded_tensors, loaded = read_prompt_file(path)
    assert loaded.compact is True
    assert loaded.method_config == EptConfig(length=1, compact=True, fast_path=fast_path)
    assert tuple(loaded_tensors["backbone.blocks.1.attn.prompt.prompt"].shape) == (17, 1)

    compact = _tuned(tiny_vit, loaded.method_config, scramble=None)
    compact.load_trainable_state(loaded_tensors)
    assert (_logits(compact) - _logits(model)).abs().max().item() <= 1e-5


def test_compact_is_idempotent(tiny_vit: Callable[..., nn.Module]) -> None:
    model = _tuned(tiny_vit, EptConfig(length=3))
    once = to_compact(model.trainable_state(), _metadata(EptConfig(length=3)))
    twice = to_compact(*once)
    assert twice[1] == once[1]
    assert all(torch.equal(twice[0][n], t) for n, t in once[0].items())


@pytest.mark.parametrize(
    "method", [LinearConfig(), LoraConfig(rank=2), EptConfig(length=3, embedding="add")]
)
def test_compact_refuses_other_methods(
    tiny_vit: Callable[..., nn.Module], method: MethodConfig
) -> None:
    model = _tuned(tiny_vit, method)
    with pytest.raises(PromptFileError, match=r"pure_cat|no EPT prompt"):
        to_compact(model.trainable_state(), _metadata(method))


def test_vit_b16_file_sizes(tmp_path: Path) -> None:
    """EPT L=100 on ViT-B/16: 12 x 197 x 100 = 236,400 prompt floats + a 2-class head."""
    with torch.device("meta"):
        backbone = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0)
        shapes = {
            n: t.shape
            for n, t in TunedModel(backbone, EptConfig(length=100), 2).trainable_state().items()
        }
    generator = torch.Generator().manual_seed(0)
    tensors = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    prompt_floats = sum(t.numel() for n, t in tensors.items() if n.endswith(".prompt.prompt"))
    assert prompt_floats == 236_400
    metadata = _metadata(EptConfig(length=100), backbone="vit_base_patch16_224", input_size=224)

    full = tmp_path / "full.safetensors"
    save_prompt_file(full, tensors, metadata)
    data_bytes = 4 * (236_400 + 2 * 768 + 2)
    assert full.stat().st_size - 8 - struct.unpack("<Q", full.read_bytes()[:8])[0] == data_bytes
    assert 900_000 < full.stat().st_size < 1_000_000

    small = tmp_path / "compact.safetensors"
    save_prompt_file(small, *to_compact(tensors, metadata))
    assert small.stat().st_size < 20_000
    assert small.stat().st_size > 4 * (12 * 197 + 2 * 768 + 2)


def test_default_file_sizes_on_the_offline_vit_s14(tmp_path: Path) -> None:
    """The README's numbers: EPT's defaults (L = 100, all 12 blocks) on DINOv2 ViT-S/14 at 224 px,
    12 x 257 x 100 = 308,400 prompt floats and a 2-class head: 1.24 MB, 18 kB compact."""
    with torch.device("meta"):
        backbone = timm.create_model(
            "vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=224
        )
        shapes = {
            n: t.shape for n, t in TunedModel(backbone, EptConfig(), 2).trainable_state().items()
        }
    generator = torch.Generator().manual_seed(0)
    tensors = {name: torch.randn(shape, generator=generator) for name, shape in shapes.items()}
    assert sum(t.numel() for n, t in tensors.items() if n.endswith(".prompt.prompt")) == 308_400
    metadata = _metadata(EptConfig(), backbone="vit_small_patch14_dinov2", input_size=224)

    full, small = tmp_path / "full.safetensors", tmp_path / "compact.safetensors"
    save_prompt_file(full, tensors, metadata)
    save_prompt_file(small, *to_compact(tensors, metadata))
    assert 1_230_000 < full.stat().st_size < 1_250_000
    assert 4 * (12 * 257 + 2 * 384 + 2) < small.stat().st_size < 19_000


# --------------------------------------------------------------------------------- backbone check


def test_check_backbone_accepts_the_same_weights_and_refuses_others() -> None:
    metadata = _metadata(LinearConfig())
    check_backbone(metadata, "another-name-same-weights", SHA_A.upper())
    with pytest.raises(BackboneMismatchError) as caught:
        check_backbone(metadata, "vit_small_patch14_dinov2", SHA_B)
    message = str(caught.value)
    assert f"tiny-vit-test (sha256 {SHA_A[:12]}...)" in message
    assert f"vit_small_patch14_dinov2 (sha256 {SHA_B[:12]}...)" in message
    assert "load the same backbone" in message
    assert isinstance(caught.value, PromptFileError)


# --------------------------------------------------------------------------------- metadata


def test_metadata_validates_on_construction() -> None:
    with pytest.raises(PromptFileError, match="64 hexadecimal"):
        _metadata(LinearConfig(), backbone_sha256="abc")
    with pytest.raises(PromptFileError, match="3 numbers"):
        _metadata(LinearConfig(), mean=(0.5, 0.5))
    with pytest.raises(PromptFileError, match="label_mode"):
        _metadata(LinearConfig(), label_mode="both")
    with pytest.raises(PromptFileError, match="compact"):
        _metadata(EptConfig(length=4), compact=True)
    with pytest.raises(PromptFileError, match="only JSON values"):
        _metadata(LinearConfig(), rendering={"policy": object()})
    with pytest.raises(PromptFileError, match="unique"):
        _metadata(LinearConfig(), class_names=("a", "a"))


def test_metadata_dict_round_trip() -> None:
    metadata = _metadata(
        EptConfig(length=4, blocks=(0, 1)), rendering={"policy": "window", "center": 40}
    )
    assert PromptFileMetadata.from_dict(json.loads(metadata.to_json())) == metadata
    assert metadata.method_config == EptConfig(length=4, blocks=(0, 1))


def test_unknown_metadata_key_loads_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    document = _metadata(LinearConfig()).to_dict()
    document["from_the_future"] = {"x": 1}
    path = _write_raw(tmp_path / "future.safetensors", _valid_header(document), _HEAD_BYTES)
    with caplog.at_level(logging.WARNING, logger="ept_studio.core.prompt_file"):
        tensors, metadata = read_prompt_file(path)
    assert "from_the_future" in caplog.text
    assert metadata.class_names == CLASSES
    assert tensors["head.bias"].tolist() == [5.0, 6.0]


# --------------------------------------------------------------------------------- hostile files

_HEAD_BYTES = struct.pack("<6f", 1, 2, 3, 4, 5, 6)


def _valid_header(document: dict[str, Any] | None = None) -> dict[str, Any]:
    document = document if document is not None else _metadata(LinearConfig()).to_dict()
    return {
        "__metadata__": {"ept_studio": json.dumps(document, indent=2, sort_keys=True)},
        "head.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "head.bias": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]},
    }


def _write_raw(path: Path, header: dict[str, Any] | bytes, data: bytes) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _with_document(**changes: Any) -> dict[str, Any]:
    document = _metadata(LinearConfig()).to_dict()
    for key, value in changes.items():
        if value is _DROP:
            del document[key]
        else:
            document[key] = value
    return _valid_header(document)


def _with_tensor(name: str, **entry: Any) -> dict[str, Any]:
    header = _valid_header()
    header[name] = {**header.get(name, {}), **entry}
    return header


_DROP = object()
_NESTED = b"[" * 100_000 + b"]" * 100_000

HOSTILE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "empty": (lambda p: _touch(p, b""), "file is empty"),
    "four bytes": (lambda p: _touch(p, b"\x10\x00\x00\x00"), "truncated"),
    "header length 2**62": (lambda p: _touch(p, struct.pack("<Q", 2**62) + b"{}"), "header length"),
    "header length 0": (lambda p: _touch(p, struct.pack("<Q", 0) + b"{}"), "header length is 0"),
    "header not JSON": (lambda p: _write_raw(p, b"this is not json", b""), "not valid JSON"),
    "header not UTF-8": (lambda p: _write_raw(p, b"{\xff\xfe}", b""), "not UTF-8"),
    "header JSON array": (lambda p: _write_raw(p, b"[1, 2, 3]", b""), "must be a JSON object"),
    "header nested 100k deep": (lambda p: _write_raw(p, _NESTED, b""), "not valid JSON"),
    "duplicate keys": (
        lambda p: _write_raw(p, b'{"a": {}, "a": {}}', b""),
        "a key appears twice",
    ),
    "dtype object": (
        lambda p: _write_raw(p, _with_tensor("head.bias", dtype="object"), _HEAD_BYTES),
        "dtype",
    ),
    "dtype F64": (
        lambda p: _write_raw(p, _with_tensor("head.bias", dtype="F64"), _HEAD_BYTES),
        "dtype",
    ),
    "dtype missing": (
        lambda p: _write_raw(
            p,
            {**_valid_header(), "head.bias": {"shape": [2], "data_offsets": [16, 24]}},
            _HEAD_BYTES,
        ),
        "dtype",
    ),
    "negative shape": (
        lambda p: _write_raw(p, _with_tensor("head.bias", shape=[-2]), _HEAD_BYTES),
        "shape",
    ),
    "bool shape": (
        lambda p: _write_raw(p, _with_tensor("head.bias", shape=[True, True]), _HEAD_BYTES),
        "shape",
    ),
    "offsets outside": (
        lambda p: _write_raw(p, _with_tensor("head.bias", data_offsets=[16, 4000]), _HEAD_BYTES),
        "outside",
    ),
    "offsets not ints": (
        lambda p: _write_raw(p, _with_tensor("head.bias", data_offsets=[16.0, 24.0]), _HEAD_BYTES),
        "data_offsets",
    ),
    "size disagrees with shape": (
        lambda p: _write_raw(p, _with_tensor("head.bias", shape=[3]), _HEAD_BYTES),
        "not what dtype",
    ),
    "overlapping tensors": (
        lambda p: _write_raw(p, _with_tensor("head.bias", data_offsets=[8, 16]), _HEAD_BYTES[:16]),
        "overlap",
    ),
    "truncated data": (lambda p: _write_raw(p, _valid_header(), _HEAD_BYTES[:20]), "outside"),
    "trailing bytes": (
        lambda p: _write_raw(p, _valid_header(), _HEAD_BYTES + b"xxxx"),
        "cover 24 of the 28",
    ),
    "metadata missing": (
        lambda p: _write_raw(
            p, {k: v for k, v in _valid_header().items() if k != "__metadata__"}, _HEAD_BYTES
        ),
        "no metadata",
    ),
    "metadata key missing": (
        lambda p: _write_raw(p, {**_valid_header(), "__metadata__": {"format": "pt"}}, _HEAD_BYTES),
        "no 'ept_studio' entry",
    ),
    "metadata not texts": (
        lambda p: _write_raw(
            p, {**_valid_header(), "__metadata__": {"ept_studio": {"a": 1}}}, _HEAD_BYTES
        ),
        "map names to texts",
    ),
    "metadata JSON broken": (
        lambda p: _write_raw(
            p,
            {**_valid_header(), "__metadata__": {"ept_studio": '{"format_version": 1,'}},
            _HEAD_BYTES,
        ),
        "not valid JSON",
    ),
    "required key missing": (
        lambda p: _write_raw(p, _with_document(backbone_sha256=_DROP), _HEAD_BYTES),
        "missing the required keys ['backbone_sha256']",
    ),
    "wrong type": (
        lambda p: _write_raw(p, _with_document(input_size="224"), _HEAD_BYTES),
        "'input_size' must be a whole number",
    ),
    "bad method": (
        lambda p: _write_raw(p, _with_document(method={"method": "magic"}), _HEAD_BYTES),
        "tuning-method",
    ),
    "newer format": (
        lambda p: _write_raw(p, _with_document(format_version=2), _HEAD_BYTES),
        "update EPT Studio",
    ),
    "head does not fit classes": (
        lambda p: _write_raw(p, _with_document(class_names=["a", "b", "c"]), _HEAD_BYTES),
        "3 class names",
    ),
    "NaN tensor": (
        lambda p: _write_raw(p, _valid_header(), struct.pack("<6f", 1, 2, 3, float("nan"), 5, 6)),
        "NaN or infinite",
    ),
    "method promises a huge prompt": (
        lambda p: _write_raw(
            p,
            {
                **_with_document(method=EptConfig(length=10**9).to_dict()),
                "backbone.blocks.0.attn.prompt.prompt": {
                    "dtype": "F32",
                    "shape": [1, 1],
                    "data_offsets": [24, 28],
                },
            },
            _HEAD_BYTES + b"\x00" * 4,
        ),
        "does not match the method config",
    ),
    "input size of a million pixels": (
        lambda p: _write_raw(p, _with_document(input_size=10**6), _HEAD_BYTES),
        "input size 1000000 is above the 4096-pixel limit",
    ),
    "input size not the named backbone's": (
        lambda p: _write_raw(
            p, _with_document(backbone="dinov2-vits14-imgfocus", input_size=448), _HEAD_BYTES
        ),
        "input size 448 is not the 224 pixels that backbone dinov2-vits14-imgfocus takes",
    ),
    "400,000 class names for a one-column head": (
        lambda p: _write_raw(
            p,
            {
                **_with_document(class_names=[f"c{i}" for i in range(400_000)]),
                "head.weight": {
                    "dtype": "F32",
                    "shape": [400_000, 1],
                    "data_offsets": [0, 4 * 400_000],
                },
                "head.bias": {
                    "dtype": "F32",
                    "shape": [0],
                    "data_offsets": [4 * 400_000, 4 * 400_000],
                },
            },
            b"\x00" * (4 * 400_000),
        ),
        "names 400000 classes, above the limit of 10000",
    ),
    "EPT promises a huge prompt and stores none": (
        lambda p: _write_raw(
            p, _with_document(method=EptConfig(length=10**9).to_dict()), _HEAD_BYTES
        ),
        "holds none of the method's tensors",
    ),
    "VPT promises huge prompts and stores none": (
        lambda p: _write_raw(
            p, _with_document(method=VptConfig(length=10**9).to_dict()), _HEAD_BYTES
        ),
        "holds none of the method's tensors",
    ),
    "LoRA promises a huge rank and stores none": (
        lambda p: _write_raw(
            p, _with_document(method=LoraConfig(rank=10**9).to_dict()), _HEAD_BYTES
        ),
        "holds none of the method's tensors",
    ),
    "huge integer metric": (
        lambda p: _write_raw(p, _with_document(metrics={"auc": 10**400}), _HEAD_BYTES),
        "'metrics' must map names to numbers",
    ),
    "a folder": (lambda p: _mkdir(p), "folder"),
    "missing": (lambda p: p, "file not found"),
}


def _touch(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_file_is_a_prompt_file_error_naming_the_file(tmp_path: Path, case: str) -> None:
    build, reason = HOSTILE[case]
    path = build(tmp_path / "suspect-file.safetensors")
    with pytest.raises(PromptFileError) as caught:
        read_prompt_file(path)
    assert "suspect-file.safetensors" in str(caught.value)
    assert reason in str(caught.value)


def test_the_valid_raw_file_used_above_is_accepted(tmp_path: Path) -> None:
    tensors, metadata = read_prompt_file(
        _write_raw(tmp_path / "ok.safetensors", _valid_header(), _HEAD_BYTES)
    )
    assert tensors["head.weight"].tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert metadata.backbone_sha256 == SHA_A


def test_half_precision_tensors_are_read_as_float32(tmp_path: Path) -> None:
    header = _valid_header()
    header["head.weight"] = {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]}
    header["head.bias"] = {"dtype": "BF16", "shape": [2], "data_offsets": [8, 12]}
    data = torch.tensor([0.5, -2.0, 3.0, 4.0], dtype=torch.float16).numpy().tobytes()
    data += torch.tensor([1.0, -1.0], dtype=torch.bfloat16).view(torch.int16).numpy().tobytes()
    tensors, _ = read_prompt_file(_write_raw(tmp_path / "half.safetensors", header, data))
    assert tensors["head.weight"].dtype == torch.float32
    assert tensors["head.weight"].tolist() == [[0.5, -2.0], [3.0, 4.0]]
    assert tensors["head.bias"].tolist() == [1.0, -1.0]


def test_label_mode_enum_is_stored_as_its_value() -> None:
    metadata = _metadata(LinearConfig(), label_mode=LabelMode.MULTI)
    assert metadata.label_mode == "multi"
    assert json.loads(metadata.to_json())["label_mode"] == "multi"


def test_file_above_max_bytes_is_refused(tmp_path: Path) -> None:
    path = _write_raw(tmp_path / "big.safetensors", _valid_header(), _HEAD_BYTES)
    with pytest.raises(PromptFileError, match="above the"):
        read_prompt_file(path, max_bytes=100)


class _Trap:
    """Unpickling this would create ``marker``: the proof that nothing was unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_pickle_and_torch_files_are_refused_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a prompt file must never be unpickled")

    marker = tmp_path / "unpickled.txt"
    pickled = tmp_path / "weights.safetensors"
    pickled.write_bytes(pickle.dumps({"head.weight": [1.0, 2.0], "trap": _Trap(marker)}))
    torch_file = tmp_path / "torch.safetensors"
    torch.save({"head.weight": torch.ones(2, 2)}, torch_file)
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, never)
    monkeypatch.setattr(torch, "load", never)
    for path in (pickled, torch_file):
        with pytest.raises(PromptFileError, match=path.name):
            read_prompt_file(path)
    assert not marker.exists()


def test_random_header_byte_flips_only_ever_raise_prompt_file_errors(
    tmp_path: Path, tiny_vit: Callable[..., nn.Module]
) -> None:
    model = _tuned(tiny_vit, EptConfig(length=3))
    good = tmp_path / "good.safetensors"
    save_prompt_file(good, model.trainable_state(), _metadata(EptConfig(length=3)))
    original = good.read_bytes()
    header_end = 8 + struct.unpack("<Q", original[:8])[0]
    rng = random.Random(0)
    loaded, refusals = 0, []
    path = tmp_path / "flipped.safetensors"
    for _ in range(200):
        data = bytearray(original)
        data[rng.randrange(header_end)] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))
        try:
            read_prompt_file(path)
            loaded += 1
        except PromptFileError as err:
            refusals.append(str(err))
    assert loaded + len(refusals) == 200
    assert len(refusals) > 150
    assert all(message.startswith(f"{path}: ") for message in refusals)


def test_metadata_dataclass_is_frozen() -> None:
    metadata = _metadata(LinearConfig())
    with pytest.raises(dataclasses.FrozenInstanceError):
        metadata.backbone = "other"  # type: ignore[misc]
