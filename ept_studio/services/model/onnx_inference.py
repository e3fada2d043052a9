"""Batch inference over files and folders with an exported model (or the torch runner), torch-free.

Files are decoded, rendered (with the rendering stored in the model) and preprocessed in a thread
pool that runs ahead of the model, so the model never waits on the disk; ONNX Runtime releases the
GIL while it runs, so decoding goes on meanwhile. :func:`iter_predictions` is a generator of events
(progress for a GUI or the CLI; cancel through ``cancel`` or by closing the generator); each image
gives an :class:`ImagePrediction` with the predicted class, every class's score and the attention,
a plain dataclass that the project store can keep as a run's predictions. A file that cannot be
decoded is reported as an :class:`ImageFailed` and the others go on.

A model with a detail view takes each image twice, resized from the rendered image to its input size
and to its detail view's size (:class:`LoadedImage` carries both); the runner refuses the one
without the other.

Nothing here imports torch: with an :class:`~ept_studio.core.onnx_runtime.OnnxRunner` this runs
where PyTorch is not installed.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ept_studio.common.errors import ConfigError, EptStudioError, ExportError, ImageDecodeError
from ept_studio.common.files import file_sha256
from ept_studio.services.model.images import ImageFailed, collect_files, rendering_spec

if TYPE_CHECKING:
    from ept_studio.core.model_io import ModelInfo, ModelOutputs, Runner
    from ept_studio.core.onnx_runtime import OnnxRunner
    from ept_studio.services.model.inference import TunedHandle

Decoder = Callable[[Path], np.ndarray]
"""A file -> its rendered ``H x W x 3`` uint8 pixels; raises ImageDecodeError when it cannot."""

DEFAULT_BATCH_SIZE = 8


@dataclasses.dataclass(frozen=True)
class ImagePrediction:
    """One image through the model. ``attention`` ``[heads, patches]``, ``rollout`` ``[patches]``;
    ``prediction_set`` the class names in its prediction set when the model has thresholds."""

    path: Path
    sha256: str
    predicted_class: str
    scores: dict[str, float]
    attention: np.ndarray = dataclasses.field(repr=False)
    rollout: np.ndarray = dataclasses.field(repr=False)
    overlay: Path | None = None
    prediction_set: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class InferenceStarted:
    total: int
    provider: str
    notes: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class BatchPredicted:
    """Progress: a batch went through the model; ``done`` counts failed files too."""

    predictions: tuple[ImagePrediction, ...]
    failed: tuple[ImageFailed, ...]
    done: int
    total: int
    elapsed_s: float


@dataclasses.dataclass(frozen=True)
class InferenceFinished:
    predictions: tuple[ImagePrediction, ...]
    failed: tuple[ImageFailed, ...]
    provider: str
    seconds: float
    cancelled: bool


InferenceEvent = InferenceStarted | BatchPredicted | InferenceFinished


@dataclasses.dataclass(frozen=True)
class OverlayOptions:
    """Write a captioned overlay PNG per image into ``folder``, named by the file's sha256 (no PHI).

    ``head`` None: the mean over heads; ``rollout`` True: the rollout map instead of the last block.
    """

    folder: Path
    alpha: float = 0.5
    head: int | None = None
    rollout: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"the overlay opacity must be between 0 and 1, got {self.alpha}")

    def path_for(self, sha256: str) -> Path:
        return self.folder / f"{sha256[:16]}_attention.png"


def open_onnx_model(
    path: Path, *, device: str = "auto", threads: int | None = None, spinning: bool | None = None
) -> OnnxRunner:
    """An ONNX Runtime runner for an exported model (CUDA when there is a GPU, else the CPU).

    ``spinning`` None: intra-op threads spin only where torch is not imported (see OnnxRunner).
    """
    from ept_studio.core.onnx_runtime import OnnxRunner

    return OnnxRunner(Path(path), device=device, threads=threads, spinning=spinning)


def open_torch_model(handle: TunedHandle, *, device: str | None = None) -> Runner:
    """The same runner API over a loaded prompt file's torch model (in the app, before export)."""
    from ept_studio.core.onnx_export import model_info
    from ept_studio.core.torch_runner import TorchRunner

    info = model_info(handle.model, handle.metadata, file_sha256(handle.prompt_file))
    return TorchRunner(handle.model, info, device=device, detail=handle.detail)


