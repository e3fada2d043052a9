"""The ONNX commands: ``export`` on the real offline backbone, ``predict --onnx`` with torch blocked."""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pydicom
import pytest
import skimage.data
import torch
from PIL import Image
from support import BLOCK_TORCH, tiny_metadata, tiny_tuned_model

from ept_studio import RESEARCH_USE_NOTICE
from ept_studio.cli import build_parser
from ept_studio.cli import onnx as cli_onnx
from ept_studio.cli.console import Console
from ept_studio.common.errors import OnnxModelError
from ept_studio.common.files import file_sha256
from ept_studio.core.backbones import load_backbone
from ept_studio.core.methods import EptConfig
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import preprocess
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_precision import export_precision
from ept_studio.core.onnx_runtime import OnnxRunner
from ept_studio.core.prompt_file import PromptFileMetadata, save_prompt_file
from ept_studio.core.torch_runner import TorchRunner
from ept_studio.data.render import render_file

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"


def _parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.mark.slow
def test_export_command_on_the_real_offline_backbone(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    loaded = load_backbone()
    model = TunedModel(loaded.model, EptConfig(length=10), 2)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
        for block in model.backbone.blocks:
            block.attn.prompt.prompt.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    metadata = PromptFileMetadata(
        method=model.method_config.to_dict(),
        backbone=loaded.spec.name,
        backbone_sha256=loaded.weights_sha256,
        input_size=224,
        mean=loaded.spec.mean,
        std=loaded.spec.std,
        label_mode="single",
        class_names=("normal", "abnormal"),
    )
    prompt = tmp_path / "real.safetensors"
    save_prompt_file(prompt, model.trainable_state(), metadata)
    out = tmp_path / "real.onnx"
    args = _parser().parse_args(["export", str(prompt), "--onnx", str(out)])
    stdout, stderr = io.StringIO(), io.StringIO()
    args.handler(args, Console(stdout, stderr))
    text = stdout.getvalue()
    assert "parity check      2 images (pydicom's CT and MR sample images)" in text
    assert file_sha256(out) in text
    assert RESEARCH_USE_NOTICE in stderr.getvalue()
    runner = OnnxRunner(out, device="cpu")
    assert runner.info.backbone == loaded.spec.name
    assert runner.info.backbone_sha256 == loaded.weights_sha256
    assert runner.info.prompt_sha256 == file_sha256(prompt)
    assert (runner.info.heads, runner.info.patch_grid) == (6, (16, 16))
    image = render_file(SAMPLES / "CT_small.dcm")
    ours = runner.predict([image])
    reference = TorchRunner(model, runner.info).predict([image])
    assert ours.attention.shape == (1, 6, 256)
    assert ours.rollout.shape == (1, 256)
    np.testing.assert_allclose(ours.logits, reference.logits, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.attention, reference.attention, atol=1e-5, rtol=0)


@pytest.mark.slow
def test_export_int8_on_the_real_offline_backbone(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    loaded = load_backbone()
    model = TunedModel(loaded.model, EptConfig(length=10), 2)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
        for block in model.backbone.blocks:
            block.attn.prompt.prompt.normal_(0, 1.0, generator=torch.Generator().manual_seed(1))
    metadata = PromptFileMetadata(
        method=model.method_config.to_dict(),
        backbone=loaded.spec.name,
        backbone_sha256=loaded.weights_sha256,
        input_size=224,
        mean=loaded.spec.mean,
        std=loaded.spec.std,
        label_mode="single",
        class_names=("normal", "abnormal"),
    )
    prompt = tmp_path / "real.safetensors"
    save_prompt_file(prompt, model.trainable_state(), metadata)
    out = tmp_path / "real_int8.onnx"
    args = _parser().parse_args(["export", str(prompt), "--onnx", str(out), "--precision", "int8"])
    stdout, stderr = io.StringIO(), io.StringIO()
    args.handler(args, Console(stdout, stderr))
    text = stdout.getvalue()
    assert "MB, int8)" in text
    assert "int8 check        2 images against the fp32 model on CPUExecutionProvider: " in text
    assert "top-1 agreement 100 % (needs >= 99 %)" in text
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".onnx"] == ["real_int8.onnx"]
    assert out.stat().st_size < 30e6  # the fp32 export is 86.7 MB
    runner = OnnxRunner(out, device="cpu")
    assert runner.info.precision is not None
    assert runner.info.precision.attention_correlation >= 0.95
    image = render_file(SAMPLES / "CT_small.dcm")
    ours = runner.predict([image])
    reference = TorchRunner(model, runner.info).predict([image])
    assert ours.logits.argmax() == reference.logits.argmax()
    np.testing.assert_allclose(ours.logits, reference.logits, rtol=0.1)  # int8: within 10 %


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TunedModel]:
    model = tiny_tuned_model(3, head_seed=3)
    metadata = tiny_metadata(model, ("cyst", "nodule", "normal"))
    path = tmp_path_factory.mktemp("cli") / "tiny.onnx"
    images = [render_file(SAMPLES / "CT_small.dcm"), render_file(SAMPLES / "MR_small.dcm")]
    export_onnx(model, path, model_info(model, metadata, "cd" * 32), images)
    return path, model


