"""``ept-studio bench ray-predict``: ``predict --onnx`` on a folder of images, by the local path
and on a local Ray with a given number of CPUs, in one command; images per second each way, the
ratio, and whether the two prediction CSVs are the same bytes.

The model: the small seeded random ViT of ``bench ray-sweep`` (64 px, patch 8, 4 blocks, width
128) with EPT (4 prompts per block) and a seeded random two-class head, exported to ONNX with its
parity check. The folder: seeded random PNG images (256 x 256, grey) and a few copies of pydicom's
CT and MR samples. The local path decodes with 2 threads and runs one ONNX Runtime session on the
CPU, as ``predict --onnx --device cpu`` does; the Ray path (no GPU, so CPU against CPU) decodes in
Ray Data tasks and scores in ONNX Runtime actors of one thread each (one per two CPUs). Starting
Ray is timed apart; the Ray figure includes starting its workers and actors, which a long run
spreads over many images.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ept_studio.common.errors import ConfigError
from ept_studio.services.model import (
    check_images,
    open_onnx_model,
    predict_onnx_on_ray,
    predict_paths,
    reference_check_files,
)

WriteCsv = Callable[[Path, Sequence[Any], Sequence[str]], None]
"""Writes the predictions CSV as ``predict --csv`` does (path, predictions, class names)."""

DICOM_COPIES = 4
"""DICOM files in the folder (copies of pydicom's samples, in turn); the rest are PNG."""
PNG_SIZE = 256
DECODE_THREADS = 2


@dataclasses.dataclass(frozen=True)
class RayPredictBench:
    """Wall times in seconds of scoring ``images`` files each way; ``provider`` is the Ray
    path's, in words."""

    images: int
    dicom: int
    cpus: int
    batch_size: int
    local_s: float
    ray_start_s: float
    ray_s: float
    provider: str
    same_csv: bool

    @property
    def local_ips(self) -> float:
        return self.images / self.local_s

    @property
    def ray_ips(self) -> float:
        return self.images / self.ray_s

    @property
    def ratio(self) -> float:
        """Ray's images per second over the local path's (above 1: Ray is faster)."""
        return self.ray_ips / self.local_ips

    def markdown(self) -> str:
        same = "identical" if self.same_csv else "DIFFERENT"
        return "\n".join(
            [
                f"# bench ray-predict: {self.images} images ({self.dicom} DICOM), "
                f"local vs a {self.cpus}-CPU local Ray",
                "",
                "| path | wall s | images / s |",
                "|---|---|---|",
                f"| local (`predict --onnx`, {DECODE_THREADS} decode threads) | "
                f"{self.local_s:.2f} | {self.local_ips:.1f} |",
                f"| {self.provider} | {self.ray_s:.2f} | {self.ray_ips:.1f} |",
                "",
                f"- Ray / local images per second: {self.ratio:.2f}x",
                f"- starting the local Ray (not in the Ray row): {self.ray_start_s:.1f} s",
                f"- prediction CSVs (batch size {self.batch_size}): {same}",
                "",
            ]
        )


def run_ray_predict_bench(
    write_csv: WriteCsv, *, images: int = 200, cpus: int = 2, batch_size: int = 8
) -> RayPredictBench:
    """Export the model, write the folder, score it both ways (see the module docstring)."""
    from ept_studio.services.model import require_ray

    ray = require_ray()
    if images <= DICOM_COPIES:
        raise ConfigError(f"images must be more than {DICOM_COPIES}, got {images}")
    if cpus < 1 or batch_size < 1:
        raise ConfigError(f"cpus and batch size must be >= 1, got {cpus} and {batch_size}")
    if ray.is_initialized():
        raise ConfigError("bench ray-predict starts its own local Ray: run it in a fresh process")
    with tempfile.TemporaryDirectory(prefix="ept-ray-predict-") as folder:
        root = Path(folder)
        model = export_small_model(root / "model.onnx")
        archive = write_image_folder(root / "images", images)
        runner = open_onnx_model(model, device="cpu")
        names = runner.info.class_names
        start = time.perf_counter()
        local = predict_paths(runner, [archive], batch_size=batch_size, workers=DECODE_THREADS)
        local_s = time.perf_counter() - start
        start = time.perf_counter()
        ray.init(num_cpus=cpus, num_gpus=0, include_dashboard=False)
        ray_start_s = time.perf_counter() - start
        try:
            start = time.perf_counter()
            on_ray = predict_onnx_on_ray(runner, [archive], address="local", batch_size=batch_size)
            ray_s = time.perf_counter() - start
        finally:
            ray.shutdown()
        scored = {"local": local, "ray": on_ray}
        for name, finished in scored.items():
            if finished.failed or len(finished.predictions) != images:
                raise ConfigError(f"the {name} path scored {len(finished.predictions)} of {images}")
            write_csv(root / f"{name}.csv", finished.predictions, names)
        same = (root / "local.csv").read_bytes() == (root / "ray.csv").read_bytes()
    return RayPredictBench(
        images, DICOM_COPIES, cpus, batch_size, local_s, ray_start_s, ray_s, on_ray.provider, same
    )


def export_small_model(path: Path) -> Path:
    """The bench's EPT model (see the module docstring) as ONNX at ``path``, parity-checked."""
    import torch

    from ept_studio.core.methods import EptConfig
    from ept_studio.core.model import TunedModel
    from ept_studio.core.onnx_export import export_onnx, model_info
    from ept_studio.core.prompt_file import PromptFileMetadata, backbone_fields
    from ept_studio.evidence.bench_ray import small_backbone

    loaded = small_backbone()
    model = TunedModel(loaded.model, EptConfig(length=4), 2).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator))
    metadata = PromptFileMetadata(
        method=model.method_config.to_dict(),
        **backbone_fields(loaded),
        label_mode="single",
        class_names=("class_a", "class_b"),
    )
    info = model_info(model, metadata, "0" * 64)
    export_onnx(model, path, info, check_images(reference_check_files(), info.rendering))
    return path


def write_image_folder(folder: Path, count: int) -> Path:
    """``count`` images in a new ``folder``: :data:`DICOM_COPIES` DICOM files, the rest seeded
    random grey PNGs."""
    from PIL import Image

    folder.mkdir(parents=True)
    samples = reference_check_files()
    for index in range(DICOM_COPIES):
        shutil.copyfile(samples[index % len(samples)], folder / f"scan_{index:04d}.dcm")
    generator = np.random.default_rng(0)
    for index in range(count - DICOM_COPIES):
        pixels = generator.integers(0, 256, (PNG_SIZE, PNG_SIZE), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"image_{index:04d}.png")
    return folder
