"""The CLI on awkward paths: relative ones with a patient's name, names that are not UTF-8, missing
or wrong output folders. Every case ends in exit 0 or a one-line message with exit 2, never a
traceback, a half-written CSV or a patient's name in the app's own files."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import skimage.data
import torch
from PIL import Image
from support import tiny_metadata, tiny_tuned_model

from ept_studio.cli import main
from ept_studio.common.appdata import DATA_ENV
from ept_studio.core.backbones import load_manifest
from ept_studio.core.methods import LinearConfig
from ept_studio.core.onnx_export import export_onnx, model_info
from ept_studio.core.prompt_file import PromptFileMetadata, save_prompt_file
from ept_studio.data.render import render_file

SAMPLES = Path(pydicom.__file__).parent / "data" / "test_files"
CLASSES = ("cyst", "normal")
NOT_UTF8 = os.fsdecode(b"\xff\xfe.png")
"""A file name made of bytes that are not UTF-8 (Python keeps them as lone surrogates)."""
NO_IMAGE = "no usable image among the"


def write_linear_prompt(path: Path) -> Path:
    """A linear-probe prompt file on the offline default backbone, no backbone loaded to make it."""
    spec = next(s for s in load_manifest().values() if s.default)
    assert spec.weights_sha256 is not None
    generator = torch.Generator().manual_seed(0)
    tensors = {
        "head.weight": torch.randn(len(CLASSES), 384, generator=generator),
        "head.bias": torch.zeros(len(CLASSES)),
    }
    metadata = PromptFileMetadata(
        method=LinearConfig().to_dict(),
        backbone=spec.name,
        backbone_sha256=spec.weights_sha256,
        input_size=spec.input_size,
        mean=spec.mean,
        std=spec.std,
        label_mode="single",
        class_names=CLASSES,
    )
    save_prompt_file(path, tensors, metadata)
    return path


def write_fundus(path: Path, top: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skimage.data.retina()[top : top + 96, 100:196]).save(path)
    return path


@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_linear_prompt(tmp_path_factory.mktemp("prompt") / "linear.safetensors")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = tiny_tuned_model(2, head_seed=3)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    images = [render_file(SAMPLES / "CT_small.dcm")]
    export_onnx(model, path, model_info(model, tiny_metadata(model, CLASSES), "cd" * 32), images)
    return path


def run_cli(argv: list[str], cwd: Path, data: Path) -> subprocess.CompletedProcess[str]:
    """The installed entry point as a user runs it (log file and crash reports on)."""
    code = "import sys; from ept_studio.cli import main; sys.exit(main())"
    env = dict(os.environ, **{DATA_ENV: str(data)}, HOME=str(data / "home"))
    return subprocess.run(
        [sys.executable, "-c", code, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def app_files_text(data: Path) -> str:
    """Everything EPT Studio wrote into its own data folder (logs, crash reports)."""
    return "\n".join(
        p.read_text(encoding="utf-8", errors="replace") for p in data.rglob("*") if p.is_file()
    )


def test_predict_csv_under_a_relative_patient_folder_that_is_a_file(
    tmp_path: Path, prompt_file: Path
) -> None:
    write_fundus(tmp_path / "scan.png")
    (tmp_path / "Patient X").write_text("not a folder", encoding="utf-8")
    data = tmp_path / "app-data"
    argv = ["predict", str(prompt_file), "scan.png", "--csv", "Patient X/scores.csv"]
    done = run_cli(argv, tmp_path, data)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "error: Patient X is a file, so the folder for the predictions CSV cannot be made" in (
        done.stderr
    )
    assert not (data / "crash-reports").exists()
    assert (data / "logs" / "ept-studio.log").is_file()
    assert "Patient X" not in app_files_text(data)


def test_predict_csv_into_a_missing_relative_folder_creates_it(
    tmp_path: Path, prompt_file: Path
) -> None:
    write_fundus(tmp_path / "scan.png")
    data = tmp_path / "app-data"
    argv = ["predict", str(prompt_file), "scan.png", "--csv", "Patient X/scores.csv"]
    done = run_cli(argv, tmp_path, data)
    assert done.returncode == 0, done.stderr
    with (tmp_path / "Patient X" / "scores.csv").open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["file"] for row in rows] == ["scan.png"]
    assert sum(float(rows[0][f"score_{n}"]) for n in CLASSES) == pytest.approx(1.0, abs=1e-5)
    assert "Patient X" not in app_files_text(data)


def test_an_os_error_is_a_one_line_message_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ept_studio.cli import engine

    def fail(_args: object, _console: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", "Patient X/scores.csv")

    monkeypatch.setattr(engine, "run_doctor", lambda console: fail(None, console))
    assert main(["doctor"]) == 2
    err = capsys.readouterr().err
    assert err == "error: Patient X/scores.csv: No such file or directory\n"


@pytest.mark.parametrize("engine", ["prompt", "onnx"])
def test_predict_writes_a_name_that_is_not_utf8_whole(
    engine: str,
    tmp_path: Path,
    prompt_file: Path,
    tiny_onnx: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "images"
    write_fundus(folder / "a.png", top=100)
    write_fundus(folder / NOT_UTF8, top=140)
    write_fundus(folder / "z.png", top=180)
    table = tmp_path / "scores.csv"
    model = ["--onnx", str(tiny_onnx)] if engine == "onnx" else [str(prompt_file)]
    assert main(["predict", *model, str(folder), "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    with table.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    names = [Path(row["file"]).name for row in rows]
    assert names == ["a.png", "z.png", "\ufffd\ufffd.png"]  # sorted by the bytes of the name
    assert "\ufffd\ufffd.png" in out
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("engine", ["prompt", "onnx"])
def test_predict_expands_folders_recursively_on_both_paths(
    engine: str,
    tmp_path: Path,
    prompt_file: Path,
    tiny_onnx: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "study"
    write_fundus(folder / "one.png", top=100)
    write_fundus(folder / "series" / "two.png", top=150)
    table = tmp_path / "scores.csv"
    model = ["--onnx", str(tiny_onnx)] if engine == "onnx" else [str(prompt_file)]
    assert main(["predict", *model, str(folder), "--csv", str(table)]) == 0
    capsys.readouterr()
    with table.open(encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [Path(row["file"]).relative_to(folder).as_posix() for row in rows] == [
        "one.png",
        "series/two.png",
    ]


@pytest.mark.parametrize("engine", ["prompt", "onnx"])
def test_predict_without_a_usable_image_exits_2_alike(
    engine: str,
    tmp_path: Path,
    prompt_file: Path,
    tiny_onnx: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "notes.txt").write_text("no pixels here", encoding="utf-8")
    table = tmp_path / "scores.csv"
    model = ["--onnx", str(tiny_onnx)] if engine == "onnx" else [str(prompt_file)]
    argv = ["predict", *model, str(tmp_path / "notes.txt"), str(tmp_path / "gone.png")]
    assert main([*argv, "--csv", str(table)]) == 2
    err = capsys.readouterr().err
    assert f"error: {NO_IMAGE} 2 files given (the reasons are listed above)" in err
    assert not table.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "{missing}", "--out", "{folder}"],
        ["predict", "{prompt}", "{image}", "--csv", "{folder}"],
        ["predict", "{image}", "--onnx", "{onnx}", "--csv", "{folder}"],
        ["predict", "{image}", "--onnx", "{onnx}", "--overlays", "{file}"],
        ["export", "{prompt}", "--onnx", "{folder}"],
        ["project", "export", "{missing}", "1", "{folder}"],
        ["bench", "speed", "--out", "{folder}"],
    ],
    ids=["train", "predict", "predict-onnx", "overlays", "export", "project-export", "bench"],
)
def test_every_output_argument_is_checked_before_the_work(
    argv: list[str],
    tmp_path: Path,
    prompt_file: Path,
    tiny_onnx: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out_folder = tmp_path / "out folder"
    out_folder.mkdir()
    out_file = tmp_path / "existing.txt"
    out_file.write_text("keep me", encoding="utf-8")
    image = write_fundus(tmp_path / "scan.png")
    values = {
        "missing": str(tmp_path / "no-such-data"),
        "folder": str(out_folder),
        "file": str(out_file),
        "prompt": str(prompt_file),
        "onnx": str(tiny_onnx),
        "image": str(image),
    }
    refused = out_file if "{file}" in argv else out_folder
    assert main([part.format(**values) for part in argv]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"error: {refused} is a ")
    assert out_file.read_text(encoding="utf-8") == "keep me"
    assert list(out_folder.iterdir()) == []


def test_project_import_skips_a_name_that_is_not_utf8_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "app-data"))
    sources = tmp_path / "sources"
    write_fundus(sources / "a.png", top=100)
    write_fundus(sources / NOT_UTF8, top=140)
    write_fundus(sources / "z.png", top=180)
    project = tmp_path / "project"
    assert main(["project", "new", str(project)]) == 0
    assert main(["project", "import", str(project), str(sources), "--no-thumbnails"]) == 0
    captured = capsys.readouterr()
    assert "added 2, duplicates 0, relinked 0, changed 0, skipped 1" in captured.out
    assert "skipped " in captured.err
    assert "\ufffd\ufffd.png: the file name is not valid UTF-8" in captured.err
    assert main(["project", "list", str(project)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [Path(line.split()[-1]).name for line in listed] == ["a.png", "z.png"]


def test_atomic_write_leaves_the_old_file_when_the_text_cannot_be_written(tmp_path: Path) -> None:
    from ept_studio.common.errors import ExportError
    from ept_studio.common.files import atomic_write_text

    target = tmp_path / "scores.csv"
    target.write_text("old\n", encoding="utf-8")
    with pytest.raises(ExportError, match="the predictions CSV cannot be written"):
        atomic_write_text(target, "file\n" + NOT_UTF8 + "\n", "predictions CSV")
    assert target.read_text(encoding="utf-8") == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]
    written = atomic_write_text(tmp_path / "new" / "deeper" / "x.csv", "a,b\n", "predictions CSV")
    assert written.read_bytes() == b"a,b\n"


def test_project_predict_keeps_no_model_file_name_in_the_project(
    tmp_path: Path, tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "app-data"))
    write_fundus(tmp_path / "sources" / "a.png", top=100)
    write_fundus(tmp_path / "sources" / "b.png", top=150)
    model = tmp_path / "Patient X.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    project = tmp_path / "project"
    assert main(["project", "new", str(project)]) == 0
    assert main(["project", "import", str(project), str(tmp_path / "sources")]) == 0
    assert main(["project", "predict", str(project), "--onnx", str(model)]) == 0
    written = b"".join(p.read_bytes() for p in project.rglob("*") if p.is_file())
    assert b"Patient X" not in written


@pytest.mark.slow
def test_phi_sweep_of_every_command(tmp_path: Path) -> None:
    """packaging/phi_sweep.py: every command on marker-named, partly non-UTF-8 inputs (~1 min)."""
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "packaging" / "phi_sweep.py"
    spec = importlib.util.spec_from_file_location("phi_sweep", script)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    outcomes, leaked = module.sweep(tmp_path / "sweep")
    assert [o.step.name for o in outcomes if o.problems] == [], module.report(outcomes, leaked)
    assert leaked == []
    assert [o.code for o in outcomes].count(2) == 1  # the refused CSV under a file


def test_a_benchmark_report_is_written_whole_into_a_new_folder(tmp_path: Path) -> None:
    import io

    from ept_studio.cli.console import Console
    from ept_studio.cli.onnx import show_report

    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "reports" / "speed.md"
    show_report("| a | b |\n|---|---|\n| 1 | 2 |", target, Console(out, err))
    assert target.read_text(encoding="utf-8") == "| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert out.getvalue() == "| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert err.getvalue() == f"wrote {target}\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["speed.md"]