def test_predict_onnx_runs_with_torch_blocked(
    tmp_path: Path, tiny_onnx: tuple[Path, TunedModel]
) -> None:
    model_path, model = tiny_onnx
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copyfile(SAMPLES / "CT_small.dcm", folder / "ct.dcm")
    Image.fromarray(skimage.data.retina()[100:300, 100:300]).save(folder / "fundus.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    mr = tmp_path / "mr.dcm"
    shutil.copyfile(SAMPLES / "MR_small.dcm", mr)
    table, overlays = tmp_path / "out.csv", tmp_path / "overlays"
    argv = [
        str(folder),
        str(mr),
        "--onnx",
        str(model_path),
        "--csv",
        str(table),
        "--overlays",
        str(overlays),
    ]
    script = textwrap.dedent(
        f"""
        import sys
        from ept_studio.cli import main
        code = main(["predict", *{argv!r}])
        assert not any(name.split(".")[0] in ("torch", "timm") for name in sys.modules)
        sys.exit(code)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "skipped" in done.stderr
    assert "broken.png" in done.stderr
    assert RESEARCH_USE_NOTICE in done.stderr
    assert "CUDA" not in done.stderr
    with table.open(newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [Path(r["file"]).name for r in rows] == ["ct.dcm", "fundus.png", "mr.dcm"]
    files = [folder / "ct.dcm", folder / "fundus.png", mr]
    expected = TorchRunner(model, OnnxRunner(model_path).info).predict(
        [render_file(f) for f in files]
    )
    for row, path, probabilities in zip(rows, files, expected.probabilities, strict=True):
        scores = [float(row[f"score_{n}"]) for n in ("cyst", "nodule", "normal")]
        np.testing.assert_allclose(scores, probabilities, atol=1e-5)
        assert row["predicted_class"] == ("cyst", "nodule", "normal")[int(np.argmax(probabilities))]
        assert row["sha256"] == file_sha256(path)
        overlay = Path(row["overlay"])
        assert overlay.parent == overlays
        assert overlay.name == f"{row['sha256'][:16]}_attention.png"
        with Image.open(overlay) as image:
            assert image.format == "PNG"
    assert len(list(overlays.iterdir())) == 3
    assert len(done.stdout.strip().splitlines()) == 3


def test_predict_onnx_says_an_int8_model_and_its_check(
    tmp_path: Path, tiny_onnx: tuple[Path, TunedModel]
) -> None:
    model_path, _ = tiny_onnx
    info = OnnxRunner(model_path, device="cpu").info
    images = [render_file(SAMPLES / "CT_small.dcm"), render_file(SAMPLES / "MR_small.dcm")]
    int8 = export_precision(
        model_path, tmp_path / "tiny_int8.onnx", "int8", preprocess(images, info)
    )
    args = _parser().parse_args(
        ["predict", str(SAMPLES / "CT_small.dcm"), "--onnx", str(int8.path), "--device", "cpu"]
    )
    stdout, stderr = io.StringIO(), io.StringIO()
    cli_onnx.run_predict_onnx(args, Console(stdout, stderr))
    record = int8.record
    assert (
        "int8 model, checked at export: 2 images against the fp32 model on CPUExecutionProvider: "
        f"top-1 agreement 100 % (needs >= 99 %), attention-map correlation "
        f"{record.attention_correlation:.4f}, rollout {record.rollout_correlation:.4f} (lowest "
        "image; need >= 0.95)"
    ) in stderr.getvalue()
    expected = OnnxRunner(model_path, device="cpu").predict(images[:1])
    name = ("cyst", "nodule", "normal")[int(expected.probabilities[0].argmax())]
    assert stdout.getvalue().split("\t")[1] == name


def test_predict_onnx_names_a_foreign_file(tmp_path: Path) -> None:
    foreign = tmp_path / "resnet.onnx"
    foreign.write_bytes(b"\x08\x07\x12\x07pytorch")  # a protobuf prefix, then nothing useful
    args = _parser().parse_args(["predict", str(tmp_path), "--onnx", str(foreign)])
    with pytest.raises(OnnxModelError, match=r"resnet\.onnx"):
        cli_onnx.run_predict_onnx(args, Console(io.StringIO(), io.StringIO()))


def test_command_options() -> None:
    args = _parser().parse_args(["bench", "latency", "--rounds", "3"])
    assert args.handler is cli_onnx.run_bench_latency
    assert (args.rounds, args.threads, args.images, args.batch_size) == (3, 2, 32, 8)
    export = _parser().parse_args(["export", "p.safetensors", "--onnx", "m.onnx"])
    assert export.precision == "fp32"
    export = _parser().parse_args(
        ["export", "p.safetensors", "--onnx", "m.onnx", "--precision", "fp16"]
    )
    assert export.precision == "fp16"
    predict = _parser().parse_args(
        ["predict", "x.png", "--onnx", "m.onnx", "--head", "2", "--alpha", "0.3"]
    )
    assert (predict.head, predict.alpha, predict.rollout, predict.device) == (2, 0.3, False, "auto")
