"""``predict --onnx MODEL SOURCE --ray``: an archive's images scored on a Ray cluster.

Ray Data splits the file list into batches: tasks read, decode, render, hash and preprocess each
file with the local path's functions (:mod:`ept_studio.services.model.onnx_inference`), and a pool
of actors, each holding one ONNX Runtime session (CUDA where its node has a GPU), scores them.
This process gathers the scores in the files' order and writes the CSV and the overlays itself,
as the local path does, so the outputs are the same. Every node reads the images at the path
given here (a shared folder) and needs the model file at the same path; what travels between
nodes is the preprocessed pixels (for a model with a detail view, its detail pixels too), the
scores, and the rendered images when overlays are asked.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ept_studio.common.errors import ConfigError
from ept_studio.services.model.cluster import connect_ray, gpus_per_task
from ept_studio.services.model.images import ImageFailed, collect_files
from ept_studio.services.model.onnx_inference import (
    ImagePrediction,
    InferenceFinished,
    LoadedImage,
    OverlayOptions,
    check_overlay_head,
    image_decoder,
    load_for_model,
    predictions_of,
    prepare_overlay_folder,
    write_overlay,
)

if TYPE_CHECKING:
    from ept_studio.core.model_io import ModelInfo
    from ept_studio.core.onnx_runtime import OnnxRunner

Batch = dict[str, np.ndarray]


def predict_onnx_on_ray(
    runner: OnnxRunner,
    paths: Iterable[Path],
    *,
    address: str,
    batch_size: int = 8,
    overlays: OverlayOptions | None = None,
    actors: int | None = None,
) -> InferenceFinished:
    """Score every file under ``paths`` with ``runner``'s model on the cluster at ``address``;
    ``runner`` (opened here) gives the model file and its facts. ``actors``: scoring actors
    (default: one per GPU, or one per two CPUs)."""
    if batch_size < 1:
        raise ConfigError(f"the batch size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    info = runner.info
    if overlays is not None:
        check_overlay_head(overlays, info)
        prepare_overlay_folder(overlays.folder)
    files, failed = collect_files(paths)
    if not files:
        return InferenceFinished((), tuple(failed), "Ray", time.perf_counter() - start, False)
    ray = connect_ray(address)
    gpus = gpus_per_task(ray)
    count = actors or _default_actors(ray, gpus)
    items = [{"index": i, "path": str(path)} for i, path in enumerate(files)]
    dataset = ray.data.from_items(items).map_batches(
        _decode_batch,
        fn_kwargs={"info": info, "keep_image": overlays is not None},
        batch_size=batch_size,
        batch_format="numpy",
    )
    scored = dataset.map_batches(
        _OnnxScorer,
        fn_constructor_kwargs={"model": str(runner.path), "gpu": gpus > 0},
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=count,
        num_gpus=gpus,
        num_cpus=1,
    )
    rows = sorted(
        (row for batch in scored.iter_batches(batch_format="numpy") for row in _rows(batch)),
        key=lambda row: int(row["index"]),
    )
    predictions: list[ImagePrediction] = []
    for row in rows:
        path = files[int(row["index"])]
        if row["error"]:
            failed.append(ImageFailed(path, str(row["error"])))
            continue
        predictions.extend(_prediction(row, path, info, overlays))
    provider = f"Ray ({count} ONNX Runtime actors, {'CUDA' if gpus else 'CPU'})"
    return InferenceFinished(
        tuple(predictions), tuple(failed), provider, time.perf_counter() - start, False
    )


def _default_actors(ray: Any, gpus: int) -> int:
    resources = ray.cluster_resources()
    if gpus:
        return max(1, int(resources.get("GPU", 1)))
    return max(1, int(resources.get("CPU", 2)) // 2)


def _decode_batch(batch: Batch, info: ModelInfo, keep_image: bool) -> Batch:
    """A Ray Data task: decode, render, hash and preprocess a batch of files (the local path's
    :func:`load_for_model`); a file that fails keeps its row, with the reason and zero pixels.
    A detail model's batch has a ``detail_pixels`` column too."""
    decode = image_decoder(info.rendering)
    size, count = info.input_size, len(batch["path"])
    pixels = np.zeros((count, 3, size, size), dtype=np.float32)
    detail = info.detail_input_size
    detail_pixels = None if detail is None else np.zeros((count, 3, detail, detail), np.float32)
    sha256, errors, images, shapes = [], [], [], []
    for row, name in enumerate(batch["path"]):
        loaded = load_for_model(Path(str(name)), decode, info, keep_image)
        if isinstance(loaded, ImageFailed):
            sha256.append("")
            errors.append(loaded.reason)
            images.append(b"")
            shapes.append((0, 0, 0))
            continue
        pixels[row] = loaded.pixels
        if detail_pixels is not None:
            detail_pixels[row] = loaded.detail_pixels
        sha256.append(loaded.sha256)
        errors.append("")
        image = loaded.image if loaded.image is not None else np.zeros((0, 0, 0), np.uint8)
        images.append(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
        shapes.append(image.shape)
    decoded = {
        "index": batch["index"],
        "sha256": np.array(sha256, dtype=object),
        "error": np.array(errors, dtype=object),
        "pixels": pixels,
        "image": np.array(images, dtype=object),
        "image_shape": np.array(shapes, dtype=np.int64).reshape(-1, 3),
    }
    if detail_pixels is not None:
        decoded["detail_pixels"] = detail_pixels
    return decoded


class _OnnxScorer:
    """A Ray Data actor: one ONNX Runtime session, a batch of preprocessed images at a time."""

    def __init__(self, model: str, gpu: bool) -> None:
        from ept_studio.services.model.onnx_inference import open_onnx_model

        self.runner = open_onnx_model(Path(model), device="cuda" if gpu else "cpu", threads=1)

    def __call__(self, batch: Batch) -> Batch:
        info = self.runner.info
        count = len(batch["index"])
        classes = len(info.class_names)
        scores = np.zeros((count, classes), dtype=np.float32)
        attention = np.zeros((count, info.heads, info.patches), dtype=np.float32)
        rollout = np.zeros((count, info.patches), dtype=np.float32)
        in_set = np.zeros((count, classes), dtype=bool)
        usable = np.array([not error for error in batch["error"]], dtype=bool)
        if usable.any():
            detail = batch.get("detail_pixels")
            outputs = self.runner.run(
                np.ascontiguousarray(batch["pixels"][usable]),
                None if detail is None else np.ascontiguousarray(detail[usable]),
            )
            scores[usable] = outputs.probabilities
            attention[usable] = outputs.attention
            rollout[usable] = outputs.rollout
            if outputs.sets is not None:
                rows = np.flatnonzero(usable)
                for row, members in zip(rows, outputs.sets, strict=True):
                    in_set[row, list(members)] = True
        has_sets = np.full(count, info.conformal is not None, dtype=bool)
        kept = {k: batch[k] for k in ("index", "sha256", "error", "image", "image_shape")}
        return {
            **kept,
            "probabilities": scores,
            "attention": attention,
            "rollout": rollout,
            "in_set": in_set,
            "has_sets": has_sets,
        }


def _rows(batch: Batch) -> Iterable[dict[str, Any]]:
    for row in range(len(batch["index"])):
        yield {name: values[row] for name, values in batch.items()}


def _prediction(
    row: dict[str, Any], path: Path, info: ModelInfo, overlays: OverlayOptions | None
) -> tuple[ImagePrediction, ...]:
    """The local path's :class:`ImagePrediction` of one scored row (its overlay written)."""
    from ept_studio.core.model_io import ModelOutputs

    image = None
    if overlays is not None:
        shape = tuple(int(v) for v in row["image_shape"])
        image = np.frombuffer(row["image"], dtype=np.uint8).reshape(shape)
    loaded = LoadedImage(path, str(row["sha256"]), np.empty(0, np.float32), image)
    sets = None
    if bool(row["has_sets"]):
        sets = (tuple(int(c) for c in np.flatnonzero(row["in_set"])),)
    outputs = ModelOutputs(
        logits=np.full((1, len(info.class_names)), math.nan, np.float32),
        probabilities=row["probabilities"][None],
        attention=row["attention"][None],
        rollout=row["rollout"][None],
        provider="Ray",
        sets=sets,
    )
    predictions = predictions_of([loaded], outputs, info, overlays)
    if overlays is not None:
        write_overlay(loaded, predictions[0], info, overlays)
    return predictions