def image_decoder(rendering: Mapping[str, Any]) -> Decoder:
    """Decode and render any supported file (DICOM, PNG, JPEG, TIFF, BMP) as the model was tuned."""
    from ept_studio.data.render import render_file

    spec = rendering_spec(rendering)

    def decode(path: Path) -> np.ndarray:
        return render_file(path, spec)

    return decode


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """One file ready for the model: its content hash, its preprocessed pixels, the rendered
    image when an overlay will be drawn on it, and for a model with a detail view its pixels at
    the detail size (else None)."""

    path: Path
    sha256: str
    pixels: np.ndarray
    image: np.ndarray | None
    detail_pixels: np.ndarray | None = dataclasses.field(default=None, repr=False)


def load_for_model(
    path: Path, decode: Decoder, info: ModelInfo, keep_image: bool
) -> LoadedImage | ImageFailed:
    """Runs in the pool: decode, render, hash and preprocess one file; failures become results."""
    from ept_studio.core.model_io import preprocess_image

    detail = None
    try:
        image = decode(path)
        sha256 = file_sha256(path)
        pixels = preprocess_image(image, info)
        if info.detail_input_size is not None:
            detail = preprocess_image(image, info, info.detail_input_size)
    except ImageDecodeError as err:
        return ImageFailed(path, err.reason)
    except EptStudioError as err:
        return ImageFailed(path, str(err))
    except OSError as err:
        return ImageFailed(path, f"file cannot be read ({err.strerror or err})")
    return LoadedImage(path, sha256, pixels, image if keep_image else None, detail)


def iter_predictions(
    runner: Runner,
    paths: Iterable[Path],
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 2,
    overlays: OverlayOptions | None = None,
    cancel: Callable[[], bool] | None = None,
    decode: Decoder | None = None,
) -> Iterator[InferenceEvent]:
    """Predict every file under ``paths``; see the module docstring for the events."""
    if batch_size < 1 or workers < 1:
        raise ConfigError(f"batch size and workers must be >= 1, got {batch_size} and {workers}")
    start = time.perf_counter()
    if overlays is not None:
        check_overlay_head(overlays, runner.info)
        prepare_overlay_folder(overlays.folder)
    files, failed = collect_files(paths)
    job = _Job(runner, overlays, decode or image_decoder(runner.info.rendering))
    total = len(files) + len(failed)
    yield InferenceStarted(total, runner.provider, tuple(runner.notes))
    predictions: list[ImagePrediction] = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ept-decode")
    batches = job.batches(pool, files, batch_size, cancel)
    try:
        for batch_predictions, batch_failed in batches:
            predictions.extend(batch_predictions)
            failed.extend(batch_failed)
            done = len(predictions) + len(failed)
            elapsed = time.perf_counter() - start
            yield BatchPredicted(batch_predictions, batch_failed, done, total, elapsed)
    finally:  # also when the caller closes this generator: queued decodes are dropped
        batches.close()
        pool.shutdown(wait=True, cancel_futures=True)
    yield InferenceFinished(
        tuple(predictions),
        tuple(failed),
        runner.provider,
        time.perf_counter() - start,
        job.cancelled,
    )


def predict_paths(runner: Runner, paths: Iterable[Path], **options: Any) -> InferenceFinished:
    """:func:`iter_predictions` run to the end; its last event."""
    events = list(iter_predictions(runner, paths, **options))
    finished = events[-1]
    if not isinstance(finished, InferenceFinished):  # pragma: no cover - the generator's contract
        raise RuntimeError("inference ended without a result")
    return finished


