"""The ONNX Runtime runner: providers, bad files, metadata, preprocessing, and running without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from support import BLOCK_TORCH, tiny_metadata, tiny_tuned_model

from ept_studio.common.errors import ConfigError, OnnxModelError
from ept_studio.core.gpu import nvidia_gpu_count
from ept_studio.core.model import TunedModel
from ept_studio.core.model_io import FORMAT_KEY, ModelInfo, preprocess, preprocess_image
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.onnx_runtime import (
    CPU_PROVIDER,
    INTER_OP_SPINNING,
    INTRA_OP_SPINNING,
    OnnxRunner,
    choose_providers,
    session_options,
)
from ept_studio.core.torch_runner import TorchRunner
from ept_studio.core.training.transforms import eval_transform


def _images(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, (48, 40, 3), dtype=np.uint8),
        np.repeat(rng.integers(0, 256, (30, 70, 1), dtype=np.uint8), 3, axis=2),
    ]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TunedModel, ModelInfo]:
    model = tiny_tuned_model(2, head_seed=1)
    metadata = tiny_metadata(model, ("benign", "malignant"))
    info = model_info(model, metadata, "cd" * 32)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(model, path, info, _images())
    return path, model, info


def test_runner_reports_the_provider_and_matches_the_torch_runner(
    exported: tuple[Path, TunedModel, ModelInfo],
) -> None:
    path, model, info = exported
    runner = OnnxRunner(path, threads=1)
    assert runner.info == info
    if nvidia_gpu_count() == 0:
        assert runner.provider == CPU_PROVIDER
        assert runner.notes == ("no NVIDIA GPU found; running on the CPU",)
    ours = runner.predict(_images(3))
    theirs = TorchRunner(model, info).predict(_images(3))
    assert ours.provider == runner.provider
    assert theirs.provider == "torch-cpu"
    np.testing.assert_allclose(ours.probabilities, theirs.probabilities, atol=1e-5)
    np.testing.assert_allclose(ours.attention, theirs.attention, atol=1e-6)
    assert ours.attention.dtype == np.float32
    with pytest.raises(ConfigError, match=r"pixels \[batch, 3, 32, 32\]"):
        runner.run(np.zeros((1, 3, 16, 16), np.float32))


def test_provider_choice() -> None:
    assert choose_providers("cpu") == ([CPU_PROVIDER], [])
    providers, notes = choose_providers("auto")
    assert providers[-1] == CPU_PROVIDER
    if nvidia_gpu_count() == 0:
        assert providers == [CPU_PROVIDER]
        assert len(notes) == 1
    with pytest.raises(ConfigError, match="unknown ONNX device"):
        choose_providers("tpu")


def test_no_cuda_spam_on_a_machine_without_a_gpu(
    exported: tuple[Path, TunedModel, ModelInfo],
) -> None:
    if nvidia_gpu_count() > 0:
        pytest.skip("this machine has a GPU")
    script = textwrap.dedent(
        f"""
        import numpy as np
        from pathlib import Path
        from ept_studio.core.onnx_runtime import OnnxRunner
        runner = OnnxRunner(Path({str(exported[0])!r}), device="cuda")
        runner.predict([np.zeros((20, 20, 3), np.uint8)])
        print(runner.provider)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == CPU_PROVIDER
    assert done.stderr == ""


