"""Without Ray installed, ``--ray`` says in one line how to get it and exits 2, before any work."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ept_studio.cli import main

MISSING = "error: Ray is not installed: pip install 'ept-studio[cluster]'"


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError


@pytest.mark.usefixtures("no_ray")
def test_bench_accuracy_with_ray_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    argv = ["bench", "accuracy", "--dataset", "lfw-faces", "--out", str(out), "--ray"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().splitlines() == [MISSING]
    assert not out.exists()


@pytest.mark.usefixtures("no_ray")
def test_predict_onnx_with_ray_says_how_to_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "out.csv"
    argv = ["predict", str(tmp_path), "--onnx", str(tmp_path / "m.onnx"), "--csv", str(table)]
    assert main([*argv, "--ray", "auto"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [MISSING]
    assert not table.exists()


def test_predict_with_a_prompt_file_refuses_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["predict", str(tmp_path / "p.safetensors"), str(tmp_path), "--ray"]) == 2
    assert "use --onnx MODEL" in capsys.readouterr().err