class _Job:
    """The pipeline: a bounded queue of decode futures ahead of the model, in submission order."""

    def __init__(self, runner: Runner, overlays: OverlayOptions | None, decode: Decoder) -> None:
        self.runner = runner
        self.overlays = overlays
        self.decode = decode
        self.cancelled = False

    def batches(
        self,
        pool: ThreadPoolExecutor,
        files: Sequence[Path],
        batch_size: int,
        cancel: Callable[[], bool] | None,
    ) -> Generator[tuple[tuple[ImagePrediction, ...], tuple[ImageFailed, ...]], None, None]:
        queue = iter(files)
        ahead = batch_size * 2 + 2
        pending: deque[Future[LoadedImage | ImageFailed]] = deque()
        loaded: list[LoadedImage] = []
        failed: list[ImageFailed] = []
        try:
            self._top_up(pool, queue, pending, ahead)
            while pending:
                if cancel is not None and cancel():
                    self.cancelled = True
                    return
                result = pending.popleft().result()
                self._top_up(pool, queue, pending, ahead)
                if isinstance(result, ImageFailed):
                    failed.append(result)
                else:
                    loaded.append(result)
                if len(loaded) == batch_size or (not pending and (loaded or failed)):
                    yield self._predict(pool, loaded), tuple(failed)
                    loaded, failed = [], []
        finally:
            for future in pending:
                future.cancel()

    def _top_up(
        self,
        pool: ThreadPoolExecutor,
        queue: Iterator[Path],
        pending: deque[Future[LoadedImage | ImageFailed]],
        ahead: int,
    ) -> None:
        keep = self.overlays is not None
        while len(pending) < ahead:
            path = next(queue, None)
            if path is None:
                return
            pending.append(pool.submit(load_for_model, path, self.decode, self.runner.info, keep))

    def _predict(
        self, pool: ThreadPoolExecutor, loaded: Sequence[LoadedImage]
    ) -> tuple[ImagePrediction, ...]:
        if not loaded:
            return ()
        outputs = self.runner.run(*stacked_inputs(loaded))
        predictions = predictions_of(loaded, outputs, self.runner.info, self.overlays)
        if self.overlays is not None:
            writes = [
                pool.submit(write_overlay, item, prediction, self.runner.info, self.overlays)
                for item, prediction in zip(loaded, predictions, strict=True)
            ]
            for write in writes:
                write.result()
        return predictions


def stacked_inputs(loaded: Sequence[LoadedImage]) -> tuple[np.ndarray, np.ndarray | None]:
    """The batch's pixels and, when its images carry them, their detail pixels (all or none)."""
    pixels = np.stack([item.pixels for item in loaded])
    details = [item.detail_pixels for item in loaded]
    if all(detail is None for detail in details):
        return pixels, None
    if any(detail is None for detail in details):  # pragma: no cover - one model loads them all
        raise ConfigError("some images of the batch have detail pixels and some have not")
    return pixels, np.stack([d for d in details if d is not None])


def predictions_of(
    loaded: Sequence[LoadedImage],
    outputs: ModelOutputs,
    info: ModelInfo,
    overlays: OverlayOptions | None,
) -> tuple[ImagePrediction, ...]:
    names = info.class_names
    results = []
    for index, item in enumerate(loaded):
        scores = outputs.probabilities[index]
        results.append(
            ImagePrediction(
                path=item.path,
                sha256=item.sha256,
                predicted_class=names[int(np.argmax(scores))],
                scores={name: float(s) for name, s in zip(names, scores, strict=True)},
                attention=outputs.attention[index].copy(),
                rollout=outputs.rollout[index].copy(),
                overlay=overlays.path_for(item.sha256) if overlays is not None else None,
                prediction_set=(
                    None if outputs.sets is None else tuple(names[c] for c in outputs.sets[index])
                ),
            )
        )
    return tuple(results)


def check_overlay_head(options: OverlayOptions, info: ModelInfo) -> None:
    if options.head is not None and not 0 <= options.head < info.heads:
        raise ConfigError(
            f"head {options.head} does not exist: this model has heads 0..{info.heads - 1}"
        )


def prepare_overlay_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ExportError(
            f"{folder}: the overlay folder cannot be created ({err.strerror or err})"
        ) from err


def write_overlay(
    item: LoadedImage, prediction: ImagePrediction, info: ModelInfo, options: OverlayOptions
) -> None:
    from ept_studio.data.overlay import caption_text, save_overlay

    if item.image is None or prediction.overlay is None:  # pragma: no cover - kept when asked
        return
    if options.rollout:
        attention, text = prediction.rollout, caption_text(None, what="rollout over all blocks")
    else:
        attention = prediction.attention
        text = caption_text(options.head, info.heads)
    save_overlay(
        prediction.overlay,
        item.image,
        attention,
        info.patch_grid,
        alpha=options.alpha,
        head=None if options.rollout else options.head,
        caption=text,
    )