def test_runner_needs_no_torch(exported: tuple[Path, TunedModel, ModelInfo]) -> None:
    path, model, info = exported
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        from pathlib import Path
        from ept_studio.core.onnx_runtime import OnnxRunner
        outputs = OnnxRunner(Path({str(path)!r})).predict([np.full((32, 32, 3), 90, np.uint8)])
        assert "torch" not in sys.modules
        print(" ".join(f"{{v:.7f}}" for v in outputs.probabilities[0]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    expected = TorchRunner(model, info).predict([np.full((32, 32, 3), 90, np.uint8)])
    got = [float(v) for v in done.stdout.split()]
    np.testing.assert_allclose(got, expected.probabilities[0], atol=1e-5)


def test_threads_spin_only_where_torch_is_not_imported(
    exported: tuple[Path, TunedModel, ModelInfo],
) -> None:
    """The options the session really runs with: spinning on when asked, or by default without torch."""
    path, _, _ = exported

    def entries(runner: OnnxRunner) -> tuple[str, str]:
        options = runner.session_options
        return (
            options.get_session_config_entry(INTRA_OP_SPINNING),
            options.get_session_config_entry(INTER_OP_SPINNING),
        )

    assert "torch" in sys.modules  # this test process: the app's case, torch next to the runner
    default = OnnxRunner(path, device="cpu", threads=1)
    assert not default.spinning
    assert entries(default) == ("0", "0")
    assert default.session_options.intra_op_num_threads == 1
    spinning = OnnxRunner(path, device="cpu", spinning=True)
    assert spinning.spinning
    assert entries(spinning) == ("1", "0")
    assert entries(OnnxRunner(path, device="cpu", spinning=False)) == ("0", "0")
    assert session_options().get_session_config_entry(INTRA_OP_SPINNING) == "0"

    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from ept_studio.core.onnx_runtime import INTRA_OP_SPINNING, OnnxRunner
        for spinning in (None, False):
            runner = OnnxRunner(Path({str(path)!r}), device="cpu", spinning=spinning)
            entry = runner.session_options.get_session_config_entry(INTRA_OP_SPINNING)
            print(runner.spinning, entry)
        assert "torch" not in sys.modules
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["True 1", "False 0"]


def _foreign_model(path: Path, props: dict[str, str] | None = None) -> Path:
    """A valid ONNX model with an input called pixels that EPT Studio did not export."""
    pixels = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, 32, 32])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 32, 32])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["pixels"], ["logits"])], "g", [pixels], [logits]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (props or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_corrupt_empty_missing_and_foreign_files_are_named(
    tmp_path: Path, exported: tuple[Path, TunedModel, ModelInfo]
) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(0).bytes(2000))
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported[0].read_bytes()[:3000])
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    cases = {
        corrupt: "not a valid ONNX model",
        truncated: "not a valid ONNX model",
        empty: "the file is empty",
        tmp_path / "missing.onnx": "file not found",
        tmp_path: "this is a folder",
        _foreign_model(tmp_path / "foreign.onnx"): "not exported by EPT Studio",
    }
    for path, reason in cases.items():
        with pytest.raises(OnnxModelError, match=reason) as caught:
            OnnxRunner(path, device="cpu")
        assert str(path) in str(caught.value)


def test_missing_damaged_or_newer_metadata(
    tmp_path: Path, exported: tuple[Path, TunedModel, ModelInfo]
) -> None:
    props = exported[2].to_metadata_props()
    without_classes = {k: v for k, v in props.items() if k != "class_names"}
    cases = {
        "no 'class_names' entry": without_classes,
        "'label_mode' is": {**props, "label_mode": "regression"},
        "format '2'": {**props, FORMAT_KEY: "2"},
        "do not match its EPT Studio metadata": props,  # right metadata, foreign outputs
    }
    for index, (reason, meta) in enumerate(cases.items()):
        path = _foreign_model(tmp_path / f"m{index}.onnx", meta)
        with pytest.raises(OnnxModelError, match=reason) as caught:
            OnnxRunner(path, device="cpu")
        assert str(path) in str(caught.value)


def test_model_info_round_trip(exported: tuple[Path, TunedModel, ModelInfo]) -> None:
    info = exported[2]
    props = info.to_metadata_props()
    assert all(isinstance(v, str) for v in props.values())
    assert ModelInfo.from_metadata_props(props, "x") == info
    assert info.patches == 16


@pytest.mark.parametrize(
    ("height", "width", "size"), [(128, 128, 224), (512, 384, 224), (300, 500, 32), (7, 9, 32)]
)
def test_preprocessing_matches_the_torch_eval_transform(height: int, width: int, size: int) -> None:
    rng = np.random.default_rng(height)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    info = ModelInfo(
        class_names=("a",),
        label_mode="single",
        input_size=size,
        mean=mean,
        std=std,
        heads=1,
        patch_grid=(1, 1),
        backbone="b",
        backbone_sha256="0" * 64,
        prompt_sha256="0" * 64,
        method={},
        rendering={},
    )
    colour = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    grey = np.repeat(colour[:, :, :1], 3, axis=2)
    transform = eval_transform(size, mean, std)
    for image in (colour, grey):
        ours = preprocess_image(image, info)
        reference = transform(torch.from_numpy(image).permute(2, 0, 1)).numpy()
        assert ours.shape == (3, size, size)
        np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    np.testing.assert_allclose(preprocess_image(grey[:, :, 0], info), preprocess_image(grey, info))
    with pytest.raises(ConfigError, match="uint8"):
        preprocess_image(colour.astype(np.float32), info)
    with pytest.raises(ConfigError, match="H x W x 3"):
        preprocess_image(colour[:, :, :2], info)
    with pytest.raises(ConfigError, match="no images"):
        preprocess([], info)
